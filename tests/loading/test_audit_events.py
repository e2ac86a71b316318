"""A bulk load is audited as the store's writes are: one event per patient and per kind
of change, staged in the chunk's transaction, chained by the trail like any other."""

from __future__ import annotations

import asyncio
import random
import string
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pytest

from maillage.audit.service import AuditTrail, VerifyReport
from maillage.loading.service import BulkLoader
from maillage.storage import Database
from tests.conftest import emptied, fresh_database
from tests.loading.conftest import SMALL_TERRITORY, write_ndjson

# what the small territory's seven resources are about
FIRST_LOAD = {
    ("C", "pat-1"): {"Patient/pat-1", "Encounter/enc-1", "Observation/obs-1", "Condition/cond-1"},
    ("C", "pat-2"): {"Patient/pat-2"},
    ("C", None): {"Organization/org-site-a", "Practitioner/pract-1"},
}


@pytest.fixture(scope="module")
def own_database(server_url: str) -> Iterator[str]:
    """A database of these tests' own: the session's hubs run sealers on the shared one,
    which would chain what these tests expect to find staged."""
    with fresh_database(server_url, "maillage_load_audit") as url:
        yield url


@pytest.fixture
def clean_database(own_database: str) -> str:
    """This module's database, emptied."""
    return emptied(own_database)


def _staged(conninfo: str) -> dict[tuple[str, str | None], set[str]]:
    """The staged events: (action, patient) → the resources they name, the patient's own
    entity included (one event each)."""
    with psycopg.connect(conninfo) as conn:
        rows = conn.execute("SELECT action, patient_id, who, body FROM audit_pending").fetchall()
    found: dict[tuple[str, str | None], set[str]] = {}
    for action, patient, who, body in rows:
        assert who == "system:loader"
        assert (action, patient) not in found, "one event per patient and kind of change"
        named = {entity["what"]["reference"] for entity in body.get("entity", [])}
        assert patient is None or f"Patient/{patient}" in named
        found[(action, patient)] = named
    return found


def test_a_load_stages_one_event_per_patient_naming_what_it_created(clean_database: str) -> None:
    BulkLoader(clean_database).load_paths([SMALL_TERRITORY])

    assert _staged(clean_database) == FIRST_LOAD
    with psycopg.connect(clean_database) as conn:
        bodies = [orjson.dumps(row[0]) for row in conn.execute("SELECT body FROM audit_pending")]
    # references only: the loaded names and birth dates are in no event
    for trait in (b"Exemple", b"No\\u00e9", "Noé".encode(), b"1985-06-15", b"Fictif"):
        assert not any(trait in body for body in bodies)


def test_the_staged_events_are_chained_and_the_chain_verifies(clean_database: str) -> None:
    BulkLoader(clean_database).load_paths([SMALL_TERRITORY])

    async def seal_and_verify() -> tuple[int, VerifyReport]:
        database = Database(clean_database, min_size=1, max_size=2)
        await database.open()
        trail = AuditTrail(database)
        try:
            sealed = await trail.seal()
            return sealed, await trail.verify()
        finally:
            await trail.close()
            await database.close()

    sealed, report = asyncio.run(seal_and_verify())
    assert sealed == 3
    assert (report.intact, report.checked, report.staged) == (True, 3, 0)


def test_unchanged_resources_are_no_change_and_a_new_version_is_an_update(
    clean_database: str, small_territory: list[dict[str, Any]], tmp_path: Path
) -> None:
    loader = BulkLoader(clean_database)
    loader.load_paths([SMALL_TERRITORY])
    loader.load_paths([SMALL_TERRITORY])
    assert _staged(clean_database) == FIRST_LOAD  # the reload changed nothing: no event

    changed = [
        {**resource, "status": "amended"} if resource["id"] == "obs-1" else resource
        for resource in small_territory
    ]
    loader.load_paths([write_ndjson(tmp_path / "v2.ndjson", changed)])
    assert _staged(clean_database) == {
        **FIRST_LOAD,
        ("U", "pat-1"): {"Patient/pat-1", "Observation/obs-1"},
    }


def test_a_chunk_not_written_leaves_no_event(clean_database: str, tmp_path: Path) -> None:
    patients = [{"resourceType": "Patient", "id": f"p-{number}"} for number in range(8)]
    source = write_ndjson(tmp_path / "strict.ndjson", [*patients[:4], "not json", *patients[4:]])

    report = BulkLoader(clean_database, chunk_size=4, workers=0).load_paths([source], strict=True)

    assert report.stopped and report.loaded == 4
    assert _staged(clean_database) == {("C", f"p-{n}"): {f"Patient/p-{n}"} for n in range(4)}


def test_a_line_the_database_refuses_has_no_event_and_the_others_have_theirs(
    clean_database: str,
) -> None:
    noise = "".join(random.Random(7).choices(string.ascii_lowercase, k=12_000))
    resources: list[dict[str, Any]] = [
        {"resourceType": "Patient", "id": "before"},
        {"resourceType": "Patient", "id": "huge", "managingOrganization": {
            "reference": f"Organization/{noise}"
        }},
        {"resourceType": "Patient", "id": "after"},
    ]  # fmt: skip

    report = BulkLoader(clean_database).load_resources(resources, source="memory")

    assert report.created == 2 and len(report.rejected) == 1
    assert _staged(clean_database) == {
        ("C", "before"): {"Patient/before"},
        ("C", "after"): {"Patient/after"},
    }


def test_a_load_with_the_audit_off_stages_nothing(clean_database: str) -> None:
    report = BulkLoader(clean_database, audit=False).load_paths([SMALL_TERRITORY])

    assert report.created == 7
    assert _staged(clean_database) == {}
