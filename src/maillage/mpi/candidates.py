"""The review queue's SQL: pairs waiting for the identitovigilance cell, and decisions."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from maillage.identity.linking import Scored
from maillage.mpi.store import json_value


@dataclass(frozen=True, slots=True)
class CandidateRow:
    id: int
    patient_id: str
    territorial_id: str
    matched_patient_id: str
    score: float
    probability: float
    explanation: dict[str, Any]
    flags: list[str]
    status: str
    created_at: datetime
    decided_by: str | None
    decided_at: datetime | None
    reason: str | None


def _candidate(row: dict[str, Any]) -> CandidateRow:
    return CandidateRow(**{**row, "explanation": json_value(row["explanation"])})


_COLUMNS = (
    "id, patient_id, territorial_id, matched_patient_id, score, probability, explanation,"
    " flags, status, created_at, decided_by, decided_at, reason"
)


# A pair to review, opened or refreshed (a closed one reopens; a decided one stays
# decided): patient, territorial identity, matched patient, score, probability,
# explanation, flags.
UPSERT_REVIEW_PAIR = (
    "INSERT INTO mpi_candidate (patient_id, territorial_id, matched_patient_id, score,"
    " probability, explanation, flags) VALUES (%s, %s, %s, %s, %s, %s, %s)"
    " ON CONFLICT (patient_id, territorial_id) DO UPDATE SET"
    " matched_patient_id = EXCLUDED.matched_patient_id, score = EXCLUDED.score,"
    " probability = EXCLUDED.probability, explanation = EXCLUDED.explanation,"
    " flags = EXCLUDED.flags,"
    " status = CASE WHEN mpi_candidate.status = 'closed' THEN 'open'"
    "          ELSE mpi_candidate.status END"
)


def review_pair(patient_id: str, scored: Scored) -> tuple[Any, ...]:
    """``UPSERT_REVIEW_PAIR``'s parameters for one pair."""
    score = scored.score
    return (
        patient_id,
        scored.territorial_id,
        scored.patient_id,
        score.match_weight,
        score.probability,
        Jsonb(score.as_dict()),
        list(score.flags),
    )


async def file_review(
    conn: psycopg.AsyncConnection, patient_id: str, review: Sequence[Scored]
) -> None:
    """Open (or refresh) a candidate per pair to review; close the identity's other open
    candidates (no longer relevant). A decided pair (linked / never) is left as decided.
    Nothing is read back, so that it can run in a pipeline with the index's other writes."""
    territorials = [scored.territorial_id for scored in review]
    for scored in review:
        await conn.execute(UPSERT_REVIEW_PAIR, review_pair(patient_id, scored))
    await conn.execute(
        "UPDATE mpi_candidate SET status = 'closed' WHERE patient_id = %s AND status = 'open'"
        " AND NOT (territorial_id = ANY(%s))",
        (patient_id, territorials),
    )


async def close_for(conn: psycopg.AsyncConnection, patient_id: str) -> None:
    """Close every open candidate of an identity (removed or merged)."""
    await conn.execute(
        "UPDATE mpi_candidate SET status = 'closed' WHERE status = 'open'"
        " AND (patient_id = %s OR matched_patient_id = %s)",
        (patient_id, patient_id),
    )


async def get(
    conn: psycopg.AsyncConnection, candidate_id: int, *, lock: bool = False
) -> CandidateRow | None:
    suffix = " FOR UPDATE" if lock else ""
    async with conn.cursor(row_factory=dict_row) as cursor:
        await cursor.execute(
            f"SELECT {_COLUMNS} FROM mpi_candidate WHERE id = %s{suffix}", (candidate_id,)
        )
        row = await cursor.fetchone()
        return _candidate(row) if row else None


async def listing(
    conn: psycopg.AsyncConnection,
    *,
    status: str | None,
    flag: str | None,
    min_probability: float | None,
    patient_id: str | None,
    limit: int,
    after: int | None,
) -> list[CandidateRow]:
    """Candidates, oldest first (keyset paging on id)."""
    conditions = ["TRUE"]
    params: list[Any] = []
    if status:
        conditions.append("status = %s")
        params.append(status)
    if flag:
        conditions.append("%s = ANY(flags)")
        params.append(flag)
    if min_probability is not None:
        conditions.append("probability >= %s")
        params.append(min_probability)
    if patient_id:
        conditions.append("(patient_id = %s OR matched_patient_id = %s)")
        params.extend([patient_id, patient_id])
    if after is not None:
        conditions.append("id > %s")
        params.append(after)
    params.append(limit)
    async with conn.cursor(row_factory=dict_row) as cursor:
        await cursor.execute(
            f"SELECT {_COLUMNS} FROM mpi_candidate WHERE {' AND '.join(conditions)}"
            " ORDER BY id LIMIT %s",
            params,
        )
        return [_candidate(row) for row in await cursor.fetchall()]


async def decide(
    conn: psycopg.AsyncConnection, candidate_id: int, status: str, who: str, reason: str
) -> None:
    await conn.execute(
        "UPDATE mpi_candidate SET status = %s, decided_by = %s, decided_at = now(),"
        " reason = %s WHERE id = %s",
        (status, who, reason, candidate_id),
    )


async def mark_never(
    conn: psycopg.AsyncConnection,
    patient_id: str,
    territorial_id: str,
    matched_patient_id: str,
    who: str,
    reason: str,
) -> None:
    """Record a never-link between a source and a territorial identity (also when no
    candidate was open for the pair)."""
    await conn.execute(
        "INSERT INTO mpi_candidate (patient_id, territorial_id, matched_patient_id, score,"
        " probability, explanation, status, decided_by, decided_at, reason)"
        " VALUES (%s, %s, %s, 0, 0, '{}'::jsonb, 'never', %s, now(), %s)"
        " ON CONFLICT (patient_id, territorial_id) DO UPDATE SET status = 'never',"
        " decided_by = EXCLUDED.decided_by, decided_at = now(), reason = EXCLUDED.reason",
        (patient_id, territorial_id, matched_patient_id, who, reason),
    )
