"""``maillage``: serve the hub, load FHIR data, manage the database."""

from __future__ import annotations

import logging
import os
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import typer

from maillage.cli.admin import admin_app
from maillage.cli.audit import audit_app
from maillage.cli.gateway import gateway
from maillage.cli.hl7 import hl7_app
from maillage.cli.identity import identity_app
from maillage.errors import ConfigurationError, MaillageError
from maillage.mpi.rekey import ensure_blocking_keys
from maillage.settings import Settings, load_settings
from maillage.storage import DatabaseLocation, prepare_database

app = typer.Typer(
    help="Maillage, the territorial health information hub of a GHT.", no_args_is_help=True
)
db_app = typer.Typer(help="Database management.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(hl7_app, name="hl7")
app.add_typer(admin_app, name="admin")
app.add_typer(audit_app, name="audit")
app.add_typer(identity_app, name="identity")
app.command()(gateway)

DataDirOption = typer.Option(
    None,
    "--data-dir",
    help="Where the embedded PostgreSQL lives "
    "(default ./var); ignored when MAILLAGE_DATABASE_URL is set.",
)


def _configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )


@contextmanager
def running_database(settings: Settings) -> Iterator[str]:
    """Start the embedded PostgreSQL if needed, bring the schema (and the patient index's
    blocking keys) up to date, yield its URL."""
    location = DatabaseLocation(settings.database_url, settings.data_dir)
    try:
        conninfo = location.start()
        prepare_database(conninfo)
        ensure_blocking_keys(conninfo)
        yield conninfo
    finally:
        location.stop()


def _stop_cleanly_on_sigterm() -> None:
    """Turn SIGTERM into SystemExit so that ``finally`` blocks stop the embedded PostgreSQL
    (uvicorn re-raises the signal it caught once it has shut down)."""
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))


# Each worker holds its own pool (Settings.db_pool_max connections): the cap keeps the
# total well under PostgreSQL's default max_connections (100) on a large machine.
MAX_DEFAULT_WORKERS = 4


def default_workers() -> int:
    """One worker per CPU core, at most MAX_DEFAULT_WORKERS: on the 2-core reference machine
    two workers serve more reads and creates per second than one (docs/benchmarks.md)."""
    return max(1, min(os.cpu_count() or 1, MAX_DEFAULT_WORKERS))


def _fail(error: MaillageError) -> None:
    typer.secho(f"error: {error.message}", err=True, fg=typer.colors.RED)
    raise typer.Exit(code=2)


@app.command()
def serve(
    host: str = typer.Option(None, help="Address to listen on (default 127.0.0.1)."),
    port: int = typer.Option(None, help="Port to listen on (default 8080)."),
    data_dir: Path = DataDirOption,
    demo: bool = typer.Option(
        True, "--demo/--no-demo", help="Load the demo territory into an empty database."
    ),
    workers: int = typer.Option(
        None,
        min=1,
        help="HTTP worker processes (default: one per CPU core, at most "
        f"{MAX_DEFAULT_WORKERS}; see docs/benchmarks.md).",
    ),
) -> None:
    """Start the hub: FHIR API on /fhir, /health, /metrics, and the HL7 v2 MLLP listener
    (MAILLAGE_HL7_PORT, default 2575; MAILLAGE_HL7_ENABLED=false to leave it off)."""
    import uvicorn

    workers = workers or default_workers()
    settings = load_settings(host=host, port=port, data_dir=data_dir)
    _configure_logging(settings.log_level)
    _stop_cleanly_on_sigterm()
    try:
        with running_database(settings) as conninfo:
            if demo:
                from maillage.demo.territory import load_demo_if_empty

                if (
                    load_demo_if_empty(conninfo, audit=settings.audit_enabled)
                    and settings.identity_index_enabled
                ):
                    # a bulk load bypasses the online matching: file the demo's Patients
                    import asyncio

                    from maillage.cli.identity import _dedupe

                    asyncio.run(_dedupe(conninfo, settings, False, 10_000))
                if settings.auth_enabled:
                    from maillage.demo.accounts import provision_demo_accounts

                    provision_demo_accounts(conninfo, settings)
            if workers > 1:
                from maillage.cli.workers import run_workers

                os.environ["MAILLAGE_DATABASE_URL"] = conninfo
                code = run_workers(settings.host, settings.port, workers, settings.log_level)
                if code:
                    raise typer.Exit(code=code)
            else:
                from maillage.app import create_app

                uvicorn.run(
                    create_app(settings, conninfo, gateway=settings.hl7_enabled),
                    host=settings.host,
                    port=settings.port,
                    log_level="warning",
                    access_log=False,
                )
    except MaillageError as error:
        _fail(error)


@app.command()
def load(
    paths: list[Path] = typer.Argument(
        ..., help="NDJSON files, folders of them, or Bundle JSON files."
    ),
    data_dir: Path = DataDirOption,
    strict: bool = typer.Option(False, "--strict", help="Stop at the first bad line."),
    no_index: bool = typer.Option(
        False,
        "--no-index",
        help="Store without search index rows (faster); run `maillage reindex` afterwards.",
    ),
    index_build: str = typer.Option(
        "auto",
        "--index-build",
        help="When the search tables' B-tree indexes are built: 'during' (row by row), "
        "'after' (set aside, built once at the end; searches are slow meanwhile) or 'auto' "
        "('after' when the input is 256 MB or more and bigger than what is stored).",
    ),
) -> None:
    """Bulk-load FHIR resources (PostgreSQL COPY), idempotently."""
    settings = load_settings(data_dir=data_dir)
    _configure_logging("WARNING")
    try:
        for path in paths:
            if not path.exists():
                raise ConfigurationError(
                    f"{path} does not exist; give NDJSON files, folders or Bundle JSON files"
                )
        from maillage.demo.senders import apply_site_configuration
        from maillage.loading.cli import run_load
        from maillage.loading.service import INDEX_BUILDS

        if index_build not in INDEX_BUILDS:
            raise ConfigurationError(
                f"--index-build {index_build!r}: use one of {', '.join(INDEX_BUILDS)}"
            )

        apply_site_configuration(settings.hl7_sites_file)
        with running_database(settings) as conninfo:
            code = run_load(
                conninfo,
                paths,
                strict=strict,
                index=not no_index,
                index_build=index_build,
                audit=settings.audit_enabled,
            )
    except MaillageError as error:
        _fail(error)
    raise typer.Exit(code=code)


@app.command()
def reindex(
    types: list[str] = typer.Option(
        None, "--type", help="A resource type to reindex (repeatable; default: all types)."
    ),
    data_dir: Path = DataDirOption,
) -> None:
    """Rebuild the search index in the foreground, resuming an unfinished reindex."""
    import asyncio

    from rich.console import Console

    from maillage.cli.reindex import run_reindex
    from maillage.fhir.definitions import resource_types

    settings = load_settings(data_dir=data_dir)
    _configure_logging("WARNING")
    unknown = sorted(set(types or ()) - resource_types())
    if unknown:
        _fail(ConfigurationError(f"unknown resource type(s): {', '.join(unknown)}"))
    console = Console(stderr=True)
    try:
        with running_database(settings) as conninfo:
            code = asyncio.run(run_reindex(conninfo, types or None, settings, console))
    except MaillageError as error:
        _fail(error)
    except KeyboardInterrupt:
        console.print("interrupted: run `maillage reindex` again to resume where it stopped")
        raise typer.Exit(code=130) from None
    raise typer.Exit(code=code)


@db_app.command("upgrade")
def db_upgrade(data_dir: Path = DataDirOption) -> None:
    """Apply pending schema migrations."""
    from maillage.storage import current_version, upgrade

    settings = load_settings(data_dir=data_dir)
    _configure_logging("WARNING")
    location = DatabaseLocation(settings.database_url, settings.data_dir)
    try:
        conninfo = location.start()
        applied = upgrade(conninfo)
        version = current_version(conninfo)
        typer.echo(f"applied {len(applied)} migration(s); schema at version {version}")
    except MaillageError as error:
        _fail(error)
    finally:
        location.stop()
