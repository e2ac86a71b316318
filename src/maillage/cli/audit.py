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
from maillage.audit.anchoring import anchor_line, append_anchor, last_anchor, parse_anchor
from maillage.errors import MaillageError
from maillage.security import RequestContext
from maillage.settings import load_settings
from maillage.storage import Database

EXIT_INTACT = 0
EXIT_BROKEN = 1
EXIT_ERROR = 2

audit_app = typer.Typer(help="The audit trail: verify its chain, report a patient's accesses.")
DataDir = typer.Option(None, "--data-dir", help="Embedded PostgreSQL folder (default ./var).")


async def _verify(
    conninfo: str, console: Console, anchor: tuple[int, bytes] | None = None
) -> VerifyReport:
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
                lambda done, total: bar.update(task, completed=done, total=total),
                anchor=anchor,
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


async def _head(conninfo: str) -> tuple[int, bytes]:
    database = Database(conninfo, min_size=1, max_size=1)
    await database.open()
    try:
        return await AuditTrail(database).head()
    finally:
        await database.close()


def _anchor_of(anchor: str | None, anchor_file: Path | None) -> tuple[int, bytes] | None:
    if anchor is not None and anchor_file is not None:
        raise typer.BadParameter("give --anchor or --anchor-file, not both")
    if anchor is not None:
        return parse_anchor(anchor, "--anchor")
    return last_anchor(anchor_file) if anchor_file is not None else None


@audit_app.command()
def anchor(
    append: Path = typer.Option(
        None, "--append", help="Append the line to this file (kept outside the database)."
    ),
    data_dir: Path = DataDir,
) -> None:
    """Print the chain's head (row number, hash, time): keep it where the database's
    administrators cannot write, and give it to `verify --anchor` later."""
    from maillage.cli.main import running_database

    console = Console()
    settings = load_settings(data_dir=data_dir)
    try:
        with running_database(settings) as conninfo:
            seq, head_hash = asyncio.run(_head(conninfo))
        if seq == 0:
            console.print("[red]error[/red]: the audit trail is empty: nothing to anchor yet")
            raise typer.Exit(EXIT_ERROR)
        line = anchor_line(seq, head_hash, dt.datetime.now(dt.UTC))
        if append is not None:
            append_anchor(append, line)
    except (MaillageError, OSError) as error:
        said = error.message if isinstance(error, MaillageError) else str(error)
        console.print(f"[red]error[/red]: {said}")
        raise typer.Exit(EXIT_ERROR) from None
    console.print(line, highlight=False, soft_wrap=True)


@audit_app.command()
def verify(
    anchor: str = typer.Option(
        None, "--anchor", help="A head taken earlier: '<row number> <hash>' (audit anchor)."
    ),
    anchor_file: Path = typer.Option(
        None, "--anchor-file", help="A file of heads (audit anchor --append): its last one."
    ),
    data_dir: Path = DataDir,
) -> None:
    """Walk the whole chain: exit 0 when intact, 1 with the first broken link. With an
    anchor, the anchored row must still carry its hash and the chain must reach it: a
    chain rewritten from some row on, or cut at its end, is caught too."""
    from maillage.cli.main import running_database

    console = Console()
    settings = load_settings(data_dir=data_dir)
    try:
        anchored = _anchor_of(anchor, anchor_file)
        with running_database(settings) as conninfo:
            report = asyncio.run(_verify(conninfo, console, anchored))
    except MaillageError as error:
        console.print(f"[red]error[/red]: {error.message}")
        raise typer.Exit(EXIT_ERROR) from None
    # Changes' events committed but not chained yet: a running hub chains them within a
    # second; a number that stays says no hub is running to seal them.
    staged = f"; {report.staged} staged, not chained yet" if report.staged else ""
    if report.intact:
        against = f", anchored row {anchored[0]} matches" if anchored else ""
        console.print(
            f"[green]intact[/green]: {report.checked} events, head {report.head_seq}"
            f" {report.head_hash}{against}{staged}",
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
