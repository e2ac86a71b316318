"""Reads by id that arrive together go to PostgreSQL together.

Under load, many ``GET [type]/[id]`` are in flight at once. Each one used to borrow a
pooled connection and run its own ``SELECT``: the driver's work per statement (~130 us of
Python) and the round trip, not the lookup itself, bounded the hub. Here the reads that
reach the store in the same turn of the event loop are answered by one statement
(``... JOIN unnest(types, ids)``), and each read gets its own row back.

Nothing is cached: every read is answered by a statement that starts after the read
arrived, so it sees everything committed before it (as a statement of its own would).
The access decision point is not bypassed: each read is authorized by the repository
before it gets here, and reads are only grouped with reads under the same SQL visibility
filter, which the statement carries. With one read in flight the cost is one extra turn
of the event loop.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from psycopg import sql

from maillage.fhir.model import StoredResource
from maillage.storage import Database

STORED_COLUMNS = "resource_type, id, version_id, last_updated, deleted, method, content"
# Reads answered by one statement at most; more waiting reads make more statements.
MAX_BATCH = 256

_FETCH_MANY = sql.SQL(
    f"SELECT {', '.join('r.' + c.strip() for c in STORED_COLUMNS.split(','))}"
    " FROM unnest(%s::text[], %s::text[]) AS k(resource_type, id)"
    " JOIN resource r ON r.resource_type = k.resource_type AND r.id = k.id WHERE "
)

_Key = tuple[str, str]


@dataclass
class _Batch:
    visible: sql.Composable
    waiting: dict[_Key, list[asyncio.Future[StoredResource | None]]] = field(default_factory=dict)
    count: int = 0


class ReadBatcher:
    """Coalesces concurrent reads by id (outside transactions) into one statement."""

    def __init__(self, db: Database) -> None:
        self.db = db
        # Open batches by event loop and visibility filter (as SQL text).
        self._open: dict[tuple[asyncio.AbstractEventLoop, str], _Batch] = {}

    async def fetch(
        self, visible: sql.Composable, resource_type: str, resource_id: str
    ) -> StoredResource | None:
        """The current row of ``resource_type/resource_id`` visible under ``visible`` (a
        condition on the ``resource`` row aliased ``r``), or None."""
        loop = asyncio.get_running_loop()
        key = (loop, visible.as_string(None))
        batch = self._open.get(key)
        if batch is None or batch.count >= MAX_BATCH:
            batch = self._open[key] = _Batch(visible)
            loop.call_soon(self._close, key, batch)
        future: asyncio.Future[StoredResource | None] = loop.create_future()
        batch.waiting.setdefault((resource_type, resource_id), []).append(future)
        batch.count += 1
        return await future

    def _close(self, key: tuple[asyncio.AbstractEventLoop, str], batch: _Batch) -> None:
        if self._open.get(key) is batch:
            del self._open[key]
        task = key[0].create_task(self._run(batch))
        # Keep a reference until it is done (the loop only holds a weak one).
        _RUNNING.add(task)
        task.add_done_callback(_RUNNING.discard)

    async def _run(self, batch: _Batch) -> None:
        try:
            keys = list(batch.waiting)
            async with self.db.connection() as conn:
                cursor = await conn.execute(
                    _FETCH_MANY + batch.visible,
                    ([key[0] for key in keys], [key[1] for key in keys]),
                )
                rows = await cursor.fetchall()
        except Exception as error:
            for futures in batch.waiting.values():
                for future in futures:
                    if not future.done():
                        future.set_exception(error)
            return
        except BaseException:  # cancelled (shutdown): so are the reads waiting on it
            for futures in batch.waiting.values():
                for future in futures:
                    future.cancel()
            raise
        found = {(row[0], row[1]): StoredResource.from_row(row) for row in rows}
        for key, futures in batch.waiting.items():
            stored = found.get(key)
            for future in futures:
                if not future.done():
                    future.set_result(stored)


_RUNNING: set[asyncio.Task[None]] = set()
