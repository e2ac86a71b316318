"""Enqueue, read and cancel jobs; the claim and bookkeeping statements the worker uses."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import orjson
import psycopg
from psycopg.types.json import Jsonb

from maillage.jobs.models import COLUMNS, Job, context_to_json
from maillage.security import RequestContext
from maillage.storage import Database


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


class JobService:
    """The ``job`` table. ``wakeup`` lets a worker of this process start a new job at once;
    workers of other processes find it at their next poll."""

    def __init__(self, db: Database, *, max_attempts: int = 3) -> None:
        self.db = db
        self.max_attempts = max_attempts
        self.wakeup = asyncio.Event()

    async def enqueue(
        self,
        kind: str,
        params: dict[str, Any],
        ctx: RequestContext,
        *,
        conn: psycopg.AsyncConnection | None = None,
    ) -> Job:
        """Add a job. With ``conn``, inside that connection's transaction: the job exists
        if and only if the work that asked for it commits (call ``wakeup.set()`` after)."""
        if conn is not None:
            return await self._insert(conn, kind, params, ctx)
        async with self.db.connection() as own:
            job = await self._insert(own, kind, params, ctx)
        self.wakeup.set()
        return job

    async def _insert(
        self, conn: psycopg.AsyncConnection, kind: str, params: dict[str, Any], ctx: RequestContext
    ) -> Job:
        cursor = await conn.execute(
            f"INSERT INTO job (id, kind, params, requested_by, context, max_attempts)"
            f" VALUES (%s, %s, %s, %s, %s, %s) RETURNING {COLUMNS}",
            (
                uuid.uuid4().hex,
                kind,
                Jsonb(params, dumps=_dumps),
                ctx.who,
                Jsonb(context_to_json(ctx), dumps=_dumps),
                self.max_attempts,
            ),
        )
        row = await cursor.fetchone()
        assert row is not None
        return Job.from_row(row)

    async def get(self, job_id: str) -> Job | None:
        async with self.db.connection() as conn:
            cursor = await conn.execute(f"SELECT {COLUMNS} FROM job WHERE id = %s", (job_id,))
            row = await cursor.fetchone()
        return Job.from_row(row) if row else None

    async def cancel(self, job_id: str) -> Job | None:
        """Mark a job cancelled (whatever its state); a running handler stops at its next
        heartbeat or progress report. None when there is no such job."""
        async with self.db.connection() as conn:
            cursor = await conn.execute(
                f"UPDATE job SET status = 'cancelled', finished_at = coalesce(finished_at, now()),"
                f" locked_by = NULL WHERE id = %s RETURNING {COLUMNS}",
                (job_id,),
            )
            row = await cursor.fetchone()
        return Job.from_row(row) if row else None

    # -- used by the worker -------------------------------------------------------------
    async def claim(
        self,
        worker_id: str,
        kinds: list[str],
        stale_after_s: float,
        *,
        job_id: str | None = None,
    ) -> Job | None:
        """Take the oldest runnable job of ``kinds`` (or the job ``job_id``, if runnable):
        queued, or running with a heartbeat older than ``stale_after_s`` (its worker died).
        Jobs out of attempts fail."""
        only = "" if job_id is None else " AND id = %(job)s"
        stale = "status = 'running' AND heartbeat < now() - make_interval(secs => %(stale)s)"
        async with self.db.transaction() as conn:
            await conn.execute(
                f"UPDATE job SET status = 'failed', finished_at = now(), locked_by = NULL,"
                f" error = 'its worker stopped answering ' || attempts || ' time(s)'"
                f" WHERE kind = ANY(%(kinds)s) AND {stale} AND attempts >= max_attempts",
                {"kinds": kinds, "stale": stale_after_s},
            )
            cursor = await conn.execute(
                f"SELECT id FROM job WHERE kind = ANY(%(kinds)s)"
                f" AND (status = 'queued' OR ({stale})){only}"
                f" ORDER BY created_at LIMIT 1 FOR UPDATE SKIP LOCKED",
                {"kinds": kinds, "stale": stale_after_s, "job": job_id},
            )
            found = await cursor.fetchone()
            if found is None:
                return None
            cursor = await conn.execute(
                f"UPDATE job SET status = 'running', locked_by = %s, heartbeat = now(),"
                f" started_at = now(), attempts = attempts + 1, error = NULL"
                f" WHERE id = %s RETURNING {COLUMNS}",
                (worker_id, found[0]),
            )
            row = await cursor.fetchone()
        assert row is not None
        return Job.from_row(row)

    async def _update_owned(
        self,
        job_id: str,
        worker_id: str,
        assignments: str,
        *args: Any,
        conn: psycopg.AsyncConnection | None = None,
    ) -> bool:
        """Run an update on a job this worker still holds; False when it lost it. With
        ``conn``, inside that connection's transaction."""
        statement = (
            f"UPDATE job SET {assignments} WHERE id = %s AND locked_by = %s"
            " AND status = 'running' RETURNING id"
        )
        if conn is not None:
            cursor = await conn.execute(statement, (*args, job_id, worker_id))
            return await cursor.fetchone() is not None
        async with self.db.connection() as own:
            cursor = await own.execute(statement, (*args, job_id, worker_id))
            return await cursor.fetchone() is not None

    async def beat(self, job_id: str, worker_id: str) -> bool:
        return await self._update_owned(job_id, worker_id, "heartbeat = now()")

    async def report_progress(
        self,
        job_id: str,
        worker_id: str,
        progress: dict[str, Any],
        *,
        conn: psycopg.AsyncConnection | None = None,
    ) -> bool:
        return await self._update_owned(
            job_id,
            worker_id,
            "progress = %s, heartbeat = now()",
            Jsonb(progress, dumps=_dumps),
            conn=conn,
        )

    async def finish(self, job_id: str, worker_id: str, result: dict[str, Any]) -> bool:
        return await self._update_owned(
            job_id,
            worker_id,
            "status = 'done', result = %s, finished_at = now(), locked_by = NULL",
            Jsonb(result, dumps=_dumps),
        )

    async def fail(self, job_id: str, worker_id: str, error: str) -> bool:
        return await self._update_owned(
            job_id,
            worker_id,
            "status = 'failed', error = %s, finished_at = now(), locked_by = NULL",
            error,
        )

    async def release(self, job_id: str, worker_id: str) -> bool:
        """Put a job back in the queue (its worker is stopping); the attempt is not held
        against it."""
        return await self._update_owned(
            job_id,
            worker_id,
            "status = 'queued', locked_by = NULL, heartbeat = NULL,"
            " attempts = greatest(attempts - 1, 0)",
        )
