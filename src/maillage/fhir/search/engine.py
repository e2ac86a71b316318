"""Search and history over the store, with the access filter inside every query.

A search is: result parameters read (``query``), each filter turned into a SQL
condition (``builder``: modifiers, chains, ``_has``, composites), one page fetched in
the order asked (``sorting``), its total counted as ``_total`` says, the includes added
(``includes``) and the resources shaped by ``_summary``/``_elements`` (``shaping``).
Type-level, whole-system (``_type``, common parameters) and Patient compartment
searches share that path.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql

from maillage.errors import InvalidRequest, NotFound, QueryTimeout, UnsupportedParameter
from maillage.fhir.definitions import params_for, patient_compartment, resource_types
from maillage.fhir.model import SearchPage, StoredResource
from maillage.fhir.search import conditions, includes, shaping
from maillage.fhir.search.builder import Authorize, ConditionBuilder, Visible, any_of
from maillage.fhir.search.lookups import Lookups, gather
from maillage.fhir.search.paging import (
    Cursor,
    SortKey,
    after,
    decode,
    encode,
    key_columns,
    order_clause,
)
from maillage.fhir.search.query import CONTROL, ResultParams, parse_results
from maillage.fhir.search.sorting import sort_keys

__all__ = ["SearchEngine", "Visible"]

# ``_total=estimate``: counted exactly up to this many, else the planner's estimate.
ESTIMATE_CAP = 10_000
# Beyond this many conditions the planner keeps the join order as written (``_set_timeout``).
JOIN_SEARCH_MAX = 8


def _allow_all(resource_type: str) -> None:
    return None


class SearchEngine:
    def __init__(
        self, *, default_count: int = 50, max_count: int = 1000, timeout_ms: int = 10_000
    ) -> None:
        self.default_count = default_count
        self.max_count = max_count
        self.timeout_ms = timeout_ms

    # -- conditions -------------------------------------------------------------------
    def conditions(
        self,
        resource_type: str | None,
        params: list[tuple[str, str]],
        *,
        strict: bool,
        visible: Visible,
        authorize: Authorize = _allow_all,
        types: list[str] | None = None,
        lookups: Lookups | None = None,
    ) -> tuple[list[sql.Composable], list[tuple[str, str]]]:
        """The SQL condition of each filter parameter, and the parameters used.

        ``lookups``: the stored ValueSets and Lists the parameters name (``gather``).
        """
        builder = ConditionBuilder(visible, authorize, lookups)
        where: list[sql.Composable] = []
        used: list[tuple[str, str]] = []
        every_type = types or sorted(resource_types())
        for name, value in params:
            if name.partition(":")[0] in CONTROL:
                continue
            if resource_type is None:
                condition = builder.common(every_type, name, value)
            else:
                condition = builder.condition(resource_type, name, value)
            if condition is None:
                if strict:
                    scope = resource_type or "a whole-system search"
                    raise UnsupportedParameter(
                        f"search parameter {name!r} is not supported for {scope}"
                    )
                continue
            where.append(condition)
            used.append((name, value))
        return where, used

    # -- search -----------------------------------------------------------------------
    async def search(
        self,
        conn: psycopg.AsyncConnection,
        resource_type: str | None,
        params: list[tuple[str, str]],
        *,
        strict: bool,
        visible: Visible,
        authorize: Authorize = _allow_all,
        compartment: tuple[str, str] | None = None,
    ) -> SearchPage:
        results = parse_results(
            params, strict=strict, default_count=self.default_count, max_count=self.max_count
        )
        scope = self._scope(resource_type, results, strict, authorize)
        lookups = await gather(
            lambda query: self._fetch(conn, query),
            params,
            visible=visible,
            authorize=authorize,
        )
        where, used = self.conditions(
            resource_type,
            params,
            strict=strict,
            visible=visible,
            authorize=authorize,
            types=results.types,
            lookups=lookups,
        )
        if compartment is not None:
            assert resource_type is not None
            where.append(_compartment(resource_type, *compartment))
        keys, sorted_by = sort_keys(resource_type, results.sort, strict=strict)
        cursor = decode(results.page, keys) if results.page else None
        filters = sql.SQL(" AND ").join([*scope, sql.SQL("NOT r.deleted"), visible("r"), *where])
        await self._set_timeout(conn, len(where))
        if results.summary == "count":
            counted = await self._total(
                conn, filters, "accurate" if results.total == "none" else results.total
            )
            return self._page([], counted, results, used, sorted_by, params, has_next=False)
        rows = await self.page_rows(
            conn, filters, keys, cursor, count=results.count, offset=results.offset
        )
        page_rows = rows[: results.count]
        if cursor is not None and cursor.backward:
            page_rows.reverse()
        total: int | None = None
        if results.total != "none":
            if results.offset == 0 and cursor is None and len(rows) <= results.count:
                total = len(rows)
            else:
                total = await self._total(conn, filters, results.total)
        added = await includes.included(
            lambda query: self._fetch(conn, query),
            page_rows,
            results.includes,
            visible=visible,
            authorize=authorize,
        )
        entries = shaping.shape(
            [StoredResource.from_row(row) for row in page_rows],
            summary=results.summary,
            elements=results.elements,
        )
        page = self._page(
            entries,
            total,
            results,
            used,
            sorted_by,
            params,
            has_next=results.count > 0 and len(rows) > results.count,
        )
        page_included = shaping.shape(added, summary=results.summary, elements=None)
        return SearchPage(
            **{
                **page.__dict__,
                "included": tuple(page_included),
                **cursors(page_rows, len(rows) > results.count, cursor, results),
            }
        )

    async def page_rows(
        self,
        conn: psycopg.AsyncConnection,
        filters: sql.Composable,
        keys: list[SortKey],
        cursor: Cursor | None,
        *,
        count: int,
        offset: int = 0,
    ) -> list[tuple[Any, ...]]:
        """Up to ``count + 1`` rows (``includes.COLUMNS`` then the keys' values) after the
        cursor, in the order of ``keys`` (reversed when the cursor reads backward)."""
        if cursor is not None:
            filters = sql.SQL("{} AND {}").format(filters, after(keys, cursor))
        return await self._fetch(
            conn,
            sql.SQL(
                "SELECT {cols}, {values} FROM resource r WHERE {filters} ORDER BY {order}"
                " LIMIT {limit} OFFSET {offset}"
            ).format(
                cols=includes.COLUMNS,
                values=key_columns(keys),
                filters=filters,
                order=order_clause(keys, backward=cursor is not None and cursor.backward),
                limit=sql.Literal(count + 1),
                offset=sql.Literal(offset if cursor is None else 0),
            ),
        )

    def _scope(
        self,
        resource_type: str | None,
        results: ResultParams,
        strict: bool,
        authorize: Authorize,
    ) -> list[sql.Composable]:
        if resource_type is not None:
            if results.types is not None:
                if strict:
                    raise UnsupportedParameter("_type applies to whole-system searches only")
                results.types = None
                results.used = [(n, v) for n, v in results.used if n != "_type"]
            return [sql.SQL("r.resource_type = {}").format(sql.Literal(resource_type))]
        if results.types is None:
            return []
        for name in results.types:
            authorize(name)
        return [sql.SQL("r.resource_type = ANY({})").format(sql.Literal(results.types))]

    def _page(
        self,
        entries: list[StoredResource],
        total: int | None,
        results: ResultParams,
        used: list[tuple[str, str]],
        sort_keys: list[str],
        params: list[tuple[str, str]],
        *,
        has_next: bool,
    ) -> SearchPage:
        kept = set(used) | set(results.used)
        linked: list[tuple[str, str]] = []
        for name, value in params:
            if name == "_sort":
                if sort_keys and ("_sort", ",".join(sort_keys)) not in linked:
                    linked.append(("_sort", ",".join(sort_keys)))
            elif (name, value) in kept:
                linked.append((name, value))
        return SearchPage(
            entries=entries,
            total=total,
            offset=results.offset,
            count=results.count,
            has_next=has_next,
            used_params=linked,
        )

    async def _total(
        self, conn: psycopg.AsyncConnection, filters: sql.Composable, mode: str
    ) -> int:
        if mode == "estimate":
            capped = await self._fetch(
                conn,
                sql.SQL(
                    "SELECT count(*) FROM (SELECT 1 FROM resource r WHERE {} LIMIT {}) capped"
                ).format(filters, sql.Literal(ESTIMATE_CAP + 1)),
            )
            counted = int(capped[0][0])
            if counted <= ESTIMATE_CAP:
                return counted
            plan = await self._fetch(
                conn,
                sql.SQL("EXPLAIN (FORMAT JSON) SELECT 1 FROM resource r WHERE {}").format(filters),
            )
            estimated = int(plan[0][0][0]["Plan"]["Plan Rows"])
            return max(counted, estimated)
        found = await self._fetch(
            conn, sql.SQL("SELECT count(*) FROM resource r WHERE {}").format(filters)
        )
        return int(found[0][0])

    async def _set_timeout(self, conn: psycopg.AsyncConnection, conditions: int = 0) -> None:
        """The search's time limit, for the transaction only; with many conditions, also
        the join order as written: PostgreSQL otherwise searches the orders of every
        ``IN (SELECT ...)`` it pulls up (36 conditions on an empty database: planning
        31 ms, 11 ms with the order fixed). One statement, one round trip."""
        limit = sql.SQL("set_config('statement_timeout', {}, true)").format(
            sql.Literal(str(self.timeout_ms))
        )
        if conditions > JOIN_SEARCH_MAX:
            limit = sql.SQL("{}, set_config('join_collapse_limit', '1', true)").format(limit)
        await conn.execute(sql.SQL("SELECT {}").format(limit))

    async def _fetch(
        self, conn: psycopg.AsyncConnection, query: sql.Composed | sql.SQL
    ) -> list[tuple[Any, ...]]:
        statement, values = parameterized(query)
        try:
            cursor = await conn.execute(statement, values)
            return list(await cursor.fetchall())
        except psycopg.errors.QueryCanceled as error:
            raise QueryTimeout(
                "the search ran past its time limit; add more selective parameters"
            ) from error

    # Shared with the operations built on the engine (``everything``).
    fetch = _fetch
    set_timeout = _set_timeout
    total = _total

    # -- history ----------------------------------------------------------------------
    async def history(
        self,
        conn: psycopg.AsyncConnection,
        resource_type: str | None,
        resource_id: str | None,
        *,
        since: datetime | None,
        count: int | None,
        offset: int,
        visible: Visible,
    ) -> SearchPage:
        count = self.default_count if count is None else min(count, self.max_count)
        parts = []
        for table, alias in (("resource", "r"), ("resource_version", "v")):
            where = [visible(alias)]
            if resource_type is not None:
                where.append(
                    sql.SQL("{}.resource_type = {}").format(
                        sql.Identifier(alias), sql.Literal(resource_type)
                    )
                )
            if resource_id is not None:
                where.append(
                    sql.SQL("{}.id = {}").format(sql.Identifier(alias), sql.Literal(resource_id))
                )
            if since is not None:
                where.append(
                    sql.SQL("{}.last_updated >= {}").format(
                        sql.Identifier(alias), sql.Literal(since)
                    )
                )
            parts.append(
                sql.SQL(
                    "SELECT {a}.resource_type, {a}.id, {a}.version_id, {a}.last_updated,"
                    " {a}.deleted, {a}.method, {a}.content FROM {table} {a} WHERE {where}"
                ).format(
                    a=sql.Identifier(alias),
                    table=sql.Identifier(table),
                    where=sql.SQL(" AND ").join(where),
                )
            )
        query = sql.SQL(
            "SELECT * FROM ({union}) h"
            # (type, id, version) is unique: pages never overlap nor skip, even when many
            # versions share one millisecond (a transaction, a bulk load).
            " ORDER BY h.last_updated DESC, h.version_id DESC, h.resource_type, h.id"
            " LIMIT {limit} OFFSET {offset}"
        ).format(
            union=sql.SQL(" UNION ALL ").join(parts),
            limit=sql.Literal(count + 1),
            offset=sql.Literal(offset),
        )
        await self._set_timeout(conn)
        rows = await self._fetch(conn, query)
        used = [("_count", str(count))]
        if since is not None:
            used.append(("_since", since.isoformat()))
        return SearchPage(
            entries=[StoredResource.from_row(row) for row in rows[:count]],
            total=None,
            offset=offset,
            count=count,
            has_next=count > 0 and len(rows) > count,
            used_params=used,
        )


def parameterized(query: sql.Composable) -> tuple[sql.Composed, list[Any]]:
    """The query with each ``sql.Literal`` replaced by a server-side parameter, and the
    parameters' values in order.

    Conditions are composed with literals (simple to read and to nest); sending them as
    parameters keeps one statement text per search shape, so the pool's connections
    prepare it once (``prepare_threshold``) and PostgreSQL parses it once, instead of
    preparing and evicting a new text for every value searched.
    """
    values: list[Any] = []

    def walk(node: sql.Composable) -> sql.Composable:
        if isinstance(node, sql.Literal):
            values.append(node._obj)  # psycopg keeps the value there (no public accessor)
            return sql.Placeholder()
        if isinstance(node, sql.Composed):
            return sql.Composed([walk(part) for part in node])
        return node

    return sql.Composed([walk(query)]), values


KEY_VALUES_AT = 8  # the sort keys' values follow ``includes.COLUMNS`` in a page row


def cursors(
    page_rows: list[tuple[Any, ...]], more: bool, cursor: Cursor | None, results: ResultParams
) -> dict[str, Any]:
    """The ``_page`` cursors of a page's self, next and previous links.

    ``more``: a row beyond the page was read in the direction of the query. Reading
    forward, the rows before the page exist if it was reached by a link (or an offset);
    reading backward, the rows after it do (the page came from there).
    """
    backward = cursor is not None and cursor.backward
    found: dict[str, Any] = {"keyset": True, "self_page": results.page}
    if not page_rows or results.count == 0:
        return found
    first, last = page_rows[0][KEY_VALUES_AT:], page_rows[-1][KEY_VALUES_AT:]
    if backward or more:
        found["next_page"] = encode(last)
    if (backward and more) or (not backward and (cursor is not None or results.offset > 0)):
        found["previous_page"] = encode(first, backward=True)
    return found


def _compartment(resource_type: str, owner_type: str, owner_id: str) -> sql.Composable:
    """Rows of ``resource_type`` in the compartment of ``owner_type/owner_id``."""
    if owner_type != "Patient":
        raise NotFound(f"the {owner_type} compartment is not served; only Patient's")
    codes = patient_compartment().get(resource_type)
    if not codes:
        raise InvalidRequest(f"{resource_type} is not in the Patient compartment")
    known = params_for(resource_type)
    parts = [
        conditions.reference_condition(resource_type, code, f"Patient/{owner_id}", None)
        for code in codes
        if code in known and known[code].type == "reference" and known[code].indexed
    ]
    if resource_type == "Patient":
        parts.append(conditions.id_condition([owner_id]))
    if not parts:
        raise InvalidRequest(f"{resource_type} has no indexed link to the Patient compartment")
    return any_of(parts)
