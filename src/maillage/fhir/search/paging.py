"""Keyset paging: an opaque ``_page`` cursor instead of an offset.

A page link carries the sort key values of the row it continues from (the last row of
the page for ``next``, the first for ``previous``), and the next query asks for the rows
strictly after (or before) those values in the search's total order. Rows inserted or
deleted between two fetches therefore never shift a page: nothing is served twice and
nothing is skipped, unlike ``OFFSET``.

The cursor is base64url JSON. It only holds sort values of a row the caller was shown,
each checked against its key's SQL type and sent as a typed literal, so a forged cursor
can neither inject SQL nor reveal anything the access filter hides.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from psycopg import sql

from maillage.errors import InvalidRequest

SQL_TYPES = ("text", "timestamptz", "numeric", "bigint", "boolean")


@dataclass(frozen=True)
class SortKey:
    """One key of a total order: an SQL expression over the row, its SQL type, and its
    direction. Nulls sort last in the direction asked."""

    expression: sql.Composable
    sql_type: str
    descending: bool = False


@dataclass(frozen=True)
class Cursor:
    values: tuple[Any, ...]
    backward: bool


def order_clause(keys: Sequence[SortKey], *, backward: bool = False) -> sql.Composable:
    """ORDER BY list; ``backward`` is the exact reverse (to read the page before a row)."""
    parts = []
    for key in keys:
        descending = key.descending != backward
        nulls = "FIRST" if backward else "LAST"
        parts.append(
            sql.SQL("{} {} NULLS {}").format(
                key.expression, sql.SQL("DESC" if descending else "ASC"), sql.SQL(nulls)
            )
        )
    return sql.SQL(", ").join(parts)


def _typed(value: Any, sql_type: str) -> sql.Composable:
    return sql.SQL("{}::{}").format(sql.Literal(value), sql.SQL(sql_type))


def after(keys: Sequence[SortKey], cursor: Cursor) -> sql.Composable:
    """Rows strictly after the cursor's row in the order (strictly before if backward)."""
    alternatives: list[sql.Composable] = []
    equal_so_far: list[sql.Composable] = []
    for key, value in zip(keys, cursor.values, strict=True):
        descending = key.descending != cursor.backward
        nulls_first = cursor.backward
        if value is None:
            beyond: sql.Composable | None = (
                sql.SQL("{} IS NOT NULL").format(key.expression) if nulls_first else None
            )
            same = sql.SQL("{} IS NULL").format(key.expression)
        else:
            literal = _typed(value, key.sql_type)
            comparison = sql.SQL("{} {} {}").format(
                key.expression, sql.SQL("<" if descending else ">"), literal
            )
            beyond = (
                comparison
                if nulls_first
                else sql.SQL("({} OR {} IS NULL)").format(comparison, key.expression)
            )
            same = sql.SQL("{} = {}").format(key.expression, literal)
        if beyond is not None:
            alternatives.append(sql.SQL(" AND ").join([*equal_so_far, beyond]))
        equal_so_far.append(same)
    if not alternatives:
        return sql.SQL("FALSE")
    return sql.SQL("({})").format(
        sql.SQL(" OR ").join(sql.SQL("({})").format(part) for part in alternatives)
    )


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    return value


def encode(values: Sequence[Any], *, backward: bool = False) -> str:
    payload = {"v": [_plain(value) for value in values], **({"b": 1} if backward else {})}
    raw = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _checked(value: Any, sql_type: str) -> Any:
    if value is None:
        return None
    if sql_type == "text" and isinstance(value, str):
        return value
    if sql_type == "bigint" and isinstance(value, int) and not isinstance(value, bool):
        return value
    if sql_type == "boolean" and isinstance(value, bool):
        return value
    if sql_type == "numeric" and isinstance(value, str):
        try:
            return Decimal(value)
        except InvalidOperation:
            pass
    if sql_type == "timestamptz" and isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            pass
        else:
            if moment.tzinfo is not None:
                return moment
    raise ValueError(f"{value!r} is not a {sql_type}")


def decode(token: str, keys: Sequence[SortKey]) -> Cursor:
    """The cursor of a ``_page`` value, checked against the keys of the search's order."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        payload = json.loads(raw)
        values = payload["v"]
        if not isinstance(values, list) or len(values) != len(keys):
            raise ValueError("the cursor does not match the search's sort keys")
        checked = tuple(
            _checked(value, key.sql_type) for value, key in zip(values, keys, strict=True)
        )
        return Cursor(checked, backward=bool(payload.get("b")))
    except (binascii.Error, UnicodeDecodeError, ValueError, KeyError, TypeError) as error:
        raise InvalidRequest(
            "_page is not a cursor of this search (follow the bundle's links as given)"
        ) from error


def key_columns(keys: Sequence[SortKey]) -> sql.Composable:
    """The keys' values as extra columns of a page query (to build the cursors from)."""
    return sql.SQL(", ").join(key.expression for key in keys)
