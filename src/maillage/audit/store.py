"""The ``audit_event`` table (migration 0006): the chained append and the reads.

Appending is serialised across every process of the hub by a transaction-level advisory
lock on a fixed key: under it the writer reads the head of the chain (last ``seq`` and
``hash``) in a statement that starts after the lock is held (READ COMMITTED: it sees the
previous append's commit), chains its rows and inserts them in one statement; the lock
goes with the commit. ``BatchWriter`` feeds that append from a queue, so that many
concurrent requests share one lock, one round trip and one commit (group commit).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import orjson
import psycopg

from maillage.audit.chain import GENESIS, ChainRow, link_hash, record_of
from maillage.storage import Database

log = logging.getLogger(__name__)

APPEND_LOCK_KEY: Final = 0x41554454  # "AUDT"
_COLUMNS: Final = "seq, recorded, patient_id, who, action, outcome, body, prev_hash, hash"
_HEAD: Final = "SELECT seq, hash FROM audit_event ORDER BY seq DESC LIMIT 1"
_INSERT: Final = (
    f"INSERT INTO audit_event ({_COLUMNS})"
    " SELECT s, r, p, w, a, o, b::jsonb, ph, h FROM unnest("
    " %b::bigint[], %b::timestamptz[], %b::text[], %b::text[], %b::text[], %b::smallint[],"
    " %b::text[], %b::bytea[], %b::bytea[]) AS t(s, r, p, w, a, o, b, ph, h)"
)
_STAGE: Final = (
    "INSERT INTO audit_pending (recorded, patient_id, who, action, outcome, body)"
    " SELECT r, p, w, a, o, b::jsonb FROM unnest(%b::timestamptz[], %b::text[], %b::text[],"
    " %b::text[], %b::smallint[], %b::text[]) AS t(r, p, w, a, o, b)"
)
# Under the append lock only one writer takes staged rows at a time; RETURNING has no
# order, so the caller sorts them by id.
_TAKE_STAGED: Final = (
    "DELETE FROM audit_pending WHERE id IN"
    " (SELECT id FROM audit_pending ORDER BY id LIMIT %s)"
    " RETURNING id, recorded, patient_id, who, action, outcome, body"
)
# The arrays go in binary (%b): in text, each JSON body's quotes are escaped one regex
# substitution at a time, which made a search page about 40 patients cost 20 ms.


@dataclass(frozen=True, slots=True)
class PendingEvent:
    """An AuditEvent waiting for its place in the chain."""

    recorded: dt.datetime
    patient_id: str | None
    who: str
    action: str
    outcome: int
    body: dict[str, Any]


async def head(conn: psycopg.AsyncConnection) -> tuple[int, bytes]:
    """The last row's ``(seq, hash)``, or ``(0, GENESIS)`` for an empty chain."""
    cursor = await conn.execute(_HEAD)
    row = await cursor.fetchone()
    return (0, GENESIS) if row is None else (int(row[0]), bytes(row[1]))


async def stage(conn: psycopg.AsyncConnection, events: Sequence[PendingEvent]) -> None:
    """Insert ``events`` unchained into ``audit_pending``, in the connection's current
    transaction (a change's own): no lock, one statement. ``append(seal=...)`` chains them."""
    if events:
        await conn.execute(_STAGE, _stage_columns(events))


def stage_sync(conn: psycopg.Connection, events: Sequence[PendingEvent]) -> None:
    """``stage`` on a blocking connection (the batch dedupe's bulk writes)."""
    if events:
        conn.execute(_STAGE, _stage_columns(events))


def _stage_columns(events: Sequence[PendingEvent]) -> list[list[Any]]:
    columns: list[list[Any]] = [[] for _ in range(6)]
    for event in events:
        values = (
            event.recorded, event.patient_id, event.who, event.action, event.outcome,
            orjson.dumps(event.body).decode(),
        )  # fmt: skip
        for column, value in zip(columns, values, strict=True):
            column.append(value)
    return columns


async def append(
    conn: psycopg.AsyncConnection, events: Sequence[PendingEvent], *, seal: int = 0
) -> tuple[list[int], int]:
    """Chain and insert ``events`` in the connection's open transaction: their ``seq``,
    and how many staged events (up to ``seal``, oldest first) were chained before them.

    Holds the append lock until that transaction ends: call it last before COMMIT."""
    if not events and not seal:
        return [], 0
    if conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE:
        raise RuntimeError("audit append needs an open transaction (the lock is per transaction)")
    # One round trip for all: in a pipeline the head (and the staged rows) are still read
    # by their own statements, run once the lock is held (a snapshot taken after the
    # previous append's commit).
    async with conn.pipeline():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (APPEND_LOCK_KEY,))
        cursor = await conn.execute(_HEAD)
        staged_cursor = await conn.execute(_TAKE_STAGED, (seal,)) if seal else None
    found = await cursor.fetchone()
    staged = (
        [_staged(values) for values in sorted(await staged_cursor.fetchall())]
        if staged_cursor is not None
        else []
    )
    last_seq, prev = (0, GENESIS) if found is None else (int(found[0]), bytes(found[1]))
    seqs = await _insert_chained(conn, [*staged, *events], last_seq, prev)
    return seqs[len(staged) :], len(staged)


def _staged(values: Sequence[Any]) -> PendingEvent:
    # values[0] is the staging id: the rows are sorted by it, then it is dropped
    return PendingEvent(
        recorded=values[1],
        patient_id=values[2],
        who=values[3],
        action=values[4],
        outcome=int(values[5]),
        body=_body(values[6]),
    )


async def _insert_chained(
    conn: psycopg.AsyncConnection, events: Sequence[PendingEvent], last_seq: int, prev: bytes
) -> list[int]:
    if not events:
        return []
    columns: list[list[Any]] = [[] for _ in range(9)]
    for offset, event in enumerate(events, start=1):
        seq = last_seq + offset
        record = record_of(
            seq, event.recorded, event.patient_id, event.who, event.action, event.outcome,
            event.body,
        )  # fmt: skip
        digest = link_hash(prev, record)
        values = (
            seq,
            event.recorded,
            event.patient_id,
            event.who,
            event.action,
            event.outcome,
            orjson.dumps(event.body).decode(),
            prev,
            digest,
        )
        for column, value in zip(columns, values, strict=True):
            column.append(value)
        prev = digest
    await conn.execute(_INSERT, columns)
    return [last_seq + offset for offset in range(1, len(events) + 1)]


def _body(value: Any) -> dict[str, Any]:
    # The hub's pool loads JSONB as text; a plain psycopg connection gives a dict.
    loaded = orjson.loads(value) if isinstance(value, str | bytes) else value
    assert isinstance(loaded, dict)
    return loaded


def _row(values: Sequence[Any]) -> ChainRow:
    return ChainRow(
        seq=int(values[0]),
        recorded=values[1],
        patient_id=values[2],
        who=values[3],
        action=values[4],
        outcome=int(values[5]),
        body=_body(values[6]),
        prev_hash=bytes(values[7]),
        hash=bytes(values[8]),
    )


async def rows_after(conn: psycopg.AsyncConnection, after_seq: int, limit: int) -> list[ChainRow]:
    cursor = await conn.execute(
        f"SELECT {_COLUMNS} FROM audit_event WHERE seq > %s ORDER BY seq LIMIT %s",
        (after_seq, limit),
    )
    return [_row(values) for values in await cursor.fetchall()]


async def count(conn: psycopg.AsyncConnection) -> int:
    cursor = await conn.execute("SELECT count(*) FROM audit_event")
    row = await cursor.fetchone()
    return int(row[0]) if row else 0


async def count_staged(conn: psycopg.AsyncConnection) -> int:
    cursor = await conn.execute("SELECT count(*) FROM audit_pending")
    row = await cursor.fetchone()
    return int(row[0]) if row else 0


async def patient_rows(
    conn: psycopg.AsyncConnection,
    patient_id: str,
    since: dt.datetime | None,
    until: dt.datetime | None,
    limit: int,
    before_seq: int | None = None,
) -> list[ChainRow]:
    """The patient's events, newest first (the ``(patient_id, recorded)`` index); after
    ``before_seq``, those that come after that row in that order (the paging cursor)."""
    cursor = await conn.execute(
        f"SELECT {_COLUMNS} FROM audit_event WHERE patient_id = %(p)s"
        " AND (%(since)s::timestamptz IS NULL OR recorded >= %(since)s)"
        " AND (%(until)s::timestamptz IS NULL OR recorded < %(until)s)"
        " AND (%(before)s::bigint IS NULL OR (recorded, seq) <"
        " (SELECT c.recorded, c.seq FROM audit_event c WHERE c.seq = %(before)s))"
        " ORDER BY recorded DESC, seq DESC LIMIT %(limit)s",
        {"p": patient_id, "since": since, "until": until, "before": before_seq, "limit": limit},
    )
    return [_row(values) for values in await cursor.fetchall()]


SEAL_BATCH: Final = 5_000


@dataclass
class _Item:
    event: PendingEvent | None  # None: a request to chain the staged events
    done: asyncio.Future[int] | None


class BatchWriter:
    """One task per process appends what the requests queue, in batches of up to
    ``max_batch`` rows per transaction. ``submit`` returns a future set once the row is
    committed (a request awaits it before answering); ``seal`` one set once the events
    staged so far are chained; ``close`` flushes the queue."""

    def __init__(self, db: Database, *, max_batch: int = 500) -> None:
        self.db = db
        self.max_batch = max_batch
        self._queue: asyncio.Queue[_Item] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    @property
    def closing(self) -> bool:
        return self._closing

    def submit(self, event: PendingEvent, *, wait: bool = True) -> asyncio.Future[int] | None:
        return self._enqueue(_Item(event, None), wait)

    def seal(self, *, wait: bool = True) -> asyncio.Future[int] | None:
        """Chain the staged events (every process's, up to ``SEAL_BATCH``) with the next
        batch; the future is set to how many were chained once that is committed."""
        return self._enqueue(_Item(None, None), wait)

    def _enqueue(self, item: _Item, wait: bool) -> asyncio.Future[int] | None:
        if self._closing:
            raise RuntimeError("the audit writer is closed")
        item.done = asyncio.get_running_loop().create_future() if wait else None
        self._queue.put_nowait(item)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="audit-writer")
        return item.done

    async def close(self) -> None:
        """Append everything queued, then stop (the app's shutdown)."""
        self._closing = True
        if self._task is not None:
            await self._queue.join()
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < self.max_batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                await self._write(batch)
            finally:
                for _ in batch:
                    self._queue.task_done()

    async def _write(self, batch: list[_Item]) -> None:
        events = [item.event for item in batch if item.event is not None]
        seal = SEAL_BATCH if len(events) < len(batch) else 0
        for attempt in range(3):
            try:
                # pipeline: BEGIN goes with the lock and the head, COMMIT with the INSERT
                async with self.db.connection() as conn, conn.pipeline(), conn.transaction():
                    seqs, sealed = await append(conn, events, seal=seal)
            except (psycopg.OperationalError, psycopg.errors.UniqueViolation) as error:
                log.warning("audit append failed (attempt %d): %s", attempt + 1, error)
                if attempt == 2:
                    for item in batch:
                        if item.done is not None and not item.done.done():
                            item.done.set_exception(error)
                    log.error("audit: %d events could not be appended", len(batch))
                    return
                await asyncio.sleep(0.05 * (attempt + 1))
            except Exception as error:
                log.exception("audit append failed")
                for item in batch:
                    if item.done is not None and not item.done.done():
                        item.done.set_exception(error)
                return
            else:
                appended = iter(seqs)
                for item in batch:
                    seq = next(appended) if item.event is not None else sealed
                    if item.done is not None and not item.done.done():
                        item.done.set_result(seq)
                return
