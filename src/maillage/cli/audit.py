"""``maillage audit``: verify the audit chain, and the patient's access report.

    maillage audit verify            exit 0 when intact; 1 and the first broken link otherwise
    maillage audit report --patient ID [--since 2026-01-01] [--until ...]

Run on the server by an operator: the commands act as the hub's ``system:cli`` context.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from maillage.audit import AuditTrail, PatientAccess, VerifyReport
from maillage.errors import MaillageError
from maillage.security import RequestContext
from maillage.settings import load_settings
from maillage.storage import Database

EXIT_INTACT = 0
EXIT_BROKEN = 1
EXIT_ERROR = 2

audit_app = typer.Typer(help="The audit trail: verify its chain, report a patient's accesses.")
DataDir = typer.Option(None, "--data-dir", help="Embedded PostgreSQL folder (default ./var).")


async def _verify(conninfo: str, console: Console) -> VerifyReport:
    database = Database(conninfo, min_size=1, max_size=2)
    await database.open()
    try:
        trail = AuditTrail(database)
        columns = (
            TextColumn("verifying"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
        )
        with Progress(*columns, console=console) as bar:
            task = bar.add_task("verify", total=None)
            return await trail.verify(
                lambda done, total: bar.update(task, completed=done, total=total)
            )
    finally:
        await database.close()


async def _report(
    conninfo: str, patient: str, since: dt.datetime | None, until: dt.datetime | None
) -> list[PatientAccess]:
    database = Database(conninfo, min_size=1, max_size=2)
    await database.open()
    try:
        trail = AuditTrail(database)
        try:
            return await trail.patient_report(RequestContext.system("cli"), patient, since, until)
        finally:
            await trail.close()
    finally:
        await database.close()


def _when(text: str | None, name: str) -> dt.datetime | None:
    if text is None:
        return None
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter(f"{name}: an ISO 8601 date or date-time") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


@audit_app.command()
def verify(data_dir: Path = DataDir) -> None:
    """Walk the whole chain: exit 0 when intact, 1 with the first broken link."""
    from maillage.cli.main import running_database

    console = Console()
    settings = load_settings(data_dir=data_dir)
    try:
        with running_database(settings) as conninfo:
            report = asyncio.run(_verify(conninfo, console))
    except MaillageError as error:
        console.print(f"[red]error[/red]: {error.message}")
        raise typer.Exit(EXIT_ERROR) from None
    if report.intact:
        console.print(
            f"[green]intact[/green]: {report.checked} events, head {report.head_seq}"
            f" {report.head_hash}",
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(EXIT_INTACT)
    assert report.broken is not None
    console.print(
        f"[red]broken[/red] at row {report.broken.seq} ({report.broken.problem}):"
        f" {report.broken.detail}; {report.checked} rows before it are intact",
        highlight=False,
        soft_wrap=True,
    )
    raise typer.Exit(EXIT_BROKEN)


@audit_app.command()
def report(
    patient: str = typer.Option(..., "--patient", help="The Patient id."),
    since: str = typer.Option(None, help="From this date or instant (ISO 8601)."),
    until: str = typer.Option(None, help="Before this date or instant (ISO 8601)."),
    data_dir: Path = DataDir,
) -> None:
    """Who looked at this patient's record: who, when, what, why, with what result."""
    from maillage.cli.main import running_database

    console = Console(width=200)
    settings = load_settings(data_dir=data_dir)
    try:
        with running_database(settings) as conninfo:
            accesses = asyncio.run(
                _report(conninfo, patient, _when(since, "--since"), _when(until, "--until"))
            )
    except MaillageError as error:
        console.print(f"[red]error[/red]: {error.message}")
        raise typer.Exit(EXIT_ERROR) from None
    table = Table(title=f"Accesses to the record of Patient/{patient}: {len(accesses)}")
    for column in ("when (UTC)", "who", "roles", "site", "action", "what", "purpose", "outcome"):
        table.add_column(column)
    for access in accesses:
        purpose = access.purpose + (" (break-the-glass)" if access.break_the_glass else "")
        table.add_row(
            access.recorded.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S"),
            access.who,
            ", ".join(access.roles),
            access.site or "",
            access.interaction,
            ", ".join(access.resources),
            purpose,
            access.outcome_desc,
        )
    console.print(table)
