"""Secondary indexes set aside during a large bulk load and built again after it.

Inserting millions of rows into B-trees one at a time costs far more than building the
same B-trees once from the finished tables (one sort each), which is also how
``pg_restore`` loads. A large load therefore drops the secondary indexes of the tables it
fills, loads, and builds them again. Their definitions are written to ``deferred_index``
in the transaction that drops them, so an interrupted load loses no index: the next hub
start (``prepare_database``) or the next load builds what is recorded there.

Only non-unique indexes are set aside: while they are away every query stays correct
(sequential scans), only slower, and no constraint is lifted.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Sequence

import psycopg

log = logging.getLogger(__name__)

# Held while building, so that two processes (a hub starting, a load ending) do not build
# the same index twice.
_BUILD_LOCK_KEY = 0x4D414958  # "MAIX"
# Each build sorts in memory up to this much before spilling to disk.
BUILD_MEMORY = "256MB"

_SECONDARY_INDEXES = """
SELECT i.relname, t.relname, pg_get_indexdef(x.indexrelid)
FROM pg_index x
JOIN pg_class i ON i.oid = x.indexrelid
JOIN pg_class t ON t.oid = x.indrelid
JOIN pg_namespace n ON n.oid = t.relnamespace
WHERE n.nspname = current_schema() AND t.relname = ANY(%s)
  AND NOT x.indisunique AND NOT x.indisprimary
ORDER BY t.relname, i.relname
"""


def defer(conn: psycopg.Connection, tables: Sequence[str]) -> list[str]:
    """Record and drop the secondary indexes of ``tables`` in one transaction; returns
    their names. Waits for the queries running on those tables (the drop locks them)."""
    with conn.transaction():
        found = conn.execute(_SECONDARY_INDEXES, (list(tables),)).fetchall()
        for name, table, definition in found:
            conn.execute(
                "INSERT INTO deferred_index (name, table_name, definition) VALUES (%s, %s, %s)"
                " ON CONFLICT (name) DO NOTHING",
                (name, table, definition),
            )
            conn.execute(f'DROP INDEX IF EXISTS "{name}"')
    names = [str(row[0]) for row in found]
    if names:
        log.info("set aside %d indexes for the load: %s", len(names), ", ".join(names))
    return names


def pending(conn: psycopg.Connection) -> list[str]:
    """Names of the indexes set aside and not built yet."""
    rows = conn.execute("SELECT name FROM deferred_index ORDER BY name").fetchall()
    return [str(row[0]) for row in rows]


def build(conninfo: str, *, parallel: int = 2) -> list[str]:
    """Build every index recorded as set aside, ``parallel`` at a time (the biggest tables
    first); returns their names. Each index is built and unrecorded in one transaction,
    so an interruption leaves the rest recorded."""
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (_BUILD_LOCK_KEY,))
        try:
            work = conn.execute(
                "SELECT d.name, d.definition FROM deferred_index d"
                " LEFT JOIN pg_class c ON c.relname = d.table_name"
                " ORDER BY c.relpages DESC NULLS LAST, d.name"
            ).fetchall()
            if not work:
                return []
            started = time.perf_counter()
            todo: queue.SimpleQueue[tuple[str, str]] = queue.SimpleQueue()
            for name, definition in work:
                todo.put((str(name), str(definition)))
            failures: list[BaseException] = []
            threads = [
                threading.Thread(target=_build_from, args=(conninfo, todo, failures))
                for _ in range(max(1, min(parallel, len(work))))
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            if failures:
                raise failures[0]
            log.info(
                "built %d set-aside indexes in %.1f s", len(work), time.perf_counter() - started
            )
            return [str(name) for name, _ in work]
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_BUILD_LOCK_KEY,))


def _build_from(
    conninfo: str, todo: queue.SimpleQueue[tuple[str, str]], failures: list[BaseException]
) -> None:
    try:
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute(f"SET maintenance_work_mem = '{BUILD_MEMORY}'")
            while not failures:
                try:
                    name, definition = todo.get_nowait()
                except queue.Empty:
                    return
                with conn.transaction():
                    conn.execute(_if_not_exists(definition).encode())
                    conn.execute("DELETE FROM deferred_index WHERE name = %s", (name,))
    except BaseException as error:  # reported by build() in the calling thread
        failures.append(error)


def _if_not_exists(definition: str) -> str:
    """``pg_get_indexdef`` gives ``CREATE INDEX name ON ...``: a build that finds the index
    already there (built by an earlier, interrupted run) only unrecords it."""
    prefix = "CREATE INDEX "
    if definition.startswith(prefix):
        return "CREATE INDEX IF NOT EXISTS " + definition[len(prefix) :]
    return definition
