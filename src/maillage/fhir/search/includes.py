"""``_include`` and ``_revinclude`` (with ``:iterate``), through the resolved references
of ``sp_reference``. Every included row passes the access policy's filter inside the
SQL, and rows of a type the caller may not search are dropped, so an include never
shows what a search would not.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from psycopg import sql

from maillage.errors import Forbidden
from maillage.fhir.model import StoredResource
from maillage.fhir.search.builder import Authorize, Visible
from maillage.fhir.search.conditions import reference_rows_where
from maillage.fhir.search.query import Include

COLUMNS = sql.SQL(
    "r.resource_type, r.id, r.version_id, r.last_updated, r.deleted, r.method, r.content, r.rid"
)
# Bounds on what includes may add to one page (R4 search.html#include: servers may limit).
MAX_ROUNDS = 4
MAX_INCLUDED = 1000

Fetch = Callable[[sql.Composed], Awaitable[list[tuple[Any, ...]]]]
Row = tuple[Any, ...]


def _include_rows(include: Include) -> list[sql.Composable]:
    """The ``sp_reference`` rows (``ref``) an include follows: of its source type,
    parameter (as stored: ``patient`` is read from ``subject``, definitions.reference_rows)
    and target type."""
    where: list[sql.Composable] = []
    if include.source is not None:
        where.append(sql.SQL("ref.resource_type = {}").format(sql.Literal(include.source)))
    if include.source is not None and include.param is not None:
        where.append(reference_rows_where("ref", include.source, include.param))
    if include.target is not None:
        where.append(sql.SQL("ref.target_type = {}").format(sql.Literal(include.target)))
    return where


def _forward(include: Include, rids: list[int], visible: Visible) -> sql.Composed:
    where = [sql.SQL("ref.rid = ANY({})").format(sql.Literal(rids)), *_include_rows(include)]
    return sql.SQL(
        "SELECT {cols} FROM resource r WHERE NOT r.deleted AND {visible}"
        " AND (r.resource_type, r.id) IN (SELECT ref.target_type, ref.target_id"
        " FROM sp_reference ref WHERE {where} AND ref.target_id IS NOT NULL)"
        " ORDER BY r.rid LIMIT {limit}"
    ).format(
        cols=COLUMNS,
        visible=visible("r"),
        where=sql.SQL(" AND ").join(where),
        limit=sql.Literal(MAX_INCLUDED + 1),
    )


def _reverse(include: Include, rows: list[Row], visible: Visible) -> sql.Composed:
    types = [row[0] for row in rows]
    ids = [row[1] for row in rows]
    where = _include_rows(include)
    source = (
        sql.SQL("r.resource_type = {} AND ").format(sql.Literal(include.source))
        if include.source is not None
        else sql.SQL("")
    )
    return sql.SQL(
        "SELECT {cols} FROM resource r WHERE {source}NOT r.deleted AND {visible}"
        " AND r.rid IN (SELECT ref.rid FROM sp_reference ref"
        " JOIN unnest({types}::text[], {ids}::text[]) AS m(t, i)"
        " ON ref.target_type = m.t AND ref.target_id = m.i WHERE {where})"
        " ORDER BY r.rid LIMIT {limit}"
    ).format(
        cols=COLUMNS,
        source=source,
        visible=visible("r"),
        types=sql.Literal(types),
        ids=sql.Literal(ids),
        where=sql.SQL(" AND ").join(where) if where else sql.SQL("TRUE"),
        limit=sql.Literal(MAX_INCLUDED + 1),
    )


async def included(
    fetch: Fetch,
    matches: list[Row],
    includes: list[Include],
    *,
    visible: Visible,
    authorize: Authorize,
) -> list[StoredResource]:
    """The resources the includes add to a page of ``matches`` (rows ending with ``rid``)."""
    if not includes or not matches:
        return []
    seen = {(row[0], row[1]) for row in matches}
    found: list[Row] = []
    allowed: dict[str, bool] = {}

    def may_see(resource_type: str) -> bool:
        if resource_type not in allowed:
            try:
                authorize(resource_type)
                allowed[resource_type] = True
            except Forbidden:
                allowed[resource_type] = False
        return allowed[resource_type]

    frontier = list(matches)
    for round_number in range(MAX_ROUNDS):
        active = [inc for inc in includes if round_number == 0 or inc.iterate]
        if not active or not frontier:
            break
        added: list[Row] = []
        for include in active:
            query = (
                _reverse(include, frontier, visible)
                if include.reverse
                else _forward(include, [int(row[7]) for row in frontier], visible)
            )
            for row in await fetch(query):
                key = (row[0], row[1])
                if key in seen or not may_see(row[0]):
                    continue
                seen.add(key)
                added.append(row)
        found.extend(added)
        if len(found) >= MAX_INCLUDED:
            break
        frontier = added
    return [StoredResource.from_row(row) for row in found[:MAX_INCLUDED]]
