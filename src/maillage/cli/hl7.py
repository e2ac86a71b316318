"""``maillage hl7 messages|replay`` (``maillage gateway`` is ``cli/gateway.py``)."""

from __future__ import annotations

import asyncio
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
