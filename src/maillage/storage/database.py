"""Connection pool over PostgreSQL, embedded or external."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

import psycopg
from psycopg_pool import AsyncConnectionPool

from maillage.storage import deferred_indexes
from maillage.storage.embedded import EmbeddedPostgres
from maillage.storage.migrate import upgrade

log = logging.getLogger(__name__)


class DatabaseLocation:
    """Where the database is: an external URL, or an embedded server in a data folder."""

    def __init__(self, database_url: str | None, data_dir: Path) -> None:
        self._url = database_url
        self._embedded = None if database_url else EmbeddedPostgres(data_dir / "pg")

    @property
    def is_embedded(self) -> bool:
        return self._embedded is not None

    def start(self) -> str:
        if self._embedded is not None:
            self._url = self._embedded.start()
        assert self._url is not None
        return self._url

    def stop(self) -> None:
        if self._embedded is not None:
            self._embedded.stop()


async def _configure(conn: psycopg.AsyncConnection) -> None:
    # Bodies are served as stored: fetch JSONB as text, never parse on read.
    conn.adapters.register_loader("jsonb", psycopg.types.string.TextLoader)
    # Autocommit: a lone statement (a read by id) is one round trip, with no BEGIN and
    # COMMIT around it; work of several statements goes through ``transaction()``, which
    # sends BEGIN/COMMIT explicitly.
    await conn.set_autocommit(True)


class Database:
    """The async pool every service borrows connections from."""

    def __init__(self, conninfo: str, *, min_size: int = 2, max_size: int = 10) -> None:
        self.conninfo = conninfo
        self.pool = AsyncConnectionPool(
            conninfo,
            min_size=min_size,
            max_size=max_size,
            open=False,
            configure=_configure,
            kwargs={"prepare_threshold": 2, "options": "-c timezone=UTC"},
        )

    async def open(self) -> None:
        await self.pool.open(wait=True, timeout=30)

    async def close(self) -> None:
        await self.pool.close()

    def connection(self) -> AbstractAsyncContextManager[psycopg.AsyncConnection]:
        """A pooled connection in autocommit, for one statement that needs no transaction."""
        return self.pool.connection()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[psycopg.AsyncConnection]:
        """A connection inside one transaction: committed on success, rolled back on error."""
        async with self.pool.connection() as conn, conn.transaction():
            yield conn

    async def is_ready(self) -> bool:
        try:
            async with self.pool.connection(timeout=2) as conn:
                await conn.execute("SELECT 1")
            return True
        except Exception:  # any failure means "not ready"; /health reports it
            log.debug("database readiness check failed", exc_info=True)
            return False


def prepare_database(conninfo: str) -> None:
    """Bring the schema up to date (also run by ``maillage db upgrade``) and build the
    indexes an interrupted bulk load left set aside."""
    upgrade(conninfo)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        waiting = deferred_indexes.pending(conn)
    if waiting:
        log.warning("building %d indexes an interrupted bulk load set aside", len(waiting))
        deferred_indexes.build(conninfo)
