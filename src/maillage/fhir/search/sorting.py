"""``_sort``: several keys, ``-`` for descending, resources without a value last.

A resource may hold several values of a parameter: ascending order uses its smallest
value, descending its largest (a date's range: the low bound ascending, the high bound
descending), as most servers do. The internal key ``rid`` breaks ties, so paging is
stable for a given data set.
"""

from __future__ import annotations

from psycopg import sql

from maillage.errors import UnsupportedParameter
from maillage.fhir.definitions import params_for

# type -> (table, value ascending, value descending)
_SORT_COLUMNS = {
    "string": ("sp_string", "x.value_norm", "x.value_norm"),
    "token": ("sp_token", "x.code", "x.code"),
    "date": ("sp_date", "x.low", "x.high"),
    "number": ("sp_number", "x.value", "x.value"),
    "quantity": ("sp_quantity", "x.value", "x.value"),
    "uri": ("sp_uri", "x.uri", "x.uri"),
    "reference": (
        "sp_reference",
        "coalesce(x.target_type || '/' || x.target_id, x.target_url)",
        "coalesce(x.target_type || '/' || x.target_id, x.target_url)",
    ),
}
SORTABLE_TYPES = tuple(_SORT_COLUMNS)
_RESOURCE_COLUMNS = {"_id": "r.id", "_lastUpdated": "r.last_updated"}


def order_by(
    resource_type: str | None, raw: str | None, *, strict: bool
) -> tuple[sql.Composable, list[str]]:
    """The ORDER BY list over the row ``r``, and the keys understood (for the self link)."""
    keys: list[sql.Composable] = []
    used: list[str] = []
    for key in (raw or "").split(","):
        key = key.strip()
        if not key:
            continue
        descending = key.startswith("-")
        name = key.lstrip("-")
        expression = _key_expression(resource_type, name, descending)
        if expression is None:
            if strict:
                raise UnsupportedParameter(f"sorting by {name!r} is not supported")
            continue
        direction = "DESC" if descending else "ASC"
        keys.append(sql.SQL("{} {} NULLS LAST").format(expression, sql.SQL(direction)))
        used.append(key)
    if resource_type is None:
        keys.append(sql.SQL("r.resource_type"))
    keys.append(sql.SQL("r.rid"))
    return sql.SQL(", ").join(keys), used


def _key_expression(
    resource_type: str | None, name: str, descending: bool
) -> sql.Composable | None:
    column = _RESOURCE_COLUMNS.get(name)
    if column is not None:
        return sql.SQL(column)
    if resource_type is None:
        return None
    param = params_for(resource_type).get(name)
    if param is None or not param.indexed or param.type not in _SORT_COLUMNS:
        return None
    table, ascending_value, descending_value = _SORT_COLUMNS[param.type]
    aggregate = "max" if descending else "min"
    value = descending_value if descending else ascending_value
    return sql.SQL(
        "(SELECT {aggregate}({value}) FROM {table} x WHERE x.rid = r.rid AND x.param = {param})"
    ).format(
        aggregate=sql.SQL(aggregate),
        value=sql.SQL(value),
        table=sql.Identifier(table),
        param=sql.Literal(name),
    )
