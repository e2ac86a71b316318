"""The patient index's SQL (migration 0005): every statement on the ``mpi_*`` tables.

Each function takes the caller's connection, so that the index changes in the same
transaction as the Patient write (or the review decision) that caused them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb


@dataclass(frozen=True, slots=True)
class SourceRow:
    patient_id: str
    territorial_id: str
    ipp_system: str | None
    ipp: str | None
    traits: dict[str, Any]
    blocking: list[str]
    reliability: str | None
    link_kind: str
    score: float | None
    matched_patient_id: str | None
    explanation: dict[str, Any] | None
    active: bool
    updated_at: datetime | None = None


def json_value(value: Any) -> Any:
    """A jsonb column's value (the hub's connections read jsonb as text: bodies are
    served as stored)."""
    return orjson.loads(value) if isinstance(value, str | bytes) else value


def _source(row: dict[str, Any]) -> SourceRow:
    return SourceRow(
        **{
            **row,
            "traits": json_value(row["traits"]),
            "explanation": json_value(row["explanation"]),
        }
    )


_SOURCE_COLUMNS = (
    "patient_id, territorial_id, ipp_system, ipp, traits, blocking, reliability, link_kind,"
    " score, matched_patient_id, explanation, active, updated_at"
)


# The bulk dedupe's lock (``loading/dedupe.py``): taken shared by every online filing,
# exclusive by each chunk of the bulk dedupe, whose matcher works from memory.
BULK_LOCK_KEY = "mpi-bulk-dedupe"


async def lock_keys(conn: psycopg.AsyncConnection, keys: Iterable[str]) -> None:
    """Transaction locks on blocking keys, taken in one order (no deadlock): two writes
    that could match each other share a key, so they run one after the other. The bulk
    dedupe's lock is taken shared with them (the bulk takes no key lock: no cycle)."""
    await conn.execute(
        "SELECT count(pg_advisory_xact_lock(h)) FROM"
        " (SELECT DISTINCT hashtextextended('mpi:' || k, 0) AS h"
        "  FROM unnest(%s::text[]) AS k ORDER BY 1 OFFSET 0) AS ordered"
        " WHERE pg_advisory_xact_lock_shared(hashtextextended(%s, 0)) IS NOT NULL",
        (sorted(set(keys)), BULK_LOCK_KEY),
    )


@dataclass(frozen=True, slots=True)
class WriteState:
    """What the index knows of a Patient about to be written, read in one statement."""

    is_territorial: bool
    source: SourceRow | None
    never: frozenset[str]


async def write_state(conn: psycopg.AsyncConnection, patient_id: str) -> WriteState:
    cursor = await conn.execute(
        "SELECT EXISTS (SELECT 1 FROM mpi_territorial WHERE territorial_id = %(id)s),"
        " (SELECT to_jsonb(s) FROM mpi_source s WHERE s.patient_id = %(id)s),"
        " ARRAY(SELECT territorial_id FROM mpi_candidate"
        "       WHERE patient_id = %(id)s AND status = 'never')",
        {"id": patient_id},
    )
    row = await cursor.fetchone()
    assert row is not None
    source = json_value(row[1]) if row[1] is not None else None
    return WriteState(
        bool(row[0]),
        _source(source) if source is not None else None,
        frozenset(str(t) for t in row[2] or ()),
    )


async def get_source(conn: psycopg.AsyncConnection, patient_id: str) -> SourceRow | None:
    rows = await get_sources(conn, [patient_id])
    return rows[0] if rows else None


async def get_sources(conn: psycopg.AsyncConnection, patient_ids: Sequence[str]) -> list[SourceRow]:
    async with conn.cursor(row_factory=dict_row) as cursor:
        await cursor.execute(
            f"SELECT {_SOURCE_COLUMNS} FROM mpi_source WHERE patient_id = ANY(%s)"
            " ORDER BY patient_id",
            (list(patient_ids),),
        )
        return [_source(row) for row in await cursor.fetchall()]


async def candidates(
    conn: psycopg.AsyncConnection, keys: Sequence[str], exclude: str, limit: int
) -> list[tuple[str, str, dict[str, Any]]]:
    """Active sources sharing a blocking key: (patient id, territorial id, traits)."""
    cursor = await conn.execute(
        "SELECT patient_id, territorial_id, traits FROM mpi_source"
        " WHERE active AND blocking && %s::text[] AND patient_id <> %s LIMIT %s",
        (list(keys), exclude, limit),
    )
    return [(str(row[0]), str(row[1]), json_value(row[2])) for row in await cursor.fetchall()]


async def members(conn: psycopg.AsyncConnection, territorial_id: str) -> list[str]:
    cursor = await conn.execute(
        "SELECT patient_id FROM mpi_source WHERE territorial_id = %s AND active"
        " ORDER BY patient_id",
        (territorial_id,),
    )
    return [str(row[0]) for row in await cursor.fetchall()]


async def member_patients(
    conn: psycopg.AsyncConnection, territorial_id: str, *, exclude: str | None = None
) -> list[dict[str, Any]]:
    """The stored Patients of a territorial identity's active sources, in one statement.

    Reads the FHIR store's ``resource`` table directly (as the transaction sees it): the
    golden record gathers every source whatever the caller may see, and a territorial
    identity's sources are read on each of its writes.
    """
    cursor = await conn.execute(
        "SELECT r.content FROM mpi_source s JOIN resource r"
        " ON r.resource_type = 'Patient' AND r.id = s.patient_id AND NOT r.deleted"
        " WHERE s.territorial_id = %s AND s.active AND s.patient_id IS DISTINCT FROM %s"
        " ORDER BY s.patient_id",
        (territorial_id, exclude),
    )
    return [json_value(row[0]) for row in await cursor.fetchall()]


async def sources_of(conn: psycopg.AsyncConnection, territorial_id: str) -> list[SourceRow]:
    async with conn.cursor(row_factory=dict_row) as cursor:
        await cursor.execute(
            f"SELECT {_SOURCE_COLUMNS} FROM mpi_source WHERE territorial_id = %s AND active"
            " ORDER BY patient_id",
            (territorial_id,),
        )
        return [_source(row) for row in await cursor.fetchall()]


async def find_by_ipp(conn: psycopg.AsyncConnection, ipp_system: str, ipp: str) -> SourceRow | None:
    async with conn.cursor(row_factory=dict_row) as cursor:
        await cursor.execute(
            f"SELECT {_SOURCE_COLUMNS} FROM mpi_source WHERE ipp_system = %s AND ipp = %s"
            " ORDER BY active DESC, patient_id LIMIT 1",
            (ipp_system, ipp),
        )
        row = await cursor.fetchone()
        return _source(row) if row else None


async def never_for(conn: psycopg.AsyncConnection, patient_id: str) -> frozenset[str]:
    cursor = await conn.execute(
        "SELECT territorial_id FROM mpi_candidate WHERE patient_id = %s AND status = 'never'",
        (patient_id,),
    )
    return frozenset(str(row[0]) for row in await cursor.fetchall())


async def upsert_source(conn: psycopg.AsyncConnection, row: SourceRow) -> None:
    # updated_at is the statement's time, not the transaction's: the bulk dedupe re-reads
    # what was written after its last chunk (a transaction may start before it and write
    # after it, once it has the lock ``lock_keys`` takes).
    await conn.execute(
        "INSERT INTO mpi_source (patient_id, territorial_id, ipp_system, ipp, traits, blocking,"
        " reliability, link_kind, score, matched_patient_id, explanation, active, updated_at)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, clock_timestamp())"
        " ON CONFLICT (patient_id) DO UPDATE SET territorial_id = EXCLUDED.territorial_id,"
        " ipp_system = EXCLUDED.ipp_system, ipp = EXCLUDED.ipp, traits = EXCLUDED.traits,"
        " blocking = EXCLUDED.blocking, reliability = EXCLUDED.reliability,"
        " link_kind = EXCLUDED.link_kind, score = EXCLUDED.score,"
        " matched_patient_id = EXCLUDED.matched_patient_id,"
        " explanation = EXCLUDED.explanation, active = EXCLUDED.active,"
        " updated_at = clock_timestamp()",
        (
            row.patient_id,
            row.territorial_id,
            row.ipp_system,
            row.ipp,
            Jsonb(row.traits),
            row.blocking,
            row.reliability,
            row.link_kind,
            row.score,
            row.matched_patient_id,
            Jsonb(row.explanation) if row.explanation is not None else None,
            row.active,
        ),
    )


async def delete_source(conn: psycopg.AsyncConnection, patient_id: str) -> None:
    await conn.execute("DELETE FROM mpi_source WHERE patient_id = %s", (patient_id,))


async def ensure_territorial(conn: psycopg.AsyncConnection, territorial_id: str) -> None:
    await conn.execute(
        "INSERT INTO mpi_territorial (territorial_id) VALUES (%s)"
        " ON CONFLICT (territorial_id) DO UPDATE SET active = true",
        (territorial_id,),
    )


async def is_territorial(conn: psycopg.AsyncConnection, territorial_id: str) -> bool:
    cursor = await conn.execute(
        "SELECT 1 FROM mpi_territorial WHERE territorial_id = %s", (territorial_id,)
    )
    return await cursor.fetchone() is not None


async def set_territorial_state(
    conn: psycopg.AsyncConnection,
    territorial_id: str,
    *,
    active: bool,
    trait_sources: dict[str, str],
) -> None:
    await conn.execute(
        "UPDATE mpi_territorial SET active = %s, trait_sources = %s WHERE territorial_id = %s",
        (active, Jsonb(trait_sources), territorial_id),
    )


async def trait_sources(conn: psycopg.AsyncConnection, territorial_id: str) -> dict[str, str]:
    cursor = await conn.execute(
        "SELECT trait_sources FROM mpi_territorial WHERE territorial_id = %s", (territorial_id,)
    )
    row = await cursor.fetchone()
    return dict(json_value(row[0])) if row else {}


async def add_event(
    conn: psycopg.AsyncConnection,
    *,
    who: str,
    action: str,
    patient_id: str | None,
    territorial_id: str | None,
    reason: str | None = None,
    detail: dict[str, Any] | None = None,
) -> None:
    await conn.execute(
        "INSERT INTO mpi_event (who, action, patient_id, territorial_id, reason, detail)"
        " VALUES (%s, %s, %s, %s, %s, %s)",
        (who, action, patient_id, territorial_id, reason, Jsonb(detail or {})),
    )


@dataclass(frozen=True, slots=True)
class Event:
    id: int
    at: datetime
    who: str
    action: str
    patient_id: str | None
    territorial_id: str | None
    reason: str | None
    detail: dict[str, Any]


async def events(
    conn: psycopg.AsyncConnection,
    *,
    patient_id: str | None,
    territorial_id: str | None,
    limit: int,
) -> list[Event]:
    """The history of a source or territorial identity, oldest first."""
    async with conn.cursor(row_factory=dict_row) as cursor:
        await cursor.execute(
            "SELECT id, at, who, action, patient_id, territorial_id, reason, detail"
            " FROM mpi_event WHERE (%s::text IS NULL OR patient_id = %s)"
            " AND (%s::text IS NULL OR territorial_id = %s) ORDER BY id LIMIT %s",
            (patient_id, patient_id, territorial_id, territorial_id, limit),
        )
        rows = await cursor.fetchall()
    return [Event(**{**row, "detail": json_value(row["detail"])}) for row in rows]


# -- lookups (PIXm, $match: ``mpi/lookup.py``) ------------------------------------------


async def knows_ipp_system(conn: psycopg.AsyncConnection, ipp_system: str) -> bool:
    """Whether some source identity carries an IPP of that system (a patient identifier
    domain the index has seen)."""
    cursor = await conn.execute(
        "SELECT EXISTS (SELECT 1 FROM mpi_source WHERE ipp_system = %s)", (ipp_system,)
    )
    row = await cursor.fetchone()
    return bool(row and row[0])


async def sources_with_ins(conn: psycopg.AsyncConnection, ins: str) -> list[SourceRow]:
    """Active sources filed under an INS (its blocking key ``ins:<matricule>``), whose
    prepared traits carry that INS as qualified."""
    async with conn.cursor(row_factory=dict_row) as cursor:
        await cursor.execute(
            f"SELECT {_SOURCE_COLUMNS} FROM mpi_source"
            " WHERE active AND blocking && %s::text[] ORDER BY patient_id",
            ([f"ins:{ins}"],),
        )
        rows = [_source(row) for row in await cursor.fetchall()]
    return [r for r in rows if r.traits.get("ins") == ins and r.traits.get("ins_qualified")]


async def territorial_active(conn: psycopg.AsyncConnection, territorial_id: str) -> bool | None:
    """True/False for a known territorial identity (active or retired), None if unknown."""
    cursor = await conn.execute(
        "SELECT active FROM mpi_territorial WHERE territorial_id = %s", (territorial_id,)
    )
    row = await cursor.fetchone()
    return bool(row[0]) if row else None
