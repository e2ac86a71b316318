"""The bulk dedupe (``maillage identity dedupe``): the online outcome, from memory and COPY."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import psycopg
import pytest

from maillage.audit.service import AuditTrail
from maillage.identity.model import default_model
from maillage.loading import dedupe, dedupe_store
from maillage.loading.dedupe import BulkDedupe
from maillage.loading.service import BulkLoader
from maillage.storage import Database
from tests.conftest import empty_tables
from tests.factories import source_identity
from tests.mpi.test_batch import (
    _identities,
    _online,
    _outcome,
    _state,
    assert_filed_as_expected,
)


def _bulk(url: str, chunk_size: int = 10_000, **kwargs: Any) -> int:
    return BulkDedupe(url, default_model(), chunk_size=chunk_size, **kwargs).run()


def _loaded(url: str) -> list[dict[str, Any]]:
    bodies = _identities()
    BulkLoader(url, workers=1).load_resources(bodies)
    return bodies


def test_bulk_files_bulk_loaded_identities(clean_database: str) -> None:
    _loaded(clean_database)
    assert BulkDedupe(clean_database, default_model()).pending() == 13
    assert _bulk(clean_database) == 13
    mapping = assert_filed_as_expected(clean_database)
    with psycopg.connect(clean_database) as conn:
        golden = conn.execute(
            "SELECT r.id, r.content -> 'link' FROM resource r JOIN mpi_territorial t"
            " ON t.territorial_id = r.id WHERE t.active"
        ).fetchall()
        events = conn.execute(
            "SELECT who, action, count(*) FROM mpi_event GROUP BY 1, 2"
        ).fetchall()
        versions = conn.execute(
            "SELECT count(*) FROM resource_version WHERE resource_type = 'Patient'"
        ).fetchone()
        searched = conn.execute(
            "SELECT count(*) FROM sp_reference WHERE resource_type = 'Patient' AND param = 'link'"
        ).fetchone()
    assert len(golden) == 5
    members = {tid: {m for m, t in mapping.items() if t == tid} for tid in mapping.values()}
    for territorial_id, golden_links in golden:
        others = {link["other"]["reference"].removeprefix("Patient/") for link in golden_links}
        assert others == members[territorial_id]  # the golden record lists its sources
    assert {(who, action) for who, action, _ in events} == {
        ("system:identity-dedupe", "registered"),
        ("system:identity-dedupe", "linked"),
    }
    assert sum(count for _, _, count in events) == 13
    assert versions == (13,)  # each source's bulk-loaded version kept as history
    assert searched is not None and searched[0] >= 13  # Patient?link= finds them


def _goldens(url: str) -> dict[frozenset[str], dict[str, Any]]:
    """Each golden record's traits (what it says of the person), by its sources."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT r.content::text, array_agg(s.patient_id) FROM mpi_territorial t"
            " JOIN resource r ON r.resource_type = 'Patient' AND r.id = t.territorial_id"
            " JOIN mpi_source s ON s.territorial_id = t.territorial_id"
            " WHERE t.active GROUP BY r.content::text"
        ).fetchall()
    traits = {}
    for content, members in rows:
        body = json.loads(content)
        kept = {k: v for k, v in body.items() if k not in ("id", "meta", "link", "identifier")}
        traits[frozenset(members)] = kept
    return traits


def test_bulk_equals_the_online_path(clean_database: str) -> None:
    bodies = _identities()
    # a second first name on one site: the golden record takes the newest source's
    bodies[2]["name"][0]["given"] = [*bodies[2]["name"][0]["given"], "Marie"]
    asyncio.run(_online(clean_database, bodies))
    online = _outcome(clean_database)
    online_goldens = _goldens(clean_database)
    with psycopg.connect(clean_database, autocommit=True) as conn:
        empty_tables(conn)
    BulkLoader(clean_database, workers=1).load_resources(bodies)
    _bulk(clean_database)
    bulk = _outcome(clean_database)
    assert bulk[0] == online[0]
    assert bulk[1] == online[1]
    assert _goldens(clean_database) == online_goldens


def test_small_chunks_give_the_same_outcome(clean_database: str) -> None:
    _loaded(clean_database)
    assert _bulk(clean_database, chunk_size=4) == 13
    assert_filed_as_expected(clean_database)


def test_worker_processes_give_the_same_outcome(clean_database: str) -> None:
    bodies = _loaded(clean_database)
    assert _bulk(clean_database, workers=2) == 13
    with_workers = _outcome(clean_database)
    with psycopg.connect(clean_database, autocommit=True) as conn:
        empty_tables(conn)
    BulkLoader(clean_database, workers=1).load_resources(bodies)
    _bulk(clean_database, workers=0)
    assert _outcome(clean_database)[:2] == with_workers[:2]


def test_second_run_changes_nothing(clean_database: str) -> None:
    _loaded(clean_database)
    _bulk(clean_database)
    before = _state(clean_database)
    assert _bulk(clean_database) == 0
    assert _state(clean_database) == before


def test_an_identity_filed_online_between_chunks_is_matched(clean_database: str) -> None:
    """Online writes go on during a dedupe: a registration filed between two chunks is
    seen by the identities of the later chunks."""
    _loaded(clean_database)
    moreau = source_identity(site=4, birth_name="Moreau", given=("Louis",), birth_date="2001-01-09")
    moreau["id"] = "online-moreau"
    filed_online: list[int] = []

    def between_chunks(count: int) -> None:
        if not filed_online:  # after the first chunk (p001-p004), before Moreau's
            asyncio.run(_online(clean_database, [moreau]))
            filed_online.append(count)

    service = BulkDedupe(clean_database, default_model(), chunk_size=4)
    assert service.run(progress=between_chunks) == 13
    partition, _, _ = _outcome(clean_database)
    assert frozenset({"p010", "p011", "p012", "online-moreau"}) in partition


def test_a_chunk_that_meets_a_deadlock_is_taken_again(
    clean_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _loaded(clean_database)
    real = dedupe_store.write_index
    failures = [1]

    def write_once_failing(conn: psycopg.Connection, rows: Any, *, who: str) -> None:
        real(conn, rows, who=who)
        if failures:
            failures.pop()
            raise psycopg.errors.DeadlockDetected("deadlock detected (injected)")

    monkeypatch.setattr(dedupe.dedupe_store, "write_index", write_once_failing)
    assert _bulk(clean_database, chunk_size=4) == 13
    assert_filed_as_expected(clean_database)
    with psycopg.connect(clean_database) as conn:
        events = conn.execute("SELECT count(*) FROM mpi_event").fetchone()
    assert events == (13,)  # the rolled-back chunk left nothing, and was filed once


def test_audit_events_are_staged_with_the_writes(clean_database: str) -> None:
    _loaded(clean_database)

    async def run() -> None:
        database = Database(clean_database, min_size=1, max_size=2)
        await database.open()
        trail = AuditTrail(database)
        try:
            _bulk(clean_database, audit_events=trail.events)
            await trail.seal()
        finally:
            await trail.close()
            await database.close()

    asyncio.run(run())
    with psycopg.connect(clean_database) as conn:
        rows = conn.execute(
            "SELECT who, action, count(*) FROM audit_event WHERE who <> 'system:loader'"
            " GROUP BY 1, 2 ORDER BY 2"
        ).fetchall()
    # 5 golden records created, 13 sources updated with their link (the load before it
    # has its own events)
    assert rows == [("system:identity-dedupe", "C", 5), ("system:identity-dedupe", "U", 13)]


def test_a_patient_being_filed_cannot_change_under_the_chunk(
    clean_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A delete or an update of a Patient the chunk read waits for its commit: the
    ``refer`` version written would otherwise bring a deleted Patient back."""
    _loaded(clean_database)
    real = dedupe_store.write_index
    blocked: list[str] = []

    def write_while_another_tries(conn: psycopg.Connection, rows: Any, *, who: str) -> None:
        with psycopg.connect(clean_database, autocommit=True) as other:
            other.execute("SET lock_timeout = '100ms'")
            try:
                other.execute(
                    "UPDATE resource SET deleted = true"
                    " WHERE resource_type = 'Patient' AND id = 'p001'"
                )
            except psycopg.errors.LockNotAvailable:
                blocked.append("p001")
        real(conn, rows, who=who)

    monkeypatch.setattr(dedupe.dedupe_store, "write_index", write_while_another_tries)
    assert _bulk(clean_database) == 13
    assert blocked == ["p001"]
