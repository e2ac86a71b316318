"""One search parameter value -> one SQL condition over the ``resource`` row ``r``.

Each typed index table is reached through ``r.rid IN (SELECT rid FROM sp_x ...)``,
so PostgreSQL can drive the query from whichever side is more selective.
"""

from __future__ import annotations

import re
from datetime import datetime
from decimal import Decimal, InvalidOperation

from psycopg import sql

from maillage.errors import InvalidRequest
from maillage.fhir.definitions import SearchParam
from maillage.fhir.indexing.normalize import date_range, normalize_string, token_hash
from maillage.fhir.indexing.values import split_reference

PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap")
_PREFIXED = re.compile(r"^(eq|ne|gt|lt|ge|le|sa|eb|ap)(?=[\d-])")

Condition = sql.Composable


def split_prefix(value: str) -> tuple[str, str]:
    match = _PREFIXED.match(value)
    return (match[1], value[2:]) if match else ("eq", value)


def _in_index(table: str, resource_type: str, param: str, where: sql.Composable) -> Condition:
    return sql.SQL(
        "r.rid IN (SELECT x.rid FROM {table} x WHERE x.resource_type = {rtype}"
        " AND x.param = {param} AND {where})"
    ).format(
        table=sql.Identifier(table),
        rtype=sql.Literal(resource_type),
        param=sql.Literal(param),
        where=where,
    )


def missing(table: str, resource_type: str, param: str, is_missing: bool) -> Condition:
    present = _in_index(table, resource_type, param, sql.SQL("TRUE"))
    return sql.SQL("NOT ({})").format(present) if is_missing else present


def range_compare(
    prefix: str, low: sql.Composable, high: sql.Composable, value_low: object, value_high: object
) -> Condition:
    """Compare a stored range [low, high] with a searched range, per the FHIR prefix."""
    vl, vh = sql.Literal(value_low), sql.Literal(value_high)
    templates = {
        "eq": "({low} >= {vl} AND {high} <= {vh})",
        "ne": "NOT ({low} >= {vl} AND {high} <= {vh})",
        "gt": "({high} > {vh})",
        "lt": "({low} < {vl})",
        "ge": "({high} >= {vl})",
        "le": "({low} <= {vh})",
        "sa": "({low} > {vh})",
        "eb": "({high} < {vl})",
        "ap": "({low} <= {vh} AND {high} >= {vl})",
    }
    return sql.SQL(templates[prefix]).format(low=low, high=high, vl=vl, vh=vh)


def parse_date(value: str) -> tuple[datetime, datetime]:
    bounds = date_range(value)
    if bounds is None:
        raise InvalidRequest(f"{value!r} is not a FHIR date or dateTime")
    return bounds


def date_condition(resource_type: str, param: SearchParam, value: str) -> Condition:
    prefix, raw = split_prefix(value)
    low, high = parse_date(raw)
    where = range_compare(prefix, sql.SQL("x.low"), sql.SQL("x.high"), low, high)
    return _in_index("sp_date", resource_type, param.code, where)


def last_updated_condition(value: str) -> Condition:
    prefix, raw = split_prefix(value)
    low, high = parse_date(raw)
    column = sql.SQL("r.last_updated")
    return range_compare(prefix, column, column, low, high)


def string_condition(
    resource_type: str, param: SearchParam, value: str, modifier: str | None
) -> Condition:
    if modifier == "exact":
        where: sql.Composable = sql.SQL("x.value_exact = {}").format(sql.Literal(value))
    else:
        norm = normalize_string(value).replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        pattern = f"%{norm}%" if modifier == "contains" else f"{norm}%"
        where = sql.SQL("x.value_norm LIKE {}").format(sql.Literal(pattern))
    return _in_index("sp_string", resource_type, param.code, where)


def token_condition(
    resource_type: str, param: SearchParam, value: str, modifier: str | None
) -> Condition:
    if "|" in value:
        system, code = value.split("|", 1)
        if code == "":
            where: sql.Composable = sql.SQL("x.system = {}").format(sql.Literal(system))
        else:
            hashed = token_hash(resource_type, param.code, system or None, code)
            where = sql.SQL("x.system_code_hash = {}").format(sql.Literal(hashed))
    else:
        hashed = token_hash(resource_type, param.code, value)
        where = sql.SQL("x.code_hash = {}").format(sql.Literal(hashed))
    condition = _in_index("sp_token", resource_type, param.code, where)
    return sql.SQL("NOT ({})").format(condition) if modifier == "not" else condition


def reference_condition(
    resource_type: str, param: SearchParam, value: str, modifier: str | None
) -> Condition:
    if modifier == "identifier":
        where: sql.Composable = sql.SQL("x.target_url = {}").format(sql.Literal(value))
        return _in_index("sp_reference", resource_type, param.code, where)
    target_type, target_id, url = split_reference(value)
    if modifier and modifier[:1].isupper():
        target_type, target_id = modifier, value if target_id is None else target_id
    if target_id is None and url is not None and "/" not in url:
        target_id = url
    if target_id is not None:
        where = sql.SQL("x.target_id = {}").format(sql.Literal(target_id))
        if target_type:
            where = sql.SQL("{} AND x.target_type = {}").format(where, sql.Literal(target_type))
    else:
        where = sql.SQL("x.target_url = {}").format(sql.Literal(url))
    return _in_index("sp_reference", resource_type, param.code, where)


def uri_condition(
    resource_type: str, param: SearchParam, value: str, modifier: str | None
) -> Condition:
    literal = sql.Literal(value)
    if modifier == "below":
        escaped = value.replace("%", "\\%").replace("_", "\\_")
        where: sql.Composable = sql.SQL("x.uri LIKE {}").format(sql.Literal(escaped + "%"))
    elif modifier == "above":
        where = sql.SQL("{} LIKE x.uri || '%'").format(literal)
    else:
        where = sql.SQL("x.uri = {}").format(literal)
    return _in_index("sp_uri", resource_type, param.code, where)


def _decimal(raw: str) -> Decimal:
    try:
        return Decimal(raw)
    except InvalidOperation as error:
        raise InvalidRequest(f"{raw!r} is not a number") from error


def _precision_range(number: Decimal) -> tuple[Decimal, Decimal]:
    """The implicit range of a number by its significant digits (FHIR: 100 = [99.5, 100.5))."""
    exponent = number.as_tuple().exponent
    half = Decimal(5) * Decimal(10) ** (int(exponent) - 1) if isinstance(exponent, int) else 0
    return number - half, number + half


def number_condition(resource_type: str, param: SearchParam, value: str) -> Condition:
    prefix, raw = split_prefix(value)
    low, high = _precision_range(_decimal(raw))
    column = sql.SQL("x.value")
    return _in_index(
        "sp_number", resource_type, param.code, range_compare(prefix, column, column, low, high)
    )


def quantity_condition(resource_type: str, param: SearchParam, value: str) -> Condition:
    prefix, rest = split_prefix(value)
    number, _, unit = rest.partition("|")
    low, high = _precision_range(_decimal(number))
    column = sql.SQL("x.value")
    where = range_compare(prefix, column, column, low, high)
    if unit:
        system, _, code = unit.rpartition("|")
        where = sql.SQL("{} AND x.code = {}").format(where, sql.Literal(code))
        if system:
            where = sql.SQL("{} AND x.system = {}").format(where, sql.Literal(system))
    return _in_index("sp_quantity", resource_type, param.code, where)
