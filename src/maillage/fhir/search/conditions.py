"""One search parameter value -> one SQL condition over a ``resource`` row.

The row is named by ``alias`` (``r`` for the searched resource; chains and ``_has``
name their own rows). Each typed index table is reached through
``alias.rid IN (SELECT rid FROM sp_x ...)``, so PostgreSQL can drive the query from
whichever side is more selective.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation

from psycopg import sql

from maillage.errors import InvalidRequest
from maillage.fhir.definitions import reference_rows
from maillage.fhir.indexing.normalize import date_range, normalize_string, token_hash
from maillage.fhir.indexing.values import split_reference
from maillage.fhir.validation_schema import primitives
from maillage.terminology import Expansion

PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap")
_PREFIXED = re.compile(r"^(eq|ne|gt|lt|ge|le|sa|eb|ap)(?=[\d-])")
# Derived index keys: token display texts live in sp_string under "<param>:text", and
# identifier types in sp_token under "<param>:of-type" (code = "<type code>|<value>").
TEXT_SUFFIX = ":text"
OF_TYPE_SUFFIX = ":of-type"

Condition = sql.Composable


def split_commas(value: str) -> list[str]:
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


def split_prefix(value: str) -> tuple[str, str]:
    match = _PREFIXED.match(value)
    return (match[1], value[2:]) if match else ("eq", value)


# The value indexes of these tables are led by this key of (resource_type, param)
# (migration 0013): a lookup must state it, in the index's own words, to use them.
KEYED_TABLES = frozenset({"sp_string", "sp_date", "sp_number", "sp_quantity"})
PARAM_KEY = sql.SQL("hashtextextended(x.resource_type || '|' || x.param, 0)")


def in_index(
    table: str,
    resource_type: str | None,
    param: str,
    where: sql.Composable,
    alias: str = "r",
) -> Condition:
    """``alias`` has an index row of ``param`` in ``table`` meeting ``where`` (over ``x``).

    ``resource_type`` None: rows of any type (whole-system search on common parameters).
    A reference parameter read from another's rows (``patient`` from ``subject``) is
    looked up there, with the target type it stands for.
    """
    type_filter: sql.Composable = sql.SQL("")
    rows: sql.Composable = sql.SQL("x.param = {}").format(sql.Literal(param))
    if table == "sp_reference" and resource_type is not None:
        rows = reference_rows_where("x", resource_type, param)
    if resource_type is not None:
        type_filter = sql.SQL("x.resource_type = {} AND ").format(sql.Literal(resource_type))
        if table in KEYED_TABLES:
            type_filter = sql.SQL("{}{} = hashtextextended({}, 0) AND ").format(
                type_filter, PARAM_KEY, sql.Literal(f"{resource_type}|{param}")
            )
    return sql.SQL(
        "{alias}.rid IN (SELECT x.rid FROM {table} x WHERE {type_filter}{rows} AND ({where}))"
    ).format(
        alias=sql.Identifier(alias),
        table=sql.Identifier(table),
        type_filter=type_filter,
        rows=rows,
        where=where,
    )


def reference_rows_where(alias: str, resource_type: str, code: str) -> sql.Composable:
    """The ``sp_reference`` rows (over ``alias``) of a reference parameter: its own, or
    those of the parameter it is read from with the target type it stands for
    (``patient`` = ``subject`` rows to a Patient, definitions.reference_rows)."""
    param, target_type = reference_rows(resource_type, code)
    rows = sql.SQL("{}.param = {}").format(sql.Identifier(alias), sql.Literal(param))
    if target_type is None:
        return rows
    return sql.SQL("{} AND {}.target_type = {}").format(
        rows, sql.Identifier(alias), sql.Literal(target_type)
    )


def negate(condition: Condition) -> Condition:
    return sql.SQL("NOT ({})").format(condition)


def missing(
    table: str, resource_type: str | None, param: str, is_missing: bool, alias: str = "r"
) -> Condition:
    present = in_index(table, resource_type, param, sql.SQL("TRUE"), alias)
    return negate(present) if is_missing else present


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


# search.html (prefixes): "the recommended value for the approximation is 10% of the
# stated value (or for a date, 10% of the gap between now and the date)".
AP_SHARE = Decimal("0.1")


def approximate_dates(low: datetime, high: datetime) -> tuple[datetime, datetime]:
    """The searched range widened, on both sides, by 10 % of the gap between now and it."""
    gap = abs(datetime.now(UTC) - low) / 10
    return low - gap, high + gap


def date_condition(resource_type: str, code: str, value: str, alias: str = "r") -> Condition:
    prefix, raw = split_prefix(value)
    low, high = parse_date(raw)
    if prefix == "ap":
        low, high = approximate_dates(low, high)
    where = range_compare(prefix, sql.SQL("x.low"), sql.SQL("x.high"), low, high)
    return in_index("sp_date", resource_type, code, where, alias)


def last_updated_condition(value: str, alias: str = "r") -> Condition:
    prefix, raw = split_prefix(value)
    low, high = parse_date(raw)
    if prefix == "ap":
        low, high = approximate_dates(low, high)
    column = sql.SQL("{}.last_updated").format(sql.Identifier(alias))
    return range_compare(prefix, column, column, low, high)


def id_condition(values: list[str], alias: str = "r") -> Condition:
    return sql.SQL("{}.id = ANY({})").format(sql.Identifier(alias), sql.Literal(values))


def like_escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def string_condition(
    resource_type: str, code: str, value: str, modifier: str | None, alias: str = "r"
) -> Condition:
    if modifier == "exact":
        where: sql.Composable = sql.SQL("x.value_exact = {}").format(sql.Literal(value))
    else:
        norm = like_escape(normalize_string(value))
        pattern = f"%{norm}%" if modifier == "contains" else f"{norm}%"
        where = sql.SQL("x.value_norm LIKE {}").format(sql.Literal(pattern))
    return in_index("sp_string", resource_type, code, where, alias)


def token_text_condition(resource_type: str, code: str, value: str, alias: str = "r") -> Condition:
    """``:text``: starts-with (case/accent-insensitive) on CodeableConcept.text, Coding.display
    or Identifier.type.text, indexed under ``<code>:text``."""
    return string_condition(resource_type, code + TEXT_SUFFIX, value, None, alias)


def token_where(
    resource_types: Sequence[str], code: str, value: str
) -> tuple[sql.Composable, bool]:
    """The ``x`` condition of a token value over the hashes of every type given; and
    whether it needs the rows' type filtered (no: hashes already carry the type)."""
    if "|" in value:
        system, token = value.split("|", 1)
        if token == "":
            return sql.SQL("x.system = {}").format(sql.Literal(system)), True
        hashes = [token_hash(t, code, system or None, token) for t in resource_types]
        column = sql.SQL("x.system_code_hash")
    else:
        hashes = [token_hash(t, code, value) for t in resource_types]
        column = sql.SQL("x.code_hash")
    if len(hashes) == 1:
        return sql.SQL("{} = {}").format(column, sql.Literal(hashes[0])), False
    return sql.SQL("{} = ANY({})").format(column, sql.Literal(hashes)), False


def token_condition(
    resource_type: str, code: str, value: str, modifier: str | None, alias: str = "r"
) -> Condition:
    where, needs_type = token_where([resource_type], code, value)
    if needs_type:
        condition = in_index("sp_token", resource_type, code, where, alias)
    else:
        condition = hashed_in_index(where, alias)
    return negate(condition) if modifier == "not" else condition


def hashed_in_index(where: sql.Composable, alias: str = "r") -> Condition:
    """``alias`` has a token row whose hash meets ``where``. A hash already carries the
    resource type and the parameter (``token_hash(type, param, ...)``), so the rows' type
    and param are not filtered again: PostgreSQL answers from the ``(hash, rid)`` index
    alone (an index-only scan) instead of visiting every matching heap row."""
    return sql.SQL("{alias}.rid IN (SELECT x.rid FROM sp_token x WHERE {where})").format(
        alias=sql.Identifier(alias), where=where
    )


def token_in_condition(
    resource_type: str,
    code: str,
    members: Expansion,
    codes_of: Callable[[str], frozenset[str] | None],
    alias: str = "r",
) -> Condition:
    """``:in``: a token row of ``code`` whose coding is a member of the expanded value set.

    Listed members become ``system_code_hash = ANY(...)`` (index-only, like a plain
    token search), each also hashed without a system: a row without one is a ``code``
    element (``Patient.gender``), whose system is implied by its binding. A whole-system
    member is listed from the shipped code system when it holds every code of it (the
    index has no hash of the system alone); otherwise (SNOMED CT, LOINC...) it is read as
    ``x.system = S`` over the parameter's rows, which no index serves: it reads every
    row of the parameter.
    """
    hashes: set[int] = set()

    def add(pairs: Iterable[tuple[str, str]]) -> None:
        for system, token in pairs:
            hashes.add(token_hash(resource_type, code, system or None, token))
            hashes.add(token_hash(resource_type, code, None, token))

    add(members.enumerated())
    scanned: list[tuple[str, frozenset[str]]] = []
    for system, excepted in members.whole_systems():
        known = codes_of(system)
        if known is None:
            scanned.append((system, excepted))
        else:
            add((system, token) for token in sorted(known - excepted))
    parts: list[Condition] = []
    if hashes:
        where = sql.SQL("x.system_code_hash = ANY({})").format(sql.Literal(sorted(hashes)))
        parts.append(hashed_in_index(where, alias))
    for system, excepted in scanned:
        where = sql.SQL("x.system = {}").format(sql.Literal(system))
        if excepted:
            where = sql.SQL("{} AND NOT (x.code = ANY({}))").format(
                where, sql.Literal(sorted(excepted))
            )
        parts.append(in_index("sp_token", resource_type, code, where, alias))
    if not parts:
        return sql.SQL("FALSE")
    return sql.SQL("({})").format(sql.SQL(" OR ").join(parts))


def list_condition(
    types: Sequence[str], items: Iterable[tuple[str, str]], alias: str = "r"
) -> Condition:
    """``_list``: ``alias`` is one of the resources ``items`` (type, id) of the types given."""
    by_type: dict[str, set[str]] = {}
    for item_type, item_id in items:
        if item_type in types:
            by_type.setdefault(item_type, set()).add(item_id)
    if not by_type:
        return sql.SQL("FALSE")
    parts = [
        sql.SQL("({a}.resource_type = {t} AND {ids})").format(
            a=sql.Identifier(alias), t=sql.Literal(item_type), ids=id_condition(sorted(ids), alias)
        )
        for item_type, ids in sorted(by_type.items())
    ]
    return sql.SQL("({})").format(sql.SQL(" OR ").join(parts))


def of_type_condition(resource_type: str, code: str, value: str, alias: str = "r") -> Condition:
    """``identifier:of-type=<type system>|<type code>|<value>``."""
    parts = value.split("|")
    if len(parts) != 3 or not parts[1] or not parts[2]:
        raise InvalidRequest(":of-type takes system|code|value (the type's system and code)")
    system, type_code, identifier_value = parts
    hashed = token_hash(
        resource_type, code + OF_TYPE_SUFFIX, system or None, f"{type_code}|{identifier_value}"
    )
    where = sql.SQL("x.system_code_hash = {}").format(sql.Literal(hashed))
    return in_index("sp_token", resource_type, code + OF_TYPE_SUFFIX, where, alias)


def reference_condition(
    resource_type: str, code: str, value: str, modifier: str | None, alias: str = "r"
) -> Condition:
    if modifier == "identifier":
        # Identifiers are indexed as system|value; a bare value matches any system.
        if "|" not in value:
            where: sql.Composable = _url_row("LIKE", "%|" + like_escape(value))
        else:
            where = _url_row("=", value)
        return in_index("sp_reference", resource_type, code, where, alias)
    target_type, target_id, url = split_reference(value)
    if modifier and modifier[:1].isupper():
        target_type, target_id = modifier, value if target_id is None else target_id
    if target_id is None and url is not None and primitives.check_id(url) is None:
        # A bare id (a value that cannot be one, urn:uuid:..., is a URL). No URL is kept
        # beside it: an OR with the rows kept by URL makes PostgreSQL drive the search
        # from the other parameters (a compartment search went from 3 to 240 ms at 1M).
        target_id, url = url, None
    if target_id is not None:
        where = sql.SQL("x.target_id = {}").format(sql.Literal(target_id))
        if target_type:
            where = sql.SQL("{} AND x.target_type = {}").format(where, sql.Literal(target_type))
        if url is not None and not modifier:
            # An absolute URL also finds a canonical stored as it is (a canonical element,
            # QuestionnaireResponse.questionnaire, is indexed as its URL, without an id).
            where = sql.SQL("(({}) OR ({}))").format(where, _url_row("=", url))
    else:
        where = _url_row("=", url)
    return in_index("sp_reference", resource_type, code, where, alias)


def _url_row(operator: str, pattern: str | None) -> sql.Composable:
    """A reference row kept by its URL (an identifier, a canonical, a URL naming no
    Type/id): it has no target id, and the partial index sp_reference_untargeted_idx
    serves it."""
    return sql.SQL("x.target_id IS NULL AND x.target_url {} {}").format(
        sql.SQL(operator), sql.Literal(pattern)
    )


def uri_condition(
    resource_type: str | None, code: str, value: str, modifier: str | None, alias: str = "r"
) -> Condition:
    literal = sql.Literal(value)
    if modifier == "below":
        where: sql.Composable = sql.SQL("x.uri LIKE {}").format(
            sql.Literal(like_escape(value) + "%")
        )
    elif modifier == "above":
        # the stored uri is a prefix of the value searched
        where = sql.SQL("x.uri = left({}, length(x.uri))").format(literal)
    else:
        where = sql.SQL("x.uri = {}").format(literal)
    return in_index("sp_uri", resource_type, code, where, alias)


def decimal(raw: str) -> Decimal:
    try:
        number = Decimal(raw)
    except InvalidOperation as error:
        raise InvalidRequest(f"{raw!r} is not a number") from error
    if not number.is_finite():
        raise InvalidRequest(f"{raw!r} is not a number")
    return number


def precision_range(number: Decimal) -> tuple[Decimal, Decimal]:
    """The implicit range of a number by its significant digits (FHIR: 100 = [99.5, 100.5))."""
    exponent = number.as_tuple().exponent
    half = Decimal(5) * Decimal(10) ** (int(exponent) - 1) if isinstance(exponent, int) else 0
    return number - half, number + half


def number_where(value: str, column: sql.Composable) -> sql.Composable:
    """A number or quantity value (search.html, number): ``eq``/``ne`` use the range
    the value's precision implies, upper bound excluded ("100" is [99.5, 100.5)); ``ap``
    that range or within 10 % of the value;
    ``gt``/``lt``/``ge``/``le`` compare with the value exactly ("gt100": greater than
    exactly 100); ``sa``/``eb`` are after/before the whole range."""
    prefix, raw = split_prefix(value)
    exact = decimal(raw)
    low, high = precision_range(exact)
    templates = {
        "eq": "({column} >= {low} AND {column} < {high})",
        "ne": "NOT ({column} >= {low} AND {column} < {high})",
        # within 10 % of the value, or within the range its precision implies
        "ap": "(({column} >= {near_low} AND {column} <= {near_high})"
        " OR ({column} >= {low} AND {column} < {high}))",
        "gt": "({column} > {exact})",
        "lt": "({column} < {exact})",
        "ge": "({column} >= {exact})",
        "le": "({column} <= {exact})",
        "sa": "({column} >= {high})",
        "eb": "({column} < {low})",
    }
    margin = abs(exact) * AP_SHARE
    return sql.SQL(templates[prefix]).format(
        column=column,
        low=sql.Literal(low),
        high=sql.Literal(high),
        exact=sql.Literal(exact),
        near_low=sql.Literal(exact - margin),
        near_high=sql.Literal(exact + margin),
    )


def number_condition(resource_type: str, code: str, value: str, alias: str = "r") -> Condition:
    where = number_where(value, sql.SQL("x.value"))
    return in_index("sp_number", resource_type, code, where, alias)


def quantity_parts(value: str) -> tuple[str, str | None, str | None]:
    """``[prefix]number|system|code`` -> (prefixed number, system, code)."""
    number, _, unit = value.partition("|")
    if not unit:
        return number, None, None
    system, _, code = unit.rpartition("|")
    return number, system or None, code or None


def quantity_condition(resource_type: str, code: str, value: str, alias: str = "r") -> Condition:
    number, system, unit = quantity_parts(value)
    where = number_where(number, sql.SQL("x.value"))
    if unit:
        where = sql.SQL("{} AND x.code = {}").format(where, sql.Literal(unit))
    if system:
        where = sql.SQL("{} AND x.system = {}").format(where, sql.Literal(system))
    return in_index("sp_quantity", resource_type, code, where, alias)
