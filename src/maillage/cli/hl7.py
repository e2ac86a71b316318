"""``maillage gateway`` (the HL7 v2 gateway alone) and ``maillage hl7 messages|replay``."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import typer

from maillage.errors import ConfigurationError, MaillageError
from maillage.settings import Settings, load_settings

hl7_app = typer.Typer(help="The HL7 v2 message store: list and replay.", no_args_is_help=True)
T = TypeVar("T")

_DataDir = typer.Option(
    None, "--data-dir", help="Embedded PostgreSQL folder (default ./var); see `serve`."
)


def _fail(error: MaillageError) -> None:
    typer.secho(f"error: {error.message}", err=True, fg=typer.colors.RED)
    raise typer.Exit(code=2)


def _with_gateway(settings: Settings, work: Callable[..., Awaitable[T]]) -> T:
    """Run ``work(gateway)`` against the database, with no listener and no processor."""
    from maillage.cli.main import running_database
    from maillage.demo.senders import configured_sites
    from maillage.hl7v2.service import build_gateway
    from maillage.storage import Database

    async def run(conninfo: str) -> T:
        database = Database(conninfo, min_size=1, max_size=2)
        await database.open()
        try:
            gateway = build_gateway(settings, database, configured_sites(settings.hl7_sites_file))
            return await work(gateway)
        finally:
            await database.close()

    with running_database(settings) as conninfo:
        return asyncio.run(run(conninfo))


def gateway(
    host: str = typer.Option(None, help="MLLP address (default 127.0.0.1)."),
    port: int = typer.Option(None, help="MLLP port (default 2575)."),
    data_dir: Path = _DataDir,
) -> None:
    """Run the HL7 v2 gateway alone: MLLP listener and processor, no HTTP."""
    from maillage.app import write_hooks
    from maillage.cli.main import _configure_logging, running_database
    from maillage.demo.senders import apply_site_configuration
    from maillage.fhir.repository import FhirStore
    from maillage.fhir.search.engine import SearchEngine
    from maillage.fhir.search_definitions import SearchDefinitions
    from maillage.hl7v2.service import build_gateway
    from maillage.jobs import JobService
    from maillage.mpi import build_patient_index
    from maillage.security import AllowAll
    from maillage.storage import Database

    settings = load_settings(hl7_host=host, hl7_port=port, data_dir=data_dir)
    _configure_logging(settings.log_level)

    async def serve(conninfo: str) -> None:
        database = Database(conninfo, min_size=settings.db_pool_min, max_size=settings.db_pool_max)
        await database.open()
        # The FHIR store the conversions (ORU^R01) write through, following the custom
        # search parameters like the hub's processes do.
        jobs = JobService(database, max_attempts=settings.job_max_attempts)
        definitions = SearchDefinitions(
            database, jobs, refresh_s=settings.search_definitions_refresh_s
        )
        engine = SearchEngine(timeout_ms=settings.search_timeout_ms)
        # As the hub builds it: the patient index matches the identity feed's Patients,
        # the care relationships follow its encounters. The feeds write as the system.
        sites = apply_site_configuration(settings.hl7_sites_file)
        hooks = write_hooks(settings, build_patient_index(settings))
        store = FhirStore(database, AllowAll(), engine, definitions=definitions, write_hooks=hooks)
        hl7 = build_gateway(settings, database, sites, fhir=store)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        try:
            await definitions.refresh()
            definitions.start()
            await hl7.start()
            await stop.wait()
        finally:
            await hl7.stop()
            await definitions.stop()
            await database.close()

    try:
        with running_database(settings) as conninfo:
            asyncio.run(serve(conninfo))
    except MaillageError as error:
        _fail(error)


@hl7_app.command("messages")
def messages(
    site: str = typer.Option(None, help="Only this site (code, e.g. CHM)."),
    status: str = typer.Option(
        None, help="Only this status: received, processed, ignored, error, dead."
    ),
    limit: int = typer.Option(50, min=1, max=10_000, help="At most this many, newest first."),
    data_dir: Path = _DataDir,
) -> None:
    """List stored messages: ids, types, status, error (never patient data)."""
    from maillage.hl7v2.service import STATUSES, Gateway
    from maillage.hl7v2.store import MessageSummary

    if status is not None and status not in STATUSES:
        _fail(ConfigurationError(f"status must be one of {', '.join(STATUSES)}"))
    settings = load_settings(data_dir=data_dir)

    async def work(hl7: Gateway) -> list[MessageSummary]:
        return await hl7.messages(site=site, status=status, limit=limit)

    try:
        rows = _with_gateway(settings, work)
    except MaillageError as error:
        _fail(error)
        return
    typer.echo(f"{'id':>8}  {'received (UTC)':19}  {'site':5} {'type':9} {'MSH-10':20} status")
    for row in rows:
        kind = f"{row.message_type or '?'}^{row.trigger_event or '?'}"
        line = (
            f"{row.id:>8}  {row.received_at:%Y-%m-%d %H:%M:%S}  {row.site or '-':5} "
            f"{kind:9} {(row.control_id or '-')[:20]:20} {row.status}"
        )
        if row.attempts > 1 or (row.status in ("dead", "received") and row.attempts):
            line += f" ({row.attempts} attempts)"
        reason = row.error or row.note
        if reason:
            line += f": {reason}"
        typer.echo(line)


@hl7_app.command("replay")
def replay(
    message_id: int = typer.Option(None, "--id", help="This message, whatever its status."),
    site: str = typer.Option(None, help="This site's messages in error or dead."),
    status: str = typer.Option(None, help="Only this status: error or dead."),
    data_dir: Path = _DataDir,
) -> None:
    """Send messages back to the processor (the running gateway takes them within a
    second); one rejected at receipt is analysed again first."""
    from maillage.hl7v2.service import Gateway, ReplayReport

    if message_id is None and site is None and status is None:
        _fail(ConfigurationError("say what to replay: --id, --site and/or --status"))
    if status is not None and status not in ("error", "dead"):
        _fail(ConfigurationError("--status must be error or dead"))
    statuses = (status,) if status else ("error", "dead")
    settings = load_settings(data_dir=data_dir)

    async def work(hl7: Gateway) -> ReplayReport:
        return await hl7.replay(message_id=message_id, site=site, statuses=statuses)

    try:
        report = _with_gateway(settings, work)
    except MaillageError as error:
        _fail(error)
        return
    typer.echo(f"requeued {report.requeued} message(s)")
    if report.still_rejected:
        typer.echo(f"still rejected: {', '.join(map(str, report.still_rejected))}")
    if report.duplicates:
        typer.echo(f"already resent and stored (marked ignored): {report.duplicates}")
