"""The bulk dedupe's SQL (``loading/dedupe.py``), on a blocking connection: reading the
filed index and the pending identities, and writing a chunk's index rows by COPY.

Each function takes the caller's connection; a chunk's writes share one transaction.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import psycopg

from maillage.mpi.batch_store import SOURCES, UNFILED
from maillage.mpi.candidates import UPSERT_REVIEW_PAIR
from maillage.mpi.store import BULK_LOCK_KEY, SourceRow, json_value


@dataclass(frozen=True, slots=True)
class FiledRow:
    """A filed source identity as the matcher needs it."""

    patient_id: str
    territorial_id: str
    traits: dict[str, Any]
    blocking: list[str]
    active: bool


# jsonb is read as text and parsed by orjson (``json_value``): psycopg's default loader,
# the standard library's json, took a tenth of the run.


def take_bulk_lock(conn: psycopg.Connection) -> None:
    """The index's exclusive lock until the transaction ends: every online write of a
    source identity takes it shared (``store.lock_keys``), so none runs meanwhile."""
    conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (BULK_LOCK_KEY,))


def clock(conn: psycopg.Connection) -> dt.datetime:
    row = conn.execute("SELECT clock_timestamp()").fetchone()
    assert row is not None
    return row[0]


def active_count(conn: psycopg.Connection) -> int:
    row = conn.execute("SELECT count(*) FROM mpi_source WHERE active").fetchone()
    return int(row[0]) if row else 0


def filed_since(conn: psycopg.Connection, since: dt.datetime | None) -> Iterator[FiledRow]:
    """Filed source identities written at or after ``since`` (all of them for None),
    streamed by a server-side cursor."""
    sql = "SELECT patient_id, territorial_id, traits::text, blocking, active FROM mpi_source"
    params: tuple[Any, ...] = ()
    if since is not None:
        sql += " WHERE updated_at >= %s"
        params = (since,)
    with conn.cursor(name="bulk_dedupe_filed") as cursor:
        cursor.itersize = 10_000
        cursor.execute(sql, params)
        for patient_id, territorial_id, traits, blocking, active in cursor:
            yield FiledRow(
                str(patient_id), str(territorial_id), json_value(traits), list(blocking), active
            )


def pending(conn: psycopg.Connection) -> int:
    row = conn.execute("SELECT count(*) " + SOURCES + UNFILED).fetchone()
    return int(row[0]) if row else 0


def pending_ids(conn: psycopg.Connection) -> list[str]:
    """The unfiled source identities, by id."""
    rows = conn.execute("SELECT r.id " + SOURCES + UNFILED + " ORDER BY r.id").fetchall()
    return [str(row[0]) for row in rows]


def pending_bodies(
    conn: psycopg.Connection, ids: Sequence[str]
) -> list[tuple[str, dict[str, Any]]]:
    """The bodies of those of ``ids`` still unfiled, by id (each looked up by its key: a
    filter on the array would scan every Patient for each chunk), locked until the chunk
    commits: a Patient deleted or changed meanwhile would otherwise be overwritten by
    its ``refer`` version (an unfiled Patient's delete takes no index lock)."""
    rows = conn.execute(
        "SELECT r.id, r.content::text FROM unnest(%s::text[]) AS k(id)"
        " JOIN resource r ON r.resource_type = 'Patient' AND r.id = k.id"
        " WHERE NOT r.deleted"
        " AND NOT EXISTS (SELECT 1 FROM mpi_territorial t WHERE t.territorial_id = r.id)"
        " AND NOT EXISTS (SELECT 1 FROM mpi_source s WHERE s.patient_id = r.id)"
        " ORDER BY r.id FOR UPDATE OF r",
        (list(ids),),
    ).fetchall()
    return [(str(pid), json_value(body)) for pid, body in rows]


def never_of(conn: psycopg.Connection, patient_ids: Sequence[str]) -> dict[str, frozenset[str]]:
    """The territorial identities each of ``patient_ids`` must never join (people said so)."""
    found: dict[str, set[str]] = {}
    for patient_id, territorial_id in conn.execute(
        "SELECT patient_id, territorial_id FROM mpi_candidate"
        " WHERE status = 'never' AND patient_id = ANY(%s)",
        (list(patient_ids),),
    ):
        found.setdefault(str(patient_id), set()).add(str(territorial_id))
    return {patient_id: frozenset(tids) for patient_id, tids in found.items()}


def member_bodies(
    conn: psycopg.Connection, territorial_ids: Sequence[str]
) -> dict[str, list[dict[str, Any]]]:
    """The stored Patients of the active sources of each territorial identity."""
    found: dict[str, list[dict[str, Any]]] = {}
    for territorial_id, body in conn.execute(
        "SELECT s.territorial_id, r.content::text FROM mpi_source s JOIN resource r"
        " ON r.resource_type = 'Patient' AND r.id = s.patient_id AND NOT r.deleted"
        " WHERE s.territorial_id = ANY(%s) AND s.active ORDER BY s.patient_id",
        (list(territorial_ids),),
    ):
        found.setdefault(str(territorial_id), []).append(json_value(body))
    return found


@dataclass(frozen=True, slots=True)
class EventRow:
    action: str
    patient_id: str
    territorial_id: str
    detail: dict[str, Any]


@dataclass
class IndexRows:
    """A chunk's writes to the ``mpi_*`` tables."""

    new_territorial: dict[str, dict[str, str]]  # id → trait sources
    touched_territorial: dict[str, dict[str, str]]  # existing ids → trait sources
    sources: list[SourceRow]
    reviews: list[tuple[Any, ...]]  # ``candidates.review_pair``
    events: list[EventRow]


def write_index(conn: psycopg.Connection, rows: IndexRows, *, who: str) -> None:
    with conn.cursor() as cursor:
        if rows.new_territorial:
            sql = "COPY mpi_territorial (territorial_id, trait_sources) FROM STDIN"
            with cursor.copy(sql) as c:
                for territorial_id, sources in rows.new_territorial.items():
                    c.write_row((territorial_id, orjson.dumps(sources).decode()))
        if rows.touched_territorial:
            cursor.execute(
                "UPDATE mpi_territorial t SET active = true, trait_sources = v.s::jsonb"
                " FROM unnest(%s::text[], %s::text[]) AS v(id, s) WHERE t.territorial_id = v.id",
                (
                    list(rows.touched_territorial),
                    [orjson.dumps(s).decode() for s in rows.touched_territorial.values()],
                ),
            )
        with cursor.copy(
            "COPY mpi_source (patient_id, territorial_id, ipp_system, ipp, traits, blocking,"
            " reliability, link_kind, score, matched_patient_id, explanation, active) FROM STDIN"
        ) as c:
            for s in rows.sources:
                c.write_row(
                    (
                        s.patient_id, s.territorial_id, s.ipp_system, s.ipp,
                        orjson.dumps(s.traits).decode(), s.blocking, s.reliability,
                        s.link_kind, s.score, s.matched_patient_id,
                        orjson.dumps(s.explanation).decode() if s.explanation else None,
                        s.active,
                    )
                )  # fmt: skip
        for review in rows.reviews:  # few: the same upsert as the online queue's
            cursor.execute(UPSERT_REVIEW_PAIR, review)
        with cursor.copy(
            "COPY mpi_event (who, action, patient_id, territorial_id, detail) FROM STDIN"
        ) as c:
            for event in rows.events:
                c.write_row(
                    (
                        who, event.action, event.patient_id, event.territorial_id,
                        orjson.dumps(event.detail).decode(),
                    )
                )  # fmt: skip
