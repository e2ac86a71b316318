"""A change and its audit event commit together: staged in the write's transaction
(no chain lock), chained afterwards by whichever process seals first."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import psycopg
import pytest
from typer.testing import CliRunner

from maillage.audit import AuditTrail
from maillage.audit.journal import AuditJournal
from maillage.cli.main import app
from maillage.errors import MaillageError
from maillage.fhir.repository import FhirStore, Repository
from maillage.fhir.search.engine import SearchEngine
from maillage.security import AllowAll
from maillage.storage import Database
from tests import factories
from tests.conftest import emptied, fresh_database

from .conftest import DOCTOR, fill, run

T = TypeVar("T")
SYSTEM = "urn:oid:1.2.250.1.999.1.2.3"


@pytest.fixture(scope="module")
def own_database(server_url: str) -> Iterator[str]:
    """A database of these tests' own: the session's hubs run sealers on the shared one,
    which would chain what these tests expect to find staged."""
    with fresh_database(server_url, "maillage_journal") as url:
        yield url


@pytest.fixture
def clean_database(own_database: str) -> str:
    """This module's database, emptied."""
    return emptied(own_database)


@asynccontextmanager
async def _journaled(conninfo: str) -> AsyncIterator[tuple[Repository, AuditTrail]]:
    """A repository whose writes are journaled, and its trail (closed without sealing:
    what a process that stopped leaves)."""
    database = Database(conninfo, min_size=1, max_size=4)
    await database.open()
    trail = AuditTrail(database)
    store = FhirStore(database, AllowAll(), SearchEngine(), journal=AuditJournal(trail))
    try:
        yield store.repository(DOCTOR), trail
    finally:
        await trail.close()
        await database.close()


def _run(conninfo: str, work: Callable[[Repository, AuditTrail], Awaitable[T]]) -> T:
    async def main() -> T:
        async with _journaled(conninfo) as (repo, trail):
            return await work(repo, trail)

    return asyncio.run(main())


def _rows(conninfo: str, table: str) -> list[tuple[Any, ...]]:
    """(patient, action, interaction, the resources named) of each event, in order."""
    order = "seq" if table == "audit_event" else "id"
    with psycopg.connect(conninfo) as conn:
        rows = conn.execute(
            f"SELECT patient_id, action, body FROM {table} ORDER BY {order}"
        ).fetchall()
    return [
        (patient, action, body["subtype"][0]["code"], _named(body))
        for patient, action, body in rows
    ]


def _named(body: dict[str, Any]) -> str:
    """The resources an event names (its patient's entity aside, unless only it)."""
    references = [entity["what"]["reference"] for entity in body["entity"]]
    return " ".join(sorted(references[1:] if len(references) > 1 else references))


def test_a_committed_write_has_its_staged_event_and_a_rolled_back_one_none(
    clean_database: str,
) -> None:
    async def work(repo: Repository, trail: AuditTrail) -> str:
        created = await repo.create(factories.patient())
        with pytest.raises(MaillageError):
            async with repo.atomic() as bound:
                await bound.create(factories.patient())
                await bound.read("Patient", "no-such-patient")  # the bundle's next entry fails
        return created.resource.id

    patient_id = _run(clean_database, work)

    assert _rows(clean_database, "audit_pending") == [
        (patient_id, "C", "create", f"Patient/{patient_id}")
    ]
    assert _rows(clean_database, "audit_event") == []  # staged only: nothing sealed it


def test_what_a_stopped_process_staged_is_chained_by_another_and_verifies(
    clean_database: str,
) -> None:
    async def write(repo: Repository, trail: AuditTrail) -> tuple[str, str]:
        patient = await repo.create(factories.patient())
        observation = await repo.create(
            factories.observation(subject=f"Patient/{patient.resource.id}")
        )
        await repo.delete("Observation", observation.resource.id)
        return patient.resource.id, observation.resource.id

    patient_id, observation_id = _run(clean_database, write)

    async def seal(repo: Repository, trail: AuditTrail) -> tuple[int, int, bool]:
        sealed = await trail.seal()
        report = await trail.verify()
        return sealed, report.staged, report.intact

    assert _run(clean_database, seal) == (3, 0, True)
    assert _rows(clean_database, "audit_pending") == []
    # in the order written; the deletion names the deleted Observation's patient
    assert _rows(clean_database, "audit_event") == [
        (patient_id, "C", "create", f"Patient/{patient_id}"),
        (patient_id, "C", "create", f"Observation/{observation_id}"),
        (patient_id, "D", "delete", f"Observation/{observation_id}"),
    ]


def test_verify_counts_the_events_still_staged(clean_database: str) -> None:
    async def work(repo: Repository, trail: AuditTrail) -> tuple[int, bool]:
        await repo.create(factories.patient())
        await repo.create(factories.patient())
        report = await trail.verify()
        return report.staged, report.intact

    assert _run(clean_database, work) == (2, True)


def test_a_group_of_conditional_writes_stages_one_event_per_resource(
    clean_database: str,
) -> None:
    def items(value: float) -> list[tuple[list[tuple[str, str]], dict[str, Any]]]:
        return [
            (
                [("identifier", f"{SYSTEM}|{number}")],
                factories.observation(
                    subject="Patient/p1",
                    value=value,
                    identifier=[{"system": SYSTEM, "value": number}],
                ),
            )
            for number in ("A1", "A2")
        ]

    async def work(repo: Repository, trail: AuditTrail) -> list[str]:
        created = await repo.conditional_update_many("Observation", items(1.0))
        await repo.conditional_update_many("Observation", items(2.0))
        return [outcome.resource.id for outcome in created]

    first, second = _run(clean_database, work)

    # one event per patient and interaction, naming that patient's resources
    both = " ".join(sorted([f"Observation/{first}", f"Observation/{second}"]))
    assert _rows(clean_database, "audit_pending") == [
        ("p1", "C", "create", both),
        ("p1", "U", "update", both),
    ]


def test_many_staged_events_are_chained_in_several_passes(
    clean_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from maillage.audit import store

    monkeypatch.setattr(store, "SEAL_BATCH", 4)

    async def work(repo: Repository, trail: AuditTrail) -> tuple[int, int, int]:
        await asyncio.gather(*(repo.create(factories.patient()) for _ in range(10)))
        sealed = await trail.seal()
        report = await trail.verify()
        return sealed, report.checked, report.staged

    assert _run(clean_database, work) == (10, 10, 0)


def test_verify_on_the_command_line_says_how_many_events_wait(clean_database: str) -> None:
    async def stage(trail: AuditTrail) -> None:
        events = trail.events(DOCTOR, "create", "Patient", ["p1"], ["p1"])
        async with trail.db.transaction() as conn:
            await trail.stage(conn, events)

    fill(clean_database, 2)
    run(clean_database, stage)
    result = CliRunner().invoke(
        app, ["audit", "verify"], env={"MAILLAGE_DATABASE_URL": clean_database}
    )
    assert result.exit_code == 0, result.output
    assert "intact: 2 events" in result.output and "1 staged, not chained yet" in result.output
