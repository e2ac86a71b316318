"""``maillage gateway``: the HL7 v2 gateway alone (MLLP listener and processors), no HTTP.

Converting messages is Python work (parse, map, validate, index: about 11 ms of CPU per
ORU^R01 of 10 OBX), and one process uses one core: with ``--processes N``
(``MAILLAGE_HL7_PROCESSES``, default 2) the process that listens is joined by N-1
processes that only convert stored messages. They share the work as one process's tasks
do: each claim locks its rows in the message store, in order per patient. The first
process supervises: SIGTERM or SIGINT stops them all; a processor that dies stops the
gateway (exit 1) rather than leaving it to run at reduced capacity unnoticed; a processor
whose parent died (SIGKILL) stops by itself, its batch in flight rolled back.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import multiprocessing
import os
import signal
from collections.abc import Coroutine, Sequence
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any, TypeVar

import typer

from maillage.errors import MaillageError
from maillage.settings import Settings, load_settings

log = logging.getLogger(__name__)
T = TypeVar("T")

_DataDir = typer.Option(
    None, "--data-dir", help="Embedded PostgreSQL folder (default ./var); see `serve`."
)
_WATCH_S = 1.0
_STOP_TIMEOUT_S = 30.0


def gateway(
    host: str = typer.Option(None, help="MLLP address (default 127.0.0.1)."),
    port: int = typer.Option(None, help="MLLP port (default 2575)."),
    processes: int = typer.Option(
        None, min=1, help="Processes converting messages (default 2; the first also listens)."
    ),
    data_dir: Path = _DataDir,
) -> None:
    """Run the HL7 v2 gateway alone: MLLP listener and processors, no HTTP."""
    from maillage.cli.main import _configure_logging, running_database

    settings = load_settings(
        hl7_host=host, hl7_port=port, hl7_processes=processes, data_dir=data_dir
    )
    _configure_logging(settings.log_level)
    code = 0
    try:
        with running_database(settings) as conninfo:
            context = multiprocessing.get_context("spawn")
            helpers = [
                context.Process(
                    target=_processor, args=(conninfo, os.getpid()), name=f"maillage-hl7-{n}"
                )
                for n in range(1, settings.hl7_processes)
            ]
            try:
                for helper in helpers:
                    helper.start()
                code = _run(_serve(settings, conninfo, helpers=helpers))
            finally:
                _stop(helpers)
    except MaillageError as error:
        typer.secho(f"error: {error.message}", err=True, fg=typer.colors.RED)
        raise typer.Exit(code=2) from None
    if code:
        raise typer.Exit(code=code)


def _run(main: Coroutine[Any, Any, T]) -> T:
    """On uvloop where it is installed (as ``maillage serve`` runs under uvicorn): the
    listener's streams and the processors' many database round trips spend less of the
    event loop's own time than on asyncio's default loop."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - platforms without uvloop (Windows)
        return asyncio.run(main)
    return uvloop.run(main)


def _processor(conninfo: str, parent: int) -> None:
    """A processing-only process (the target of a spawned process)."""
    from maillage.cli.main import _configure_logging

    settings = load_settings(hl7_listen=False)
    _configure_logging(settings.log_level)
    _run(_serve(settings, conninfo, parent=parent))


async def _serve(
    settings: Settings,
    conninfo: str,
    *,
    helpers: Sequence[BaseProcess] | None = None,
    parent: int | None = None,
) -> int:
    """Until a signal (0), a helper's death, or the parent's (1 and 0)."""
    from maillage.app import write_hooks
    from maillage.audit import AuditTrail
    from maillage.audit.journal import AuditJournal, PendingSealer
    from maillage.demo.senders import apply_site_configuration
    from maillage.fhir.repository import FhirStore
    from maillage.fhir.search.engine import SearchEngine
    from maillage.fhir.search_definitions import SearchDefinitions
    from maillage.hl7v2.service import build_gateway
    from maillage.jobs import JobService
    from maillage.mpi import build_patient_index
    from maillage.security import AllowAll
    from maillage.storage import Database

    database = Database(conninfo, min_size=settings.db_pool_min, max_size=settings.db_pool_max)
    await database.open()
    # The FHIR store the conversions write through, following the custom search
    # parameters like the hub's processes do; as the hub builds it: the patient index
    # matches the identity feed's Patients, the care relationships follow its encounters.
    jobs = JobService(database, max_attempts=settings.job_max_attempts)
    definitions = SearchDefinitions(database, jobs, refresh_s=settings.search_definitions_refresh_s)
    engine = SearchEngine(timeout_ms=settings.search_timeout_ms)
    sites = apply_site_configuration(settings.hl7_sites_file)
    hooks = write_hooks(settings, build_patient_index(settings))
    # The feeds' changes are audited like the API's: staged in their transaction, chained
    # by this process's sealer.
    trail = AuditTrail(database)
    journal = AuditJournal(trail) if settings.audit_enabled else None
    sealer = PendingSealer(trail) if journal is not None else None
    store = FhirStore(
        database, AllowAll(), engine, definitions=definitions, write_hooks=hooks, journal=journal
    )
    hl7 = build_gateway(settings, database, sites, fhir=store)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    outcome = {"code": 0}
    watcher = asyncio.create_task(_watch(stop, outcome, helpers or [], parent))
    try:
        await definitions.refresh()
        definitions.start()
        _freeze_what_lasts()
        if sealer is not None:
            sealer.start()
        await hl7.start()
        await stop.wait()
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
        await hl7.stop()
        await definitions.stop()
        if sealer is not None:
            await sealer.stop()
            with contextlib.suppress(Exception):  # what this process staged last
                await trail.seal()
        await trail.close()
        await database.close()
    return outcome["code"]


def _freeze_what_lasts() -> None:
    """The definitions and validation rules (~300,000 objects) live as long as the
    process: loaded now and frozen, they are left out of the cyclic collector's full
    passes, which a processor's allocations (parsed messages, resources) trigger often."""
    from maillage.loading.prepare import warm_up

    warm_up()
    gc.collect()
    gc.freeze()


async def _watch(
    stop: asyncio.Event, outcome: dict[str, int], helpers: Sequence[BaseProcess], parent: int | None
) -> None:
    while not stop.is_set():
        await asyncio.sleep(_WATCH_S)
        dead = [helper for helper in helpers if not helper.is_alive()]
        if dead:
            log.error(
                "hl7 gateway: processor %s ended (exit code %s): stopping the gateway",
                dead[0].name,
                dead[0].exitcode,
            )
            outcome["code"] = 1
            stop.set()
        if parent is not None and os.getppid() != parent:
            log.warning("hl7 processor: the gateway process is gone: stopping")
            stop.set()


def _stop(helpers: Sequence[BaseProcess]) -> None:
    for helper in helpers:
        if helper.is_alive() and helper.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(helper.pid, signal.SIGTERM)
    for helper in helpers:
        helper.join(timeout=_STOP_TIMEOUT_S)
        if helper.is_alive():
            helper.kill()
            helper.join(timeout=5)
