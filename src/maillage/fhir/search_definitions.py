"""Custom ``SearchParameter`` resources: checked when written, followed by every process.

A SearchParameter written through the repository passes ``before_write`` inside the
write's transaction. An ``active`` one must compile (``definitions.compile_custom``), or
the write fails with a 422 and nothing is stored. When the set of active definitions
changes, the same transaction bumps ``search_definitions.generation``, enqueues a
``reindex`` job for the affected types and parameters, and marks those parameters
pending (``search_param_pending``) until that job has rewritten their index rows.

Each hub process polls the generation (``refresh``, about once a second, one small
statement) and rebuilds its ``definitions.REGISTRY`` when it moved; the process that made
the change refreshes right after its commit. The pending parameters (and their job's
progress) are read at every poll, so a search on one answers 409 with the job's progress
instead of incomplete results (docs/decisions/0004-custom-search-parameters.md).
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import orjson
import psycopg

from maillage.fhir.definitions import (
    REGISTRY,
    Definitions,
    Pending,
    base_types,
    compile_custom,
    is_active,
)
from maillage.jobs import JobService
from maillage.jobs.periodic import Periodic
from maillage.security import RequestContext
from maillage.storage import Database

log = logging.getLogger(__name__)

REINDEX_KIND = "reindex"
# What makes a definition: a change of anything else (description, name...) needs no
# reindex.
_DEFINING = ("code", "base", "type", "expression", "target", "component", "url")

_POLL = """
SELECT d.generation,
       (SELECT coalesce(jsonb_agg(jsonb_build_array(p.resource_type, p.code, p.job_id,
                                                    coalesce(j.status, 'failed'), j.progress)),
                        '[]'::jsonb)
        FROM search_param_pending p LEFT JOIN job j ON j.id = p.job_id)
FROM search_definitions d
"""
# One statement, one snapshot: the generation and the definitions it stands for.
_LOAD = """
SELECT d.generation,
       (SELECT coalesce(jsonb_agg(r.content), '[]'::jsonb) FROM resource r
        WHERE r.resource_type = 'SearchParameter' AND NOT r.deleted
          AND r.content ->> 'status' = 'active')
FROM search_definitions d
"""


class PollOrder:
    """Refreshes overlap (the periodic one, the one after a definitions write commits, a
    reindex job's): what a poll read is applied only if no poll taken after it was
    applied already, so that an older snapshot cannot undo a newer one (a pending
    parameter's marker cleared, and a search answered from half-built rows)."""

    def __init__(self) -> None:
        self._taken = itertools.count(1)
        self._applied = 0

    def take(self) -> int:
        """A poll's place in the order, taken once its snapshot is read."""
        return next(self._taken)

    def newest(self, ticket: int) -> bool:
        """Whether the poll ``ticket`` is the newest applied (and mark it applied)."""
        if ticket < self._applied:
            return False
        self._applied = ticket
        return True


# Process-wide, as the registry it guards.
_POLL_ORDER = PollOrder()


def _json(value: Any) -> Any:
    # The pool loads jsonb as text (bodies are served as stored).
    return orjson.loads(value) if isinstance(value, str | bytes) else value


def percent(progress: Mapping[str, Any] | None) -> int | None:
    """How far a reindex job is, from its ``progress``; None before it counted."""
    if not progress or not progress.get("total"):
        return 0 if progress and progress.get("total") == 0 else None
    return min(100, int(100 * int(progress.get("done", 0)) / int(progress["total"])))


def _defining(resource: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if resource is None or not is_active(resource):
        return None
    return {key: resource.get(key) for key in _DEFINING}


def install_from_store(conn: psycopg.Connection) -> int:
    """Install the store's custom definitions in this process (synchronous: the bulk
    loader, before it forks its workers); returns their generation."""
    row = conn.execute(_LOAD).fetchone()
    if row is None:
        return REGISTRY.generation
    if int(row[0]) != REGISTRY.generation:
        REGISTRY.install(Definitions.build(int(row[0]), _json(row[1])))
    return REGISTRY.generation


class SearchDefinitions:
    """This process's view of the custom search parameters, and the write-time checks."""

    def __init__(self, db: Database, jobs: JobService, *, refresh_s: float = 1.0) -> None:
        self.db = db
        self.jobs = jobs
        self.refresh_s = refresh_s
        self._loop = Periodic("search-definitions", refresh_s, self.refresh)
        # Connections (by id) whose open transaction changed the definitions.
        self._changed_in: set[int] = set()

    # -- following the store ----------------------------------------------------------
    async def refresh(self) -> int:
        """Install the store's definitions if their generation moved, and read the pending
        parameters; returns the generation this process now runs on."""
        async with self.db.connection() as conn:
            cursor = await conn.execute(_POLL)
            row = await cursor.fetchone()
            ticket = _POLL_ORDER.take()
            if row is None:  # the migration's row was removed: official definitions only
                return REGISTRY.generation
            generation = int(row[0])
            loaded = None
            if generation != REGISTRY.generation:
                cursor = await conn.execute(_LOAD)
                loaded = await cursor.fetchone()
                assert loaded is not None
        if not _POLL_ORDER.newest(ticket):  # a newer poll was applied meanwhile
            return REGISTRY.generation
        if loaded is not None:
            REGISTRY.install(Definitions.build(int(loaded[0]), _json(loaded[1])))
            log.info("search definitions: generation %s installed", loaded[0])
        REGISTRY.set_pending(
            {
                (resource_type, code): Pending(job_id, status, percent(_json(progress)))
                for resource_type, code, job_id, status, progress in _json(row[1])
            }
        )
        return REGISTRY.generation

    def start(self) -> None:
        """Follow the definitions (``refresh`` once before: the first turn waits)."""
        self._loop.start()

    async def stop(self) -> None:
        await self._loop.stop()

    # -- the write path -----------------------------------------------------------------
    async def before_write(
        self,
        conn: psycopg.AsyncConnection,
        resource_id: str,
        resource: Mapping[str, Any] | None,
        ctx: RequestContext,
    ) -> None:
        """Check a SearchParameter about to be written (``resource``; None: deleted) in
        the write's transaction; raises ``ValidationFailed`` (nothing is stored) when an
        active one cannot be served. A change of definitions bumps the generation and
        enqueues its reindex, in the same transaction."""
        # Definition changes are serialised: the clash checks see every committed one.
        cursor = await conn.execute("SELECT generation FROM search_definitions FOR UPDATE")
        row = await cursor.fetchone()
        generation = int(row[0]) if row else 0
        cursor = await conn.execute(
            "SELECT id, content FROM resource WHERE resource_type = 'SearchParameter'"
            " AND NOT deleted AND content ->> 'status' = 'active'"
        )
        actives = {str(found_id): _json(content) for found_id, content in await cursor.fetchall()}
        old = actives.pop(resource_id, None)
        new = {**resource, "id": resource_id} if resource is not None else None
        if new is not None and is_active(new):
            compile_custom(new, list(actives.values()))
        if _defining(old) == _defining(new):
            return
        types: set[str] = set()
        codes: set[str] = set()
        for definition in (old, new):
            if definition is not None and is_active(definition):
                types |= base_types(definition)
                codes.add(str(definition["code"]))
        generation += 1
        await conn.execute(
            "UPDATE search_definitions SET generation = %s, changed_at = now()", (generation,)
        )
        if types:
            job = await self.jobs.enqueue(
                REINDEX_KIND,
                {
                    "types": sorted(types),
                    "codes": sorted(codes),
                    "generation": generation,
                    "reason": f"SearchParameter/{resource_id} changed",
                },
                ctx,
                conn=conn,
            )
            if new is not None and is_active(new):
                await self._mark_pending(conn, sorted(base_types(new)), new, generation, job.id)
        self._changed_in.add(id(conn))

    async def _mark_pending(
        self,
        conn: psycopg.AsyncConnection,
        types: list[str],
        definition: Mapping[str, Any],
        generation: int,
        job_id: str,
    ) -> None:
        await conn.execute(
            "INSERT INTO search_param_pending (resource_type, code, generation, job_id)"
            " SELECT t, %s, %s, %s FROM unnest(%s::text[]) AS t"
            " ON CONFLICT (resource_type, code)"
            " DO UPDATE SET generation = excluded.generation, job_id = excluded.job_id",
            (definition["code"], generation, job_id, types),
        )

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[psycopg.AsyncConnection]:
        """A write transaction (``Repository``'s): once it committed, if it changed the
        definitions, this process takes them at once (other processes at their next poll)
        and the job worker looks for the reindex."""
        opened: list[psycopg.AsyncConnection] = []
        try:
            async with self.db.transaction() as conn:
                opened.append(conn)
                yield conn
        except BaseException:
            if opened:  # rolled back: its change never happened
                self._changed_in.discard(id(opened[0]))
            raise
        if id(opened[0]) in self._changed_in:
            self._changed_in.discard(id(opened[0]))
            await self.refresh()
            self.jobs.wakeup.set()
