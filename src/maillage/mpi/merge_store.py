"""The SQL of merges: the resources that point at an identity, and the ``mpi_merge`` rows."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from maillage.mpi.store import json_value


@dataclass(frozen=True, slots=True)
class MergeRow:
    id: int
    survivor_id: str
    merged_id: str
    at: datetime
    who: str
    reason: str | None
    moved: list[dict[str, Any]]
    before: dict[str, Any]
    unmerged_at: datetime | None
    unmerged_by: str | None
    unmerge_reason: str | None


async def referring(conn: psycopg.AsyncConnection, patient_id: str) -> list[tuple[str, str]]:
    """The live resources (other than Patients) whose indexed references point at
    ``Patient/patient_id``: every reference search parameter, so every compartment link."""
    cursor = await conn.execute(
        "SELECT DISTINCT r.resource_type, r.id FROM sp_reference x"
        " JOIN resource r ON r.rid = x.rid"
        " WHERE x.target_type = 'Patient' AND x.target_id = %s AND NOT r.deleted"
        " AND r.resource_type <> 'Patient' ORDER BY 1, 2",
        (patient_id,),
    )
    return [(str(row[0]), str(row[1])) for row in await cursor.fetchall()]


async def insert(
    conn: psycopg.AsyncConnection,
    *,
    survivor_id: str,
    merged_id: str,
    who: str,
    reason: str,
    moved: list[dict[str, Any]],
    before: dict[str, Any],
) -> int:
    cursor = await conn.execute(
        "INSERT INTO mpi_merge (survivor_id, merged_id, who, reason, moved, before)"
        " VALUES (%s, %s, %s, %s, %s, %s) RETURNING id",
        (survivor_id, merged_id, who, reason, Jsonb(moved), Jsonb(before)),
    )
    row = await cursor.fetchone()
    assert row is not None
    return int(row[0])


async def get(conn: psycopg.AsyncConnection, merge_id: int) -> MergeRow | None:
    async with conn.cursor(row_factory=dict_row) as cursor:
        await cursor.execute("SELECT * FROM mpi_merge WHERE id = %s FOR UPDATE", (merge_id,))
        row = await cursor.fetchone()
    if row is None:
        return None
    return MergeRow(
        **{**row, "moved": json_value(row["moved"]), "before": json_value(row["before"])}
    )


async def open_merge_of(conn: psycopg.AsyncConnection, merged_id: str) -> int | None:
    """The merge that absorbed ``merged_id`` and was not undone, if any."""
    cursor = await conn.execute(
        "SELECT id FROM mpi_merge WHERE merged_id = %s AND unmerged_at IS NULL", (merged_id,)
    )
    row = await cursor.fetchone()
    return int(row[0]) if row else None


async def mark_unmerged(
    conn: psycopg.AsyncConnection, merge_id: int, who: str, reason: str
) -> None:
    await conn.execute(
        "UPDATE mpi_merge SET unmerged_at = now(), unmerged_by = %s, unmerge_reason = %s"
        " WHERE id = %s",
        (who, reason, merge_id),
    )
