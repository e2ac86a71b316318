"""The batch dedupe: bulk-loaded source identities filed with the online rules."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import psycopg

from maillage.fhir.repository import FhirStore
from maillage.fhir.search.engine import SearchEngine
from maillage.identity.model import default_model
from maillage.loading.service import BulkLoader
from maillage.mpi.batch import BatchDedupe
from maillage.mpi.index import PatientIndex
from maillage.security import AllowAll, RequestContext
from maillage.storage import Database
from tests.conftest import empty_tables
from tests.factories import source_identity


def _identities() -> list[dict[str, Any]]:
    people = [
        ("Martin", ("Camille",), "1980-02-03"),
        ("Dupont", ("Jean", "Pierre"), "1955-11-30"),
        ("Lefebvre", ("Anne",), "1992-07-14"),
        ("Moreau", ("Louis",), "2001-01-09"),
    ]
    out = []
    number = 0
    for birth_name, given, birth_date in people:
        for site in (0, 1, 2):
            number += 1
            body = source_identity(
                site=site, birth_name=birth_name, given=given, birth_date=birth_date
            )
            body["id"] = f"p{number:03d}"
            out.append(body)
    # a near homonym: goes to review, not linked
    near = source_identity(
        site=3,
        birth_name="Martin",
        given=("Camille",),
        birth_date="1980-02-03",
        gender="male",
        birthplace="99134",
    )
    near["id"] = "p900"
    out.append(near)
    return out


async def _dedupe(url: str, *, refile: bool = False) -> int:
    database = Database(url, min_size=1, max_size=2)
    await database.open()
    try:
        store = FhirStore(database, AllowAll(), SearchEngine())
        return await BatchDedupe(store, PatientIndex(default_model()), batch_size=4).run(
            refile=refile
        )
    finally:
        await database.close()


async def _online(url: str, bodies: list[dict[str, Any]]) -> None:
    database = Database(url, min_size=1, max_size=2)
    await database.open()
    try:
        index = PatientIndex(default_model())
        store = FhirStore(database, AllowAll(), SearchEngine(), write_hooks={"Patient": index})
        repo = store.repository(RequestContext.system("test"))
        for body in bodies:
            await repo.create(dict(body), resource_id=body["id"])
    finally:
        await database.close()


def _outcome(url: str) -> tuple[set[frozenset[str]], set[frozenset[str]], dict[str, str]]:
    with psycopg.connect(url) as conn:
        groups: dict[str, set[str]] = {}
        for pid, tid in conn.execute("SELECT patient_id, territorial_id FROM mpi_source"):
            groups.setdefault(tid, set()).add(pid)
        review = {
            frozenset(pair)
            for pair in conn.execute(
                "SELECT patient_id, matched_patient_id FROM mpi_candidate WHERE status = 'open'"
            )
        }
        links = {}
        for pid, raw in conn.execute(
            "SELECT id, content FROM resource WHERE resource_type = 'Patient'"
        ):
            content = json.loads(raw) if isinstance(raw, str) else raw
            for link in content.get("link") or []:
                if link.get("type") == "refer":
                    links[pid] = link["other"]["reference"].removeprefix("Patient/")
        partition = {frozenset(members) for members in groups.values()}
        return partition, review, links


def _state(url: str) -> tuple[Any, ...]:
    with psycopg.connect(url) as conn:
        return tuple(
            conn.execute(sql).fetchall()
            for sql in (
                "SELECT patient_id, territorial_id, link_kind FROM mpi_source ORDER BY 1",
                "SELECT count(*) FROM mpi_event",
                "SELECT count(*) FROM mpi_candidate",
                "SELECT count(*), max(version_id) FROM resource",
            )
        )


def assert_filed_as_expected(url: str) -> dict[str, str]:
    """``_identities`` filed: four persons of three sites each linked, the near homonym
    alone and waiting for review, every source referring to its territorial identity.
    Returns patient id → territorial id."""
    partition, review, links = _outcome(url)
    assert len(partition) == 5
    assert frozenset({"p001", "p002", "p003"}) in partition
    assert frozenset({"p900"}) in partition
    assert any("p900" in pair for pair in review)  # the near homonym waits for a person
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT patient_id, territorial_id FROM mpi_source").fetchall()
    mapping = {str(pid): str(tid) for pid, tid in rows}
    assert links == mapping
    return mapping


def test_batch_files_bulk_loaded_identities(clean_database: str) -> None:
    BulkLoader(clean_database, workers=1).load_resources(_identities())
    filed = asyncio.run(_dedupe(clean_database))
    assert filed == 13
    assert_filed_as_expected(clean_database)
    with psycopg.connect(clean_database) as conn:
        golden = conn.execute(
            "SELECT count(*) FROM resource r JOIN mpi_territorial t"
            " ON t.territorial_id = r.id WHERE t.active"
        ).fetchone()
        who = {w for (w,) in conn.execute("SELECT DISTINCT who FROM mpi_event")}
    assert golden == (5,)
    assert who == {"system:identity-dedupe"}


def test_second_run_changes_nothing(clean_database: str) -> None:
    BulkLoader(clean_database, workers=1).load_resources(_identities())
    asyncio.run(_dedupe(clean_database))
    before = _state(clean_database)
    assert asyncio.run(_dedupe(clean_database)) == 0
    assert _state(clean_database) == before


def test_refile_all_keeps_the_outcome(clean_database: str) -> None:
    BulkLoader(clean_database, workers=1).load_resources(_identities())
    asyncio.run(_dedupe(clean_database))
    partition, review, _ = _outcome(clean_database)
    assert asyncio.run(_dedupe(clean_database, refile=True)) == 13
    after, review_after, _ = _outcome(clean_database)
    assert after == partition
    # re-filing an earlier identity sees the later ones, as an online update would: the
    # queue may grow, never lose a pair
    assert review <= review_after


def test_batch_equals_the_online_path(clean_database: str) -> None:
    bodies = _identities()
    asyncio.run(_online(clean_database, bodies))
    online = _outcome(clean_database)
    with psycopg.connect(clean_database, autocommit=True) as conn:
        empty_tables(conn)
    BulkLoader(clean_database, workers=1).load_resources(bodies)
    asyncio.run(_dedupe(clean_database))
    batch = _outcome(clean_database)
    assert batch[0] == online[0]
    assert batch[1] == online[1]
