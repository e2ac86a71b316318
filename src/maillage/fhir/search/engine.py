"""Search and history over the store, with the access filter inside every query."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql

from maillage.errors import InvalidRequest, QueryTimeout, UnsupportedParameter
from maillage.fhir.definitions import SearchParam, params_for
from maillage.fhir.model import SearchPage, StoredResource
from maillage.fhir.search import conditions

Visible = Callable[[str], sql.Composable]

_COLUMNS = sql.SQL(
    "r.resource_type, r.id, r.version_id, r.last_updated, r.deleted, r.method, r.content"
)
# Result-shaping parameters the engine understands.
_CONTROL = {"_count", "_offset", "_sort", "_total", "_format", "_pretty"}
_TABLE_BY_TYPE = {
    "token": "sp_token",
    "string": "sp_string",
    "date": "sp_date",
    "reference": "sp_reference",
    "uri": "sp_uri",
    "number": "sp_number",
    "quantity": "sp_quantity",
}
_SORTABLE = {"_id": sql.SQL("r.id"), "_lastUpdated": sql.SQL("r.last_updated")}


class SearchEngine:
    def __init__(
        self, *, default_count: int = 50, max_count: int = 1000, timeout_ms: int = 10_000
    ) -> None:
        self.default_count = default_count
        self.max_count = max_count
        self.timeout_ms = timeout_ms

    def _count(self, raw: str | None) -> int:
        if raw is None:
            return self.default_count
        if not raw.isdigit():
            raise InvalidRequest(f"_count must be a non-negative integer, not {raw!r}")
        return min(int(raw), self.max_count)

    async def search(
        self,
        conn: psycopg.AsyncConnection,
        resource_type: str | None,
        params: list[tuple[str, str]],
        *,
        strict: bool,
        visible: Visible,
    ) -> SearchPage:
        if resource_type is None:
            raise UnsupportedParameter("whole-system search is not supported yet; search a type")
        controls = {name: value for name, value in params if name in _CONTROL}
        where, used = self._conditions(resource_type, params, strict)
        count = self._count(controls.get("_count"))
        offset = int(controls["_offset"]) if controls.get("_offset", "").isdigit() else 0
        order = self._order(controls.get("_sort"))
        filters = sql.SQL(" AND ").join(
            [
                sql.SQL("r.resource_type = {}").format(sql.Literal(resource_type)),
                sql.SQL("NOT r.deleted"),
                visible("r"),
                *where,
            ]
        )
        query = sql.SQL(
            "SELECT {cols} FROM resource r WHERE {filters} ORDER BY {order}"
            " LIMIT {limit} OFFSET {offset}"
        ).format(
            cols=_COLUMNS,
            filters=filters,
            order=order,
            limit=sql.Literal(count + 1),
            offset=sql.Literal(offset),
        )
        total_mode = controls.get("_total", "accurate")
        rows = await self._fetch(conn, query)
        total = None
        if total_mode != "none":
            if offset == 0 and len(rows) <= count:
                total = len(rows)
            else:
                count_query = sql.SQL("SELECT count(*) FROM resource r WHERE {}").format(filters)
                total = int((await self._fetch(conn, count_query))[0][0])
        used.extend(
            (name, value) for name, value in params if name in ("_count", "_sort", "_total")
        )
        return SearchPage(
            entries=[StoredResource.from_row(row) for row in rows[:count]],
            total=total,
            offset=offset,
            count=count,
            has_next=count > 0 and len(rows) > count,
            used_params=used,
        )

    async def _fetch(
        self, conn: psycopg.AsyncConnection, query: sql.Composed
    ) -> list[tuple[Any, ...]]:
        try:
            await conn.execute(
                sql.SQL("SET LOCAL statement_timeout = {}").format(sql.Literal(self.timeout_ms))
            )
            cursor = await conn.execute(query)
            return list(await cursor.fetchall())
        except psycopg.errors.QueryCanceled as error:
            raise QueryTimeout(
                "the search ran past its time limit; add more selective parameters"
            ) from error

    def _order(self, raw: str | None) -> sql.Composable:
        if not raw:
            return sql.SQL("r.rid")
        keys = []
        for key in raw.split(","):
            descending = key.startswith("-")
            name = key.lstrip("-")
            column = _SORTABLE.get(name)
            if column is None:
                raise UnsupportedParameter(f"sorting by {name!r} is not supported yet")
            keys.append(sql.SQL("{} DESC").format(column) if descending else column)
        keys.append(sql.SQL("r.rid"))
        return sql.SQL(", ").join(keys)

    def _conditions(
        self, resource_type: str, params: list[tuple[str, str]], strict: bool
    ) -> tuple[list[sql.Composable], list[tuple[str, str]]]:
        known = params_for(resource_type)
        where: list[sql.Composable] = []
        used: list[tuple[str, str]] = []
        for name, value in params:
            if name in _CONTROL:
                continue
            code, _, modifier = name.partition(":")
            condition = self._condition(
                resource_type, known.get(code), code, modifier or None, value
            )
            if condition is None:
                if strict:
                    raise UnsupportedParameter(
                        f"search parameter {name!r} is not supported for {resource_type}"
                    )
                continue
            where.append(condition)
            used.append((name, value))
        return where, used

    def _condition(
        self,
        resource_type: str,
        param: SearchParam | None,
        code: str,
        modifier: str | None,
        value: str,
    ) -> sql.Composable | None:
        alternatives = [part for part in _split_commas(value)]
        if code == "_id":
            return sql.SQL("r.id = ANY({})").format(sql.Literal(alternatives))
        if code == "_lastUpdated":
            return _any([conditions.last_updated_condition(part) for part in alternatives])
        if param is None or not param.indexed:
            return None
        table = _TABLE_BY_TYPE[param.type]
        if modifier == "missing":
            if value not in ("true", "false"):
                raise InvalidRequest(":missing takes true or false")
            return conditions.missing(table, resource_type, code, value == "true")
        if param.type == "token":
            if modifier not in (None, "not"):
                return None
            if modifier == "not":
                # :not with several values means "none of them"
                return sql.SQL(" AND ").join(
                    conditions.token_condition(resource_type, param, part, "not")
                    for part in alternatives
                )
            return _any(
                [
                    conditions.token_condition(resource_type, param, part, None)
                    for part in alternatives
                ]
            )
        if param.type == "string" and modifier in (None, "exact", "contains"):
            return _any(
                [
                    conditions.string_condition(resource_type, param, part, modifier)
                    for part in alternatives
                ]
            )
        if param.type == "date" and modifier is None:
            return _any(
                [conditions.date_condition(resource_type, param, part) for part in alternatives]
            )
        if param.type == "reference" and (
            modifier is None or modifier == "identifier" or modifier[:1].isupper()
        ):
            return _any(
                [
                    conditions.reference_condition(resource_type, param, part, modifier)
                    for part in alternatives
                ]
            )
        if param.type == "uri" and modifier in (None, "below", "above"):
            return _any(
                [
                    conditions.uri_condition(resource_type, param, part, modifier)
                    for part in alternatives
                ]
            )
        if param.type == "number" and modifier is None:
            return _any(
                [conditions.number_condition(resource_type, param, part) for part in alternatives]
            )
        if param.type == "quantity" and modifier is None:
            return _any(
                [conditions.quantity_condition(resource_type, param, part) for part in alternatives]
            )
        return None

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


def _any(parts: list[sql.Composable]) -> sql.Composable:
    if len(parts) == 1:
        return parts[0]
    return sql.SQL("({})").format(sql.SQL(" OR ").join(parts))


def _split_commas(value: str) -> list[str]:
    """Split on commas not escaped with a backslash; unescape ``\\,``."""
    parts, current, escaped = [], [], False
    for char in value:
        if escaped:
            current.append(char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == ",":
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return parts
