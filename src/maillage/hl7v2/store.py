"""The message store: the ``hl7_message`` table (migration 0004).

Every write the ACK depends on is one autocommit INSERT: when it returns, the row is
committed, and only then may the gateway answer AA. Accepted messages that arrive while
another is being stored share the next INSERT (``group_commit.py``). The processor's claim takes the
oldest waiting message of each patient (``DISTINCT ON`` the patient key) and locks it
with ``FOR UPDATE SKIP LOCKED``, so that two workers never hold two messages of one
patient and a patient's next message waits until the previous one is done.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import class_row

from maillage.storage import Database

_INSERT = (
    "INSERT INTO hl7_message (site, sender, control_id, idempotency_key, message_type,"
    " trigger_event, patient_key, charset, raw, status, error)"
    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
    " ON CONFLICT (idempotency_key) DO NOTHING RETURNING id"
)
# Several accepted messages in one statement (one commit); a key repeated within the
# group is left out by the caller (the first one is stored, the others are duplicates).
_INSERT_MANY = (
    "INSERT INTO hl7_message (site, sender, control_id, idempotency_key, message_type,"
    " trigger_event, patient_key, charset, raw, status, error)"
    " SELECT * FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[], %s::text[],"
    " %s::text[], %s::text[], %s::text[], %s::bytea[], %s::text[], %s::text[])"
    " ON CONFLICT (idempotency_key) DO NOTHING RETURNING id, idempotency_key"
)
_SUMMARY_COLUMNS = (
    "id, received_at, site, control_id, message_type, trigger_event, status, attempts,"
    " error, note, processed_at"
)


@dataclass(frozen=True, slots=True)
class NewMessage:
    raw: bytes
    status: str
    site: str | None = None
    sender: str | None = None
    control_id: str | None = None
    idempotency_key: str | None = None
    message_type: str | None = None
    trigger_event: str | None = None
    patient_key: str | None = None
    charset: str | None = None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class MessageSummary:
    """A row as the CLI lists it: ids, types, status, error; no patient data."""

    id: int
    received_at: datetime
    site: str | None
    control_id: str | None
    message_type: str | None
    trigger_event: str | None
    status: str
    attempts: int
    error: str | None
    note: str | None
    processed_at: datetime | None


@dataclass(frozen=True, slots=True)
class ClaimedMessage:
    id: int
    site: str | None
    message_type: str | None
    trigger_event: str | None
    charset: str | None
    raw: bytes
    attempts: int


@dataclass(frozen=True, slots=True)
class SiteCounts:
    site: str
    by_status: dict[str, int]
    oldest_waiting_s: float


class MessageStore:
    def __init__(self, database: Database, *, timeout_s: float = 5.0) -> None:
        self.database = database
        # How long a receipt may wait for a pooled connection before answering AR.
        self.timeout_s = timeout_s

    async def insert(self, message: NewMessage) -> int | None:
        """Commit one message; its id, or None when its idempotency key is already stored."""
        async with self.database.pool.connection(timeout=self.timeout_s) as conn:
            cursor = await conn.execute(_INSERT, _columns(message))
            row = await cursor.fetchone()
        return int(row[0]) if row else None

    async def insert_many(self, messages: list[NewMessage]) -> list[int | None]:
        """Commit accepted messages (each with an idempotency key) in one statement; each
        one's id, or None when its key is already stored (or repeated before it here)."""
        keys = [_text(message.idempotency_key) or "" for message in messages]
        first: dict[str, int] = {}
        for position, key in enumerate(keys):
            first.setdefault(key, position)
        stored = [messages[position] for position in sorted(first.values())]
        columns = list(zip(*(_columns(message) for message in stored), strict=True))
        async with self.database.pool.connection(timeout=self.timeout_s) as conn:
            cursor = await conn.execute(_INSERT_MANY, [list(column) for column in columns])
            ids = {str(key): int(rid) for rid, key in await cursor.fetchall()}
        return [
            ids.get(key) if first[key] == position else None for position, key in enumerate(keys)
        ]

    async def list_messages(
        self, *, site: str | None = None, status: str | None = None, limit: int = 50
    ) -> list[MessageSummary]:
        conditions, params = _filters(site=site, status=status)
        async with self.database.connection() as conn:
            cursor = conn.cursor(row_factory=class_row(MessageSummary))
            await cursor.execute(
                f"SELECT {_SUMMARY_COLUMNS} FROM hl7_message {conditions}"
                " ORDER BY id DESC LIMIT %s",
                [*params, limit],
            )
            return await cursor.fetchall()

    async def get(self, message_id: int) -> MessageSummary | None:
        async with self.database.connection() as conn:
            cursor = conn.cursor(row_factory=class_row(MessageSummary))
            await cursor.execute(
                f"SELECT {_SUMMARY_COLUMNS} FROM hl7_message WHERE id = %s", (message_id,)
            )
            return await cursor.fetchone()

    async def raw_of(self, message_id: int) -> bytes | None:
        async with self.database.connection() as conn:
            cursor = await conn.execute("SELECT raw FROM hl7_message WHERE id = %s", (message_id,))
            row = await cursor.fetchone()
        return bytes(row[0]) if row else None

    # -- processing -----------------------------------------------------------------------
    async def claim(self, conn: psycopg.AsyncConnection, limit: int) -> list[ClaimedMessage]:
        """Inside the caller's transaction: lock up to ``limit`` due messages, each the oldest
        waiting one of its patient. A head locked by another worker is skipped, and its
        patient's later messages are not heads (the head is still ``received``), so they
        are not taken either."""
        cursor = conn.cursor(row_factory=class_row(ClaimedMessage))
        # Oldest first, stopping after ``limit``: the cost follows the batch, not the
        # backlog. A message without a patient key orders with nothing.
        await cursor.execute(
            "SELECT id, site, message_type, trigger_event, charset, raw, attempts"
            " FROM hl7_message m WHERE status = 'received' AND next_attempt_at <= now()"
            " AND (patient_key IS NULL OR NOT EXISTS ("
            "  SELECT 1 FROM hl7_message older WHERE older.status = 'received'"
            "  AND older.patient_key = m.patient_key AND older.id < m.id))"
            " ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED",
            (limit,),
        )
        return await cursor.fetchall()

    async def finish(
        self, conn: psycopg.AsyncConnection, outcomes: list[tuple[int, str, str | None]]
    ) -> None:
        """The batch's (id, status, note) in one statement, in the batch's transaction."""
        if not outcomes:
            return
        ids, statuses, notes = zip(*outcomes, strict=True)
        await conn.execute(
            "UPDATE hl7_message m SET status = d.status, note = d.note, error = NULL,"
            " attempts = m.attempts + 1, processed_at = now(), updated_at = now()"
            " FROM unnest(%s::bigint[], %s::text[], %s::text[]) AS d(id, status, note)"
            " WHERE m.id = d.id",
            (list(ids), list(statuses), list(notes)),
        )

    async def fail(
        self,
        conn: psycopg.AsyncConnection,
        message_id: int,
        error: str,
        *,
        dead: bool,
        retry_in_s: float,
    ) -> None:
        await conn.execute(
            "UPDATE hl7_message SET attempts = attempts + 1, error = %s, updated_at = now(),"
            " status = CASE WHEN %s THEN 'dead' ELSE status END,"
            " next_attempt_at = now() + make_interval(secs => %s) WHERE id = %s",
            (error, dead, retry_in_s, message_id),
        )

    async def has_due(self) -> bool:
        async with self.database.connection() as conn:
            cursor = await conn.execute(
                "SELECT EXISTS (SELECT 1 FROM hl7_message WHERE status = 'received')"
            )
            row = await cursor.fetchone()
        return bool(row and row[0])

    # -- replay ---------------------------------------------------------------------------
    async def replay_candidates(
        self, *, message_id: int | None, site: str | None, statuses: tuple[str, ...]
    ) -> list[tuple[int, bool]]:
        """(id, was accepted) of the messages a replay would take."""
        params: list[Any]
        if message_id is not None:
            where, params = "WHERE id = %s AND status <> 'received'", [message_id]
        else:
            conditions, params = _filters(site=site, status=None)
            joiner = " AND " if conditions else "WHERE "
            where = f"{conditions}{joiner}status = ANY(%s)"
            params = [*params, list(statuses)]
        async with self.database.connection() as conn:
            cursor = await conn.execute(
                f"SELECT id, idempotency_key IS NOT NULL FROM hl7_message {where} ORDER BY id",
                params,
            )
            return [(int(row[0]), bool(row[1])) for row in await cursor.fetchall()]

    async def requeue(self, ids: list[int]) -> int:
        """Back to ``received``, attempts from zero, due now."""
        async with self.database.connection() as conn:
            cursor = await conn.execute(
                "UPDATE hl7_message SET status = 'received', attempts = 0, error = NULL,"
                " note = NULL, next_attempt_at = now(), processed_at = NULL, updated_at = now()"
                " WHERE id = ANY(%s) AND status <> 'received'",
                (ids,),
            )
            return cursor.rowcount

    async def reaccept(self, message_id: int, fields: dict[str, Any]) -> bool:
        """A message rejected at receipt, accepted on replay: its keys filled, requeued.
        False when its idempotency key was stored meanwhile (the sender resent it fixed)."""
        assignments = ", ".join(f"{name} = %s" for name in fields)
        try:
            async with self.database.connection() as conn:
                await conn.execute(
                    f"UPDATE hl7_message SET {assignments}, status = 'received', attempts = 0,"
                    " error = NULL, note = NULL, next_attempt_at = now(), updated_at = now()"
                    " WHERE id = %s AND status = 'error'",
                    [*fields.values(), message_id],
                )
        except psycopg.errors.UniqueViolation:
            return False
        return True

    async def mark(
        self, message_id: int, status: str, *, error: str | None, note: str | None
    ) -> None:
        async with self.database.connection() as conn:
            await conn.execute(
                "UPDATE hl7_message SET status = %s, error = %s, note = %s, updated_at = now()"
                " WHERE id = %s",
                (status, error, note, message_id),
            )

    # -- counters -------------------------------------------------------------------------
    async def counts(self) -> list[SiteCounts]:
        async with self.database.connection() as conn:
            cursor = await conn.execute(
                # per (site, status): the oldest one's age is the lag of the waiting group
                "SELECT coalesce(site, ''), status, count(*),"
                " extract(epoch FROM now() - min(received_at))"
                " FROM hl7_message GROUP BY 1, 2"
            )
            rows = await cursor.fetchall()
        sites: dict[str, SiteCounts] = {}
        for site, status, count, lag in rows:
            entry = sites.setdefault(site, SiteCounts(site, {}, 0.0))
            entry.by_status[status] = int(count)
            if status == "received":
                sites[site] = SiteCounts(site, entry.by_status, float(lag))
        return list(sites.values())


def _columns(message: NewMessage) -> tuple[Any, ...]:
    return (
        _text(message.site),
        _text(message.sender),
        _text(message.control_id),
        _text(message.idempotency_key),
        _text(message.message_type),
        _text(message.trigger_event),
        _text(message.patient_key),
        message.charset,
        message.raw,
        message.status,
        _text(message.error),
    )


def _text(value: str | None) -> str | None:
    """PostgreSQL text cannot hold NUL, which a corrupted message may carry in MSH-3/4/10:
    replaced (the same way every time, so the idempotency key stays stable)."""
    return value.replace("\x00", "\ufffd") if value is not None else None


def _filters(*, site: str | None, status: str | None) -> tuple[str, list[Any]]:
    conditions: list[str] = []
    params: list[Any] = []
    if site is not None:
        conditions.append("site = %s")
        params.append(site)
    if status is not None:
        conditions.append("status = %s")
        params.append(status)
    return ("WHERE " + " AND ".join(conditions) if conditions else ""), params
