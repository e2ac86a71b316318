"""The SQL of care relationships (``care_access``, migration 0008)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

import psycopg
from psycopg.rows import dict_row

from maillage.security.care import Grant

BREAK_THE_GLASS = "break-the-glass"


@dataclass(frozen=True, slots=True)
class GlassAccess:
    id: int
    patient_id: str
    principal: str
    until: dt.datetime | None
    reason: str | None
    created_at: dt.datetime


async def replace_grants(
    conn: psycopg.AsyncConnection, source_type: str, source_id: str, grants: Sequence[Grant]
) -> None:
    """The grants of one source resource, replacing what it granted before (one statement:
    the delete sees the rows as they were before it, not those it inserts)."""
    await conn.execute(
        "WITH gone AS (DELETE FROM care_access WHERE source_type = %(type)s"
        " AND source_id = %(id)s)"
        " INSERT INTO care_access (patient_id, principal, until, source_type, source_id)"
        " SELECT g.patient, g.principal, g.until, %(type)s, %(id)s"
        " FROM unnest(%(patients)s::text[], %(principals)s::text[], %(until)s::timestamptz[])"
        " AS g(patient, principal, until)",
        {
            "type": source_type,
            "id": source_id,
            "patients": [g.patient_id for g in grants],
            "principals": [g.principal for g in grants],
            "until": [g.until for g in grants],
        },
    )


async def open_glass(
    conn: psycopg.AsyncConnection, patient_id: str, principal: str, hours: float, reason: str
) -> GlassAccess:
    async with conn.cursor(row_factory=dict_row) as cursor:
        await cursor.execute(
            "INSERT INTO care_access (patient_id, principal, until, source_type, source_id,"
            " reason) VALUES (%s, %s, now() + make_interval(secs => %s), %s, %s, %s)"
            " RETURNING id, patient_id, principal, until, reason, created_at",
            (patient_id, principal, hours * 3600, BREAK_THE_GLASS, principal, reason),
        )
        row = await cursor.fetchone()
    assert row is not None
    return GlassAccess(**row)


async def glass_accesses(
    conn: psycopg.AsyncConnection, since: dt.datetime | None, limit: int
) -> list[GlassAccess]:
    """Break-the-glass accesses, newest first, for the security team's review."""
    async with conn.cursor(row_factory=dict_row) as cursor:
        await cursor.execute(
            "SELECT id, patient_id, principal, until, reason, created_at FROM care_access"
            " WHERE source_type = %s AND (%s::timestamptz IS NULL OR created_at >= %s)"
            " ORDER BY created_at DESC LIMIT %s",
            (BREAK_THE_GLASS, since, since, limit),
        )
        return [GlassAccess(**row) for row in await cursor.fetchall()]


async def replace_objection(
    conn: psycopg.AsyncConnection, consent_id: str, patient_id: str | None
) -> None:
    """The objection a Consent records (None: it records none, or no longer)."""
    await conn.execute("DELETE FROM care_objection WHERE consent_id = %s", (consent_id,))
    if patient_id is not None:
        await conn.execute(
            "INSERT INTO care_objection (consent_id, patient_id) VALUES (%s, %s)",
            (consent_id, patient_id),
        )
