"""The ``reindex`` job: rewrite the index rows of some resource types, resumably.

A change of custom search parameters enqueues one for the changed parameters
(``params.codes``) of their base types; ``POST [base]/$reindex`` and ``maillage
reindex`` enqueue one for every parameter of the types asked (a repair, or the index a
``maillage load --no-index`` skipped).

The walk goes through the resources of those types in keyset batches by ``rid`` (one
pass over the table, whatever the number of types). Each batch locks its rows (``FOR
UPDATE``: a concurrent update waits, then the batch reads its result), deletes their
rows of the parameters concerned, inserts a fresh extraction, and records its position
in ``job.progress`` in the same transaction. A job taken over after its worker died
resumes after the last committed batch, so each resource is rewritten once per job.
When the walk ends, the parameters it covered stop being pending.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import orjson
import psycopg

from maillage.errors import InvalidRequest, NotFound
from maillage.fhir.definitions import resource_types
from maillage.fhir.indexing.extractor import extract_index
from maillage.fhir.search_definitions import REINDEX_KIND, SearchDefinitions, percent
from maillage.fhir.sql_writes import INDEX_TABLES, exact_decimal
from maillage.jobs import Job, JobControl, JobService, JobStatus
from maillage.security import AccessPolicy, Action, RequestContext
from maillage.storage import Database

__all__ = ["REINDEX_KIND", "ReindexService", "progress_text"]

log = logging.getLogger(__name__)

BATCH_ROWS = 500
_RETRIES = 3
# Rows arrive as one JSON array per table, each row [rid, resource_type, param, ...]: one
# statement per table whatever the batch size.
_INSERTS = {
    spec.key: (
        f"INSERT INTO {spec.table} (rid, resource_type, param, {spec.column_names})"
        f" SELECT (e->>0)::bigint, e->>1, e->>2, {spec.values_from_json(3)}"
        " FROM json_array_elements(%s::json) AS e"
    )
    for spec in INDEX_TABLES
}


def progress_text(job: Job) -> str:
    progress = job.progress or {}
    if job.status == JobStatus.QUEUED and not progress:
        return "queued"
    done, total = progress.get("done", 0), progress.get("total")
    if total is None:
        return "started"
    return f"{percent(progress)} % ({done} of {total} resources)"


def _param_names(codes: Iterable[str]) -> list[str]:
    """The ``param`` values a parameter's rows carry (with the derived token keys)."""
    return [name for code in codes for name in (code, f"{code}:text", f"{code}:of-type")]


def _batch_rows(batch: list[tuple[int, str, Any]], codes: frozenset[str] | None) -> dict[str, str]:
    """Each index table's rows of the batch, as one JSON text each."""
    merged: dict[str, list[Any]] = {spec.key: [] for spec in INDEX_TABLES}
    for rid, resource_type, content in batch:
        resource = orjson.loads(content) if isinstance(content, str | bytes) else content
        rows = extract_index(resource, codes)
        for spec in INDEX_TABLES:
            merged[spec.key].extend((rid, resource_type, *row) for row in getattr(rows, spec.field))
    return {key: orjson.dumps(rows, default=exact_decimal).decode() for key, rows in merged.items()}


class ReindexService:
    def __init__(
        self,
        db: Database,
        jobs: JobService,
        definitions: SearchDefinitions,
        policy: AccessPolicy,
        *,
        batch_rows: int = BATCH_ROWS,
        grace_s: float | None = None,
    ) -> None:
        self.db = db
        self.jobs = jobs
        self.definitions = definitions
        self.policy = policy
        self.batch_rows = batch_rows
        # Before walking, a job born of a definition change waits until every process has
        # had time to take the new definitions (two polls): a write that started under
        # the old ones has committed by then, and the walk covers it.
        self.grace_s = 2 * definitions.refresh_s + 0.5 if grace_s is None else grace_s

    # -- the requester's side -----------------------------------------------------------
    async def kickoff(self, ctx: RequestContext, types: list[str] | None) -> Job:
        """A reindex of every parameter of ``types`` (all types when None)."""
        known = resource_types()
        unknown = sorted(set(types or ()) - known)
        if unknown:
            raise InvalidRequest(f"_type names unknown resource types: {', '.join(unknown)}")
        wanted = sorted(set(types)) if types else sorted(known)
        # Rewriting a type's index is a write of that type for the access decision point
        # (until an administrator role exists: the security issue).
        for resource_type in wanted:
            self.policy.authorize(ctx, Action.UPDATE, resource_type)
        params = {"types": wanted, "codes": None, "generation": None, "reason": "requested"}
        return await self.jobs.enqueue(REINDEX_KIND, params, ctx)

    async def job_of(self, job_id: str) -> Job:
        job = await self.jobs.get(job_id)
        if job is None or job.kind != REINDEX_KIND:
            raise NotFound(f"no reindex job {job_id}")
        return job

    # -- the job handler ----------------------------------------------------------------
    async def run(self, job: Job, control: JobControl) -> dict[str, Any]:
        params = job.params
        types: list[str] = list(params["types"])
        codes = frozenset(params["codes"]) if params.get("codes") is not None else None
        if params.get("generation") is not None:
            waited = (datetime.now(UTC) - job.created_at).total_seconds()
            if waited < self.grace_s:
                await asyncio.sleep(self.grace_s - waited)
        generation = await self.definitions.refresh()
        if params.get("generation") is not None and generation < params["generation"]:
            raise RuntimeError(
                f"the definitions are at generation {generation}; this job was made for"
                f" generation {params['generation']}"
            )
        state = dict(job.progress or {})
        resumed_from = state.get("position")
        if "total" not in state:
            state = {
                "types": types,
                "codes": sorted(codes) if codes is not None else None,
                "done": 0,
                "total": await self._count(types),
                "position": 0,
                # Pending parameters up to this generation are covered by this walk; kept
                # across attempts, since batches already done used these definitions.
                "generation": generation,
            }
            await control.progress(state)
        batches = 0
        while await self.step(control, state, types, codes):
            batches += 1
        await self._clear_pending(types, codes, int(state["generation"]))
        return {**state, "batches": batches, "resumed_from": resumed_from}

    async def step(
        self,
        control: JobControl,
        state: dict[str, Any],
        types: list[str],
        codes: frozenset[str] | None,
    ) -> bool:
        """Rewrite one batch after ``state["position"]`` and commit it with the new
        position; False when the walk is over. ``state`` is updated once committed."""
        for attempt in range(1, _RETRIES + 1):
            try:
                advanced = await self._batch(control, state, types, codes)
            except (psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure):
                if attempt == _RETRIES:
                    raise
                log.info("reindex %s: batch retried after a lock conflict", control.job.id)
                continue
            if advanced is None:
                return False
            state.update(advanced)
            return True
        return False

    async def _batch(
        self,
        control: JobControl,
        state: dict[str, Any],
        types: list[str],
        codes: frozenset[str] | None,
    ) -> dict[str, Any] | None:
        async with self.db.transaction() as conn:
            cursor = await conn.execute(
                "SELECT rid, resource_type, content FROM resource"
                " WHERE resource_type = ANY(%s) AND NOT deleted AND rid > %s"
                " ORDER BY rid LIMIT %s FOR UPDATE",
                (types, int(state["position"]), self.batch_rows),
            )
            batch = list(await cursor.fetchall())
            if not batch:
                return None
            rids = [int(row[0]) for row in batch]
            # Extraction is CPU work: off the event loop, so that requests keep flowing.
            rows = await asyncio.to_thread(_batch_rows, batch, codes)
            await self._rewrite(conn, rids, rows, codes)
            advanced = {"done": int(state["done"]) + len(batch), "position": rids[-1]}
            # Raises JobCancelled (rolling the batch back) when the job is no longer ours.
            await control.progress({**state, **advanced}, conn=conn)
        return advanced

    async def _rewrite(
        self,
        conn: psycopg.AsyncConnection,
        rids: list[int],
        rows: dict[str, str],
        codes: frozenset[str] | None,
    ) -> None:
        for spec in INDEX_TABLES:
            key, table = spec.key, spec.table
            if codes is None:
                await conn.execute(f"DELETE FROM {table} WHERE rid = ANY(%s)", (rids,))
            else:
                await conn.execute(
                    f"DELETE FROM {table} WHERE rid = ANY(%s) AND param = ANY(%s)",
                    (rids, _param_names(codes)),
                )
            if rows[key] != "[]":
                await conn.execute(_INSERTS[key], (rows[key],))

    async def _count(self, types: list[str]) -> int:
        async with self.db.connection() as conn:
            cursor = await conn.execute(
                "SELECT count(*) FROM resource WHERE resource_type = ANY(%s) AND NOT deleted",
                (types,),
            )
            row = await cursor.fetchone()
        return int(row[0]) if row else 0

    async def _clear_pending(
        self, types: list[str], codes: frozenset[str] | None, generation: int
    ) -> None:
        async with self.db.connection() as conn:
            await conn.execute(
                "DELETE FROM search_param_pending WHERE resource_type = ANY(%s)"
                " AND generation <= %s AND (%s::text[] IS NULL OR code = ANY(%s::text[]))",
                (
                    types,
                    generation,
                    sorted(codes) if codes is not None else None,
                    sorted(codes or ()),
                ),
            )
        await self.definitions.refresh()
