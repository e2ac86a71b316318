"""``maillage identity``: train the matching model, run the batch dedupe, evaluate links.

- ``train``: learns m/u (Splink on DuckDB) from every source identity in the hub and
  writes the model to ``settings.identity_model_path`` (atomically);
- ``dedupe``: files the Patients the online index never saw (bulk loads, demo data) with
  the online rules, matched from memory and written by COPY (``loading/dedupe.py``);
  ``--all`` re-places every source identity, one by one (``mpi/batch.py``);
- ``evaluate FILE``: pairwise precision / recall / F1 of the hub's links against a truth
  column. Record ids are ``Patient/<id>``, a bare logical id, or a site IPP as
  ``system|value``.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import typer

from maillage.errors import ConfigurationError, MaillageError

identity_app = typer.Typer(help="The territorial patient index: train, dedupe, evaluate.")

MIN_TRAINING_IDENTITIES = 50
DataDir = typer.Option(None, "--data-dir", help="Where the embedded PostgreSQL lives.")


def _fail(error: MaillageError) -> None:
    typer.secho(f"error: {error.message}", err=True, fg=typer.colors.RED)
    raise typer.Exit(code=2)


async def _with_connection(conninfo: str, work: Any) -> Any:
    from maillage.storage import Database

    database = Database(conninfo, min_size=1, max_size=2)
    await database.open()
    try:
        async with database.transaction() as conn:
            return await work(conn)
    finally:
        await database.close()


@identity_app.command("train")
def train_command(
    data_dir: Path = DataDir,
    u_pairs: float = typer.Option(2e6, "--u-pairs", help="Random pairs sampled for u."),
) -> None:
    """Learn the model's m/u from the hub's source identities and save it."""
    from maillage.cli.main import running_database
    from maillage.identity.normalize import prepare
    from maillage.identity.patient_traits import patient_traits
    from maillage.identity.training import train
    from maillage.mpi import batch_store
    from maillage.settings import load_settings

    settings = load_settings(data_dir=data_dir)
    try:
        with running_database(settings) as conninfo:
            bodies = asyncio.run(_with_connection(conninfo, batch_store.source_bodies))
        records = [prepare(patient_traits(body)) for body in bodies]
        if len(records) < MIN_TRAINING_IDENTITIES:
            raise ConfigurationError(
                f"only {len(records)} source identities in the hub: training needs at least "
                f"{MIN_TRAINING_IDENTITIES}; load the sites' Patients first (`maillage load`)"
            )
        model = train([records], u_max_pairs=u_pairs)
        model.save(settings.identity_model_path)
    except MaillageError as error:
        _fail(error)
    typer.echo(f"trained on {len(records)} source identities")
    for comparison in model.comparisons:
        typer.echo(comparison.name)
        for level in comparison.levels:
            typer.echo(
                f"  {level.name:<28} m={level.m:.4f} u={level.u:.6f} weight={level.weight:+.2f}"
            )
    typer.echo(
        f"prior {model.prior:.2e}; auto-link at {model.thresholds.auto_link}, "
        f"review from {model.thresholds.review}"
    )
    typer.echo(f"model written to {settings.identity_model_path}")


@identity_app.command("dedupe")
def dedupe_command(
    data_dir: Path = DataDir,
    refile: bool = typer.Option(
        False, "--all", help="Re-place every source identity (verified links and never kept)."
    ),
    batch_size: int = typer.Option(
        10_000, "--batch-size", help="Identities per transaction (with --all: 500 is apt)."
    ),
) -> None:
    """File the Patients not yet in the patient index, with the online rules."""
    from maillage.cli.main import running_database
    from maillage.settings import load_settings

    settings = load_settings(data_dir=data_dir)
    try:
        with running_database(settings) as conninfo:
            filed = asyncio.run(_dedupe(conninfo, settings, refile, batch_size))
    except MaillageError as error:
        _fail(error)
    typer.echo(f"filed {filed} source identities")


async def _dedupe(conninfo: str, settings: Any, refile: bool, batch_size: int) -> int:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    from maillage.audit import AuditTrail
    from maillage.audit.journal import AuditJournal
    from maillage.fhir.repository import FhirStore
    from maillage.fhir.search.engine import SearchEngine
    from maillage.loading.dedupe import BulkDedupe
    from maillage.mpi.batch import BatchDedupe
    from maillage.mpi.index import PatientIndex
    from maillage.mpi.setup import load_model
    from maillage.security import AllowAll
    from maillage.storage import Database

    database = Database(conninfo, min_size=1, max_size=2)
    await database.open()
    # The links it writes are changes to identities: audited like the hub's own writes.
    trail = AuditTrail(database)
    journal = AuditJournal(trail) if settings.audit_enabled else None
    try:
        model = load_model(settings)
        columns = ("dedupe", BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
        if not refile:  # the set-based path (loading/dedupe.py)
            bulk = BulkDedupe(
                conninfo,
                model,
                chunk_size=batch_size,
                audit_events=trail.events if settings.audit_enabled else None,
                workers=min(os.cpu_count() or 1, 4),
            )
            with Progress(*columns) as bar:
                task = bar.add_task("dedupe", total=bulk.pending())
                filed = bulk.run(progress=lambda n: bar.advance(task, n))
            await trail.seal()
            return filed
        store = FhirStore(database, AllowAll(), SearchEngine(), journal=journal)
        service = BatchDedupe(store, PatientIndex(model), batch_size=batch_size)
        total = await service.pending(refile=refile)
        with Progress(*columns) as bar:
            task = bar.add_task("dedupe", total=total)
            filed = await service.run(refile=refile, progress=lambda n: bar.advance(task, n))
        await trail.seal()
        return filed
    finally:
        await trail.close()
        await database.close()


@identity_app.command("evaluate")
def evaluate_command(
    file: Path = typer.Argument(..., help="CSV (header row) or NDJSON file of the truth."),
    id_column: str = typer.Option(..., "--id-column", help="Patient/<id>, id or system|IPP."),
    truth_column: str = typer.Option(..., "--truth-column", help="The true person's key."),
    data_dir: Path = DataDir,
) -> None:
    """Pairwise precision / recall / F1 of the hub's links against a truth file."""
    from maillage.cli.main import running_database
    from maillage.identity.evaluation import pairwise_scores, read_truth
    from maillage.mpi import batch_store
    from maillage.settings import load_settings

    settings = load_settings(data_dir=data_dir)
    try:
        truth_raw = read_truth(file, id_column, truth_column)
        with running_database(settings) as conninfo:
            clusters, by_ipp, review = asyncio.run(
                _with_connection(conninfo, batch_store.current_links)
            )
        truth: dict[str, str] = {}
        unknown = 0
        for record, person in truth_raw.items():
            patient_id = _resolve(record, clusters, by_ipp)
            if patient_id is None:
                unknown += 1
            else:
                truth[patient_id] = person
        if not truth:
            raise ConfigurationError(
                f"none of the {len(truth_raw)} ids of {file} is a source identity in the hub; "
                "give ids as Patient/<id>, <id> or system|IPP"
            )
        predicted = {pid: clusters[pid] for pid in truth}
        scores = pairwise_scores(predicted, truth, review)
    except MaillageError as error:
        _fail(error)
    for name, value in scores.as_dict().items():
        typer.echo(f"{name}: {value:.4f}" if isinstance(value, float) else f"{name}: {value}")
    if unknown:
        typer.echo(f"{unknown} id(s) of the file are not in the hub (left out)")


def _resolve(
    record: str, clusters: dict[str, str], by_ipp: dict[tuple[str, str], str]
) -> str | None:
    if "|" in record:
        system, _, value = record.partition("|")
        return by_ipp.get((system, value))
    patient_id = record.removeprefix("Patient/")
    return patient_id if patient_id in clusters else None
