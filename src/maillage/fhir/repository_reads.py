"""The read side of a request's repository: its connections, the access filter it
applies, and the reads (by id, by version, search, ``$everything``, history).

``Repository`` (``fhir/repository.py``) adds the writes. Every read is authorised
(``authorize``) and filtered inside its query (``sql_filter``), so that no surface can
forget either.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import sql

from maillage.errors import Gone, NotFound
from maillage.fhir.model import SearchPage, StoredResource
from maillage.fhir.search.everything import everything
from maillage.fhir.validation import require_known_type
from maillage.security import Action, RequestContext

if TYPE_CHECKING:
    from maillage.fhir.repository import FhirStore

__all__ = ["RepositoryReads"]

STORED_COLUMNS = "resource_type, id, version_id, last_updated, deleted, method, content"
# The read by id, completed with the access policy's filter (composed once, not per read).
_FETCH_CURRENT = sql.SQL(
    f"SELECT {STORED_COLUMNS} FROM resource r WHERE r.resource_type = %s AND r.id = %s AND "
)


class RepositoryReads:
    """A request's repository, bound to its context (and to a transaction's connection
    when ``conn`` is given: every call then runs in it)."""

    def __init__(
        self, store: FhirStore, ctx: RequestContext, conn: psycopg.AsyncConnection | None = None
    ) -> None:
        self.store = store
        self.ctx = ctx
        self._conn = conn

    # -- connections --------------------------------------------------------------
    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[psycopg.AsyncConnection]:
        if self._conn is not None:
            yield self._conn
        elif self.store.definitions is not None:
            # Takes a SearchParameter written in it into effect once committed.
            async with self.store.definitions.transaction() as conn:
                yield conn
        else:
            async with self.store.db.transaction() as conn:
                yield conn

    @property
    def bound_connection(self) -> psycopg.AsyncConnection | None:
        """The transaction's connection this repository is bound to, if any."""
        return self._conn

    @asynccontextmanager
    async def _single_statement(self) -> AsyncIterator[psycopg.AsyncConnection]:
        """For one statement: the open transaction's connection, else a pooled one in
        autocommit (one round trip: no BEGIN/COMMIT around a read by id)."""
        if self._conn is not None:
            yield self._conn
        else:
            async with self.store.db.connection() as conn:
                yield conn

    @asynccontextmanager
    async def _search_connection(self) -> AsyncIterator[psycopg.AsyncConnection]:
        """For a search: the open transaction's connection, else a transaction in pipeline
        mode, so that BEGIN, the search's time limit and its page query reach PostgreSQL
        in one round trip (and COMMIT with the last one) instead of one each."""
        if self._conn is not None:
            yield self._conn
        else:
            async with self.store.db.connection() as conn, conn.pipeline(), conn.transaction():
                yield conn

    def _authorize(self, action: Action, resource_type: str, resource: Any = None) -> None:
        self.store.policy.authorize(self.ctx, action, resource_type, resource)

    def _visible(
        self, action: Action, alias: str, resource_type: str | None = None
    ) -> sql.Composable:
        return self.store.policy.sql_filter(self.ctx, action, alias, resource_type)

    # -- reads --------------------------------------------------------------------
    async def read(self, resource_type: str, resource_id: str) -> StoredResource:
        require_known_type(resource_type)
        self._authorize(Action.READ, resource_type)
        if self._conn is not None:
            found = await self._fetch(self._conn, resource_type, resource_id)
        else:
            # The hottest path: reads in flight together share one statement.
            found = await self.store.reads.fetch(
                self._visible(Action.READ, "r", resource_type), resource_type, resource_id
            )
        if found is None:
            raise NotFound(f"{resource_type}/{resource_id} is not known")
        if found.deleted:
            raise Gone(f"{resource_type}/{resource_id} was deleted")
        return found

    async def vread(self, resource_type: str, resource_id: str, version_id: str) -> StoredResource:
        require_known_type(resource_type)
        self._authorize(Action.READ, resource_type)
        if not version_id.isdigit():
            raise NotFound(f"{resource_type}/{resource_id} has no version {version_id!r}")
        query = sql.SQL(
            "SELECT {columns} FROM resource r WHERE r.resource_type = %(t)s AND r.id = %(i)s"
            " AND r.version_id = %(v)s AND {visible_r} UNION ALL"
            " SELECT {columns} FROM resource_version v WHERE v.resource_type = %(t)s"
            " AND v.id = %(i)s AND v.version_id = %(v)s AND {visible_v}"
        ).format(
            columns=sql.SQL(STORED_COLUMNS),
            visible_r=self._visible(Action.READ, "r", resource_type),
            visible_v=self._visible(Action.READ, "v", resource_type),
        )
        async with self._single_statement() as conn:
            cursor = await conn.execute(
                query, {"t": resource_type, "i": resource_id, "v": int(version_id)}
            )
            row = await cursor.fetchone()
        if row is None:
            raise NotFound(f"{resource_type}/{resource_id} has no version {version_id}")
        found = StoredResource.from_row(row)
        if found.deleted:
            raise Gone(f"{resource_type}/{resource_id} version {version_id} is a deletion")
        return found

    async def search(
        self,
        resource_type: str | None,
        params: list[tuple[str, str]],
        *,
        strict: bool = False,
        compartment: tuple[str, str] | None = None,
    ) -> SearchPage:
        """A search of one type (or of all, ``resource_type`` None), optionally within the
        compartment ``(owner type, owner id)``. Chains, ``_has`` and includes reach other
        types: each is authorised as a search of that type, and filtered in the SQL."""
        if resource_type is not None:
            require_known_type(resource_type)
        self._authorize(Action.SEARCH, resource_type or "*")
        async with self._search_connection() as conn:
            return await self.store.search_engine.search(
                conn,
                resource_type,
                params,
                strict=strict,
                visible=lambda alias: self._visible(Action.SEARCH, alias),
                authorize=lambda other_type: self._authorize(Action.SEARCH, other_type),
                compartment=compartment,
            )

    async def everything(
        self,
        patient_id: str,
        *,
        types: list[str] | None = None,
        since: datetime | None = None,
        count: int | None = None,
        page: str | None = None,
    ) -> SearchPage:
        """``Patient/[id]/$everything``: a search of the Patient's compartment; each type
        is authorised as a search (types refused are left out), and filtered in the SQL."""
        self._authorize(Action.SEARCH, "Patient")
        async with self._connection() as conn:
            return await everything(
                self.store.search_engine,
                conn,
                patient_id,
                types=types,
                since=since,
                count=count,
                page=page,
                visible=lambda alias: self._visible(Action.SEARCH, alias),
                authorize=lambda other_type: self._authorize(Action.SEARCH, other_type),
            )

    async def history(
        self,
        resource_type: str | None = None,
        resource_id: str | None = None,
        *,
        since: datetime | None = None,
        count: int | None = None,
        offset: int = 0,
    ) -> SearchPage:
        if resource_type is not None:
            require_known_type(resource_type)
        self._authorize(Action.HISTORY, resource_type or "*")
        async with self._connection() as conn:
            return await self.store.search_engine.history(
                conn,
                resource_type,
                resource_id,
                since=since,
                count=count,
                offset=offset,
                visible=lambda alias: self._visible(Action.HISTORY, alias),
            )

    # -- internals ----------------------------------------------------------------
    async def _fetch(
        self, conn: psycopg.AsyncConnection, resource_type: str, resource_id: str
    ) -> StoredResource | None:
        query = _FETCH_CURRENT + self._visible(Action.READ, "r", resource_type)
        cursor = await conn.execute(query, (resource_type, resource_id))
        row = await cursor.fetchone()
        return StoredResource.from_row(row) if row else None
