"""The batch dedupe's SQL: which source identities are left to file, and their bodies."""

from __future__ import annotations

import json
from typing import Any

import psycopg

# A source identity: a live Patient that is not a territorial identity (golden record).
SOURCES = """
    FROM resource r
    WHERE r.resource_type = 'Patient' AND NOT r.deleted
      AND NOT EXISTS (SELECT 1 FROM mpi_territorial t WHERE t.territorial_id = r.id)
"""
UNFILED = " AND NOT EXISTS (SELECT 1 FROM mpi_source s WHERE s.patient_id = r.id)"


async def count_pending(conn: psycopg.AsyncConnection, *, refile: bool) -> int:
    sql = "SELECT count(*) " + SOURCES + ("" if refile else UNFILED)
    row = await (await conn.execute(sql)).fetchone()
    return int(row[0]) if row else 0


async def next_batch(
    conn: psycopg.AsyncConnection, *, after: str, limit: int, refile: bool
) -> list[tuple[str, dict[str, Any]]]:
    """The next ``limit`` source identities after ``after`` (keyset by id), with bodies."""
    sql = (
        "SELECT r.id, r.content "
        + SOURCES
        + ("" if refile else UNFILED)
        + " AND r.id > %s ORDER BY r.id LIMIT %s"
    )
    rows = await (await conn.execute(sql, (after, limit))).fetchall()
    return [(str(pid), _body(body)) for pid, body in rows]


async def source_bodies(conn: psycopg.AsyncConnection) -> list[dict[str, Any]]:
    """Every source identity's body (what ``maillage identity train`` learns from)."""
    rows = await (await conn.execute("SELECT r.content " + SOURCES + " ORDER BY r.id")).fetchall()
    return [_body(body) for (body,) in rows]


async def current_links(
    conn: psycopg.AsyncConnection,
) -> tuple[dict[str, str], dict[tuple[str, str], str], list[tuple[str, str]]]:
    """The hub's clustering: patient id → territorial id, (IPP system, IPP) → patient id,
    and the open review pairs."""
    clusters: dict[str, str] = {}
    by_ipp: dict[tuple[str, str], str] = {}
    cursor = await conn.execute(
        "SELECT patient_id, territorial_id, ipp_system, ipp FROM mpi_source WHERE active"
    )
    for patient_id, territorial_id, ipp_system, ipp in await cursor.fetchall():
        clusters[patient_id] = territorial_id
        if ipp_system and ipp:
            by_ipp[(ipp_system, ipp)] = patient_id
    cursor = await conn.execute(
        "SELECT patient_id, matched_patient_id FROM mpi_candidate WHERE status = 'open'"
    )
    review = [(str(a), str(b)) for a, b in await cursor.fetchall()]
    return clusters, by_ipp, review


def _body(value: Any) -> dict[str, Any]:
    """A stored body (the pool may hand JSONB over as text)."""
    return json.loads(value) if isinstance(value, str | bytes) else dict(value)
