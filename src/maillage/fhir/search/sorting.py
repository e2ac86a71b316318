"""``_sort``: several keys, ``-`` for descending, resources without a value last.

A resource may hold several values of a parameter: ascending order uses its smallest
value, descending its largest (a date's range: the low bound ascending, the high bound
descending), as most servers do. The internal key ``rid`` breaks ties, so the order is
total and a keyset cursor (``paging``) pages through it without duplicates or gaps, even
when rows are inserted or deleted between pages.
"""

from __future__ import annotations

from psycopg import sql

from maillage.errors import UnsupportedParameter
from maillage.fhir.definitions import search_param
from maillage.fhir.search.conditions import reference_rows_where
from maillage.fhir.search.paging import SortKey, order_clause

# type -> (table, value ascending, value descending, SQL type of the value)
_SORT_COLUMNS = {
    "string": ("sp_string", "x.value_norm", "x.value_norm", "text"),
    "token": ("sp_token", "x.code", "x.code", "text"),
    "date": ("sp_date", "x.low", "x.high", "timestamptz"),
    "number": ("sp_number", "x.value", "x.value", "numeric"),
    "quantity": ("sp_quantity", "x.value", "x.value", "numeric"),
    "uri": ("sp_uri", "x.uri", "x.uri", "text"),
    "reference": (
        "sp_reference",
        "coalesce(x.target_type || '/' || x.target_id, x.target_url)",
        "coalesce(x.target_type || '/' || x.target_id, x.target_url)",
        "text",
    ),
}
SORTABLE_TYPES = tuple(_SORT_COLUMNS)
_RESOURCE_COLUMNS = {"_id": ("r.id", "text"), "_lastUpdated": ("r.last_updated", "timestamptz")}


def sort_keys(
    resource_type: str | None, raw: str | None, *, strict: bool
) -> tuple[list[SortKey], list[str]]:
    """The keys of the order over the row ``r`` (ending with the unique ``rid``), and the
    ``_sort`` keys understood (for the self link)."""
    keys: list[SortKey] = []
    used: list[str] = []
    for key in (raw or "").split(","):
        key = key.strip()
        if not key:
            continue
        descending = key.startswith("-")
        name = key.lstrip("-")
        found = _key_expression(resource_type, name, descending)
        if found is None:
            if strict:
                raise UnsupportedParameter(f"sorting by {name!r} is not supported")
            continue
        keys.append(SortKey(found[0], found[1], descending=descending))
        used.append(key)
    if resource_type is None:
        keys.append(SortKey(sql.SQL("r.resource_type"), "text"))
    keys.append(SortKey(sql.SQL("r.rid"), "bigint"))
    return keys, used


def order_by(
    resource_type: str | None, raw: str | None, *, strict: bool
) -> tuple[sql.Composable, list[str]]:
    """The ORDER BY list over the row ``r``, and the keys understood (for the self link)."""
    keys, used = sort_keys(resource_type, raw, strict=strict)
    return order_clause(keys), used


def _key_expression(
    resource_type: str | None, name: str, descending: bool
) -> tuple[sql.Composable, str] | None:
    column = _RESOURCE_COLUMNS.get(name)
    if column is not None:
        return sql.SQL(column[0]), column[1]
    if resource_type is None:
        return None
    param = search_param(resource_type, name)
    if param is None or not param.indexed or param.type not in _SORT_COLUMNS:
        return None
    table, ascending_value, descending_value, sql_type = _SORT_COLUMNS[param.type]
    aggregate = "max" if descending else "min"
    value = descending_value if descending else ascending_value
    rows: sql.Composable = (
        reference_rows_where("x", resource_type, name)
        if param.type == "reference"
        else sql.SQL("x.param = {}").format(sql.Literal(name))
    )
    expression = sql.SQL(
        "(SELECT {aggregate}({value}) FROM {table} x WHERE x.rid = r.rid AND {rows})"
    ).format(
        aggregate=sql.SQL(aggregate),
        value=sql.SQL(value),
        table=sql.Identifier(table),
        rows=rows,
    )
    return expression, sql_type
