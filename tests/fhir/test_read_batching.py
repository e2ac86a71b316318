"""Reads by id in flight together share one statement, each getting its own answer."""

from __future__ import annotations

import asyncio

import psycopg
from psycopg import sql

from maillage.fhir.read_batching import ReadBatcher
from maillage.storage import Database


def _insert(conninfo: str, rows: list[tuple[str, str, bool]]) -> None:
    with psycopg.connect(conninfo) as conn:
        for resource_type, resource_id, deleted in rows:
            conn.execute(
                "INSERT INTO resource (resource_type, id, version_id, last_updated, deleted,"
                " method, content) VALUES (%s, %s, 1, now(), %s, 'POST', %s::jsonb)",
                (
                    resource_type,
                    resource_id,
                    deleted,
                    None if deleted else f'{{"resourceType": "{resource_type}", "id": "x"}}',
                ),
            )


def test_concurrent_reads_get_their_own_rows(clean_database: str) -> None:
    _insert(
        clean_database,
        [
            ("Patient", "a", False),
            ("Patient", "b", False),
            ("Observation", "a", False),
            ("Patient", "gone", True),
        ],
    )

    async def scenario() -> list[tuple[str, str, bool] | None]:
        db = Database(clean_database, min_size=1, max_size=2)
        await db.open()
        try:
            batcher = ReadBatcher(db)
            visible = sql.SQL("TRUE")
            wanted = [
                ("Patient", "a"),
                ("Observation", "a"),
                ("Patient", "missing"),
                ("Patient", "b"),
                ("Patient", "a"),
                ("Patient", "gone"),
            ]
            found = await asyncio.gather(*(batcher.fetch(visible, t, i) for t, i in wanted))
            return [(f.resource_type, f.id, f.deleted) if f else None for f in found]
        finally:
            await db.close()

    assert asyncio.run(scenario()) == [
        ("Patient", "a", False),
        ("Observation", "a", False),
        None,
        ("Patient", "b", False),
        ("Patient", "a", False),
        ("Patient", "gone", True),
    ]


def test_reads_under_different_filters_are_not_mixed(clean_database: str) -> None:
    _insert(clean_database, [("Patient", "a", False), ("Patient", "b", False)])

    async def scenario() -> list[str | None]:
        db = Database(clean_database, min_size=1, max_size=2)
        await db.open()
        try:
            batcher = ReadBatcher(db)
            only_a = sql.SQL("r.id = {}").format(sql.Literal("a"))
            everything = sql.SQL("TRUE")
            found = await asyncio.gather(
                batcher.fetch(only_a, "Patient", "a"),
                batcher.fetch(only_a, "Patient", "b"),
                batcher.fetch(everything, "Patient", "b"),
            )
            return [f.id if f else None for f in found]
        finally:
            await db.close()

    assert asyncio.run(scenario()) == ["a", None, "b"]
