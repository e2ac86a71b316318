"""A search parameter (name and value, as sent) -> a SQL condition over a ``resource`` row.

Handles modifiers, chains (``subject:Patient.organization.name``) and reverse chains
(``_has:Observation:patient:code``), nested to any depth. Every resource a chain or a
``_has`` goes through is filtered by the access policy inside the SQL (``visible``), so
a hidden resource can never make another one match, and its type is authorised
(``authorize``) like a search of that type.

``condition`` returns None for a parameter or modifier the engine does not support
(lenient handling drops it; strict handling answers 400); malformed values raise
``InvalidRequest``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from itertools import count

from psycopg import sql

from maillage.errors import InvalidRequest
from maillage.fhir.definitions import SearchParam, reference_rows, resource_types, search_param
from maillage.fhir.search import conditions as c
from maillage.fhir.search.composite import (
    composite_condition,
    composite_missing,
    supports_composite,
)
from maillage.fhir.search.lookups import Lookups

Visible = Callable[[str], sql.Composable]
Authorize = Callable[[str], None]
Condition = sql.Composable

TABLE_BY_TYPE = {
    "token": "sp_token",
    "string": "sp_string",
    "date": "sp_date",
    "reference": "sp_reference",
    "uri": "sp_uri",
    "number": "sp_number",
    "quantity": "sp_quantity",
}
# Modifiers understood per parameter type (``:[type]`` on references). Read by the
# CapabilityStatement.
MODIFIERS: dict[str, tuple[str, ...]] = {
    "token": ("missing", "not", "text", "of-type", "in", "not-in"),
    "string": ("missing", "exact", "contains"),
    "date": ("missing",),
    "reference": ("missing", "identifier", "[type]"),
    "uri": ("missing", "below", "above"),
    "number": ("missing",),
    "quantity": ("missing",),
    "composite": ("missing",),
}
# Parameters of every resource the engine answers without a definition of its own.
COMMON = ("_id", "_lastUpdated", "_tag", "_profile", "_security", "_source")
MAX_DEPTH = 4


def any_of(parts: Sequence[Condition]) -> Condition:
    if len(parts) == 1:
        return parts[0]
    return sql.SQL("({})").format(sql.SQL(" OR ").join(parts))


def all_of(parts: Sequence[Condition]) -> Condition:
    if len(parts) == 1:
        return parts[0]
    return sql.SQL("({})").format(sql.SQL(" AND ").join(parts))


def searchable(resource_type: str, param: SearchParam | None) -> bool:
    if param is None:
        return False
    return param.indexed or supports_composite(resource_type, param)


class ConditionBuilder:
    def __init__(
        self,
        visible: Visible,
        authorize: Authorize | None = None,
        lookups: Lookups | None = None,
    ) -> None:
        self.visible = visible
        self.authorize = authorize or (lambda resource_type: None)
        # stored ValueSets and Lists read beforehand (``lookups.gather``); without them,
        # the shipped value sets only and no List
        self.lookups = lookups or Lookups()
        self._aliases = count(1)

    def _alias(self, kind: str) -> str:
        return f"{kind}{next(self._aliases)}"

    def condition(
        self, resource_type: str, name: str, value: str, alias: str = "r", depth: int = 0
    ) -> Condition | None:
        if depth > MAX_DEPTH:
            raise InvalidRequest(f"chains and _has nest at most {MAX_DEPTH} levels")
        if name.startswith("_has:"):
            return self._has(resource_type, name, value, alias, depth)
        head, dot, rest = name.partition(".")
        if dot:
            return self._chain(resource_type, head, rest, value, alias, depth)
        code, _, modifier = name.partition(":")
        return self.simple(resource_type, code, modifier or None, value, alias)

    # -- chains -------------------------------------------------------------------------
    def _chain(
        self, resource_type: str, head: str, rest: str, value: str, alias: str, depth: int
    ) -> Condition | None:
        code, _, type_modifier = head.partition(":")
        param = search_param(resource_type, code)
        if param is None or param.type != "reference" or not param.indexed:
            return None
        if type_modifier:
            if type_modifier not in resource_types():
                return None
            candidates: Sequence[str] = (type_modifier,)
        else:
            candidates = [t for t in param.targets if t in resource_types()]
        ref, target = self._alias("ref"), self._alias("t")
        branches = []
        for target_type in candidates:
            inner = self.condition(target_type, rest, value, target, depth + 1)
            if inner is None:
                continue
            self.authorize(target_type)
            branches.append(
                sql.SQL("({t}.resource_type = {type} AND {inner})").format(
                    t=sql.Identifier(target), type=sql.Literal(target_type), inner=inner
                )
            )
        if not branches:
            return None
        # The join on target_type keeps the branches' types: a parameter read from
        # another's rows (reference_rows) needs no more.
        rows_param, _ = reference_rows(resource_type, code)
        return sql.SQL(
            "{alias}.rid IN (SELECT {ref}.rid FROM sp_reference {ref} JOIN resource {t}"
            " ON {t}.resource_type = {ref}.target_type AND {t}.id = {ref}.target_id"
            " WHERE {ref}.resource_type = {rtype} AND {ref}.param = {code}"
            " AND NOT {t}.deleted AND {visible} AND {branches})"
        ).format(
            alias=sql.Identifier(alias),
            ref=sql.Identifier(ref),
            t=sql.Identifier(target),
            rtype=sql.Literal(resource_type),
            code=sql.Literal(rows_param),
            visible=self.visible(target),
            branches=any_of(branches),
        )

    def _has(
        self, resource_type: str, name: str, value: str, alias: str, depth: int
    ) -> Condition | None:
        parts = name.split(":", 3)
        if len(parts) != 4 or not all(parts[1:]):
            raise InvalidRequest(f"{name!r}: _has takes _has:Type:reference:parameter")
        _, source_type, ref_code, rest = parts
        if source_type not in resource_types():
            return None
        ref_param = search_param(source_type, ref_code)
        if ref_param is None or ref_param.type != "reference" or not ref_param.indexed:
            return None
        if ref_param.targets and resource_type not in ref_param.targets:
            return None
        source, ref = self._alias("s"), self._alias("ref")
        inner = self.condition(source_type, rest, value, source, depth + 1)
        if inner is None:
            return None
        self.authorize(source_type)
        rows_param, rows_target = reference_rows(source_type, ref_code)
        if rows_target is not None and rows_target != resource_type:
            return sql.SQL("FALSE")  # e.g. _has:Observation:patient:... on a Group
        return sql.SQL(
            "{alias}.id IN (SELECT {ref}.target_id FROM sp_reference {ref} JOIN resource {s}"
            " ON {s}.rid = {ref}.rid WHERE {ref}.resource_type = {stype} AND {ref}.param = {code}"
            " AND {ref}.target_type = {rtype} AND {s}.resource_type = {stype}"
            " AND NOT {s}.deleted AND {visible} AND {inner})"
        ).format(
            alias=sql.Identifier(alias),
            ref=sql.Identifier(ref),
            s=sql.Identifier(source),
            stype=sql.Literal(source_type),
            code=sql.Literal(rows_param),
            rtype=sql.Literal(resource_type),
            visible=self.visible(source),
            inner=inner,
        )

    # -- one parameter of the resource itself --------------------------------------------
    def simple(
        self, resource_type: str, code: str, modifier: str | None, value: str, alias: str = "r"
    ) -> Condition | None:
        alternatives = c.split_commas(value)
        if code == "_id":
            if modifier is not None:
                return None
            return c.id_condition(alternatives, alias)
        if code == "_lastUpdated":
            if modifier is not None:
                return None
            return any_of([c.last_updated_condition(part, alias) for part in alternatives])
        if code == "_list":
            return self._list([resource_type], modifier, alternatives, alias)
        param = search_param(resource_type, code)
        if param is None or not searchable(resource_type, param):
            return None
        if param.type == "composite":
            if modifier == "missing":
                if value not in ("true", "false"):
                    raise InvalidRequest(":missing takes true or false")
                return composite_missing(resource_type, param, value == "true", alias)
            if modifier is not None:
                return None
            return any_of(
                [
                    composite_condition(self, resource_type, param, part, alias)
                    for part in alternatives
                ]
            )
        if modifier == "missing":
            if value not in ("true", "false"):
                raise InvalidRequest(":missing takes true or false")
            table = TABLE_BY_TYPE[param.type]
            return c.missing(table, resource_type, code, value == "true", alias)
        return self.typed(resource_type, param, modifier, alternatives, alias)

    def typed(
        self,
        resource_type: str,
        param: SearchParam,
        modifier: str | None,
        alternatives: list[str],
        alias: str,
    ) -> Condition | None:
        code, kind = param.code, param.type
        if kind == "token":
            if modifier == "not":
                # :not with several values means "none of them"
                return all_of(
                    [c.token_condition(resource_type, code, v, "not", alias) for v in alternatives]
                )
            if modifier == "text":
                return any_of(
                    [c.token_text_condition(resource_type, code, v, alias) for v in alternatives]
                )
            if modifier == "of-type":
                return any_of(
                    [c.of_type_condition(resource_type, code, v, alias) for v in alternatives]
                )
            if modifier in ("in", "not-in"):
                members = [
                    c.token_in_condition(
                        resource_type,
                        code,
                        self.lookups.expansion(url),
                        self.lookups.codes_of,
                        alias,
                    )
                    for url in alternatives
                ]
                if modifier == "in":
                    return any_of(members)
                # :not-in, like :not: no coding of the resource in any of the value sets
                return all_of([c.negate(member) for member in members])
            if modifier is None:
                return any_of(
                    [c.token_condition(resource_type, code, v, None, alias) for v in alternatives]
                )
            return None
        if kind == "string" and modifier in (None, "exact", "contains"):
            return any_of(
                [c.string_condition(resource_type, code, v, modifier, alias) for v in alternatives]
            )
        if kind == "reference" and (
            modifier is None
            or modifier == "identifier"
            or (modifier in resource_types() and (not param.targets or modifier in param.targets))
        ):
            return any_of(
                [
                    c.reference_condition(resource_type, code, v, modifier, alias)
                    for v in alternatives
                ]
            )
        if kind == "uri" and modifier in (None, "below", "above"):
            return any_of(
                [c.uri_condition(resource_type, code, v, modifier, alias) for v in alternatives]
            )
        if modifier is not None:
            return None
        if kind == "date":
            return any_of([c.date_condition(resource_type, code, v, alias) for v in alternatives])
        if kind == "number":
            return any_of([c.number_condition(resource_type, code, v, alias) for v in alternatives])
        if kind == "quantity":
            return any_of(
                [c.quantity_condition(resource_type, code, v, alias) for v in alternatives]
            )
        return None

    def _list(
        self, types: Sequence[str], modifier: str | None, list_ids: list[str], alias: str
    ) -> Condition | None:
        """``_list=<id>[,<id>]``: resources of ``types`` a List's entries reference."""
        if modifier is not None:
            return None
        items = [item for list_id in list_ids for item in self.lookups.list_items(list_id)]
        return c.list_condition(types, items, alias)

    # -- whole-system search -----------------------------------------------------------
    def common(
        self, types: Sequence[str], name: str, value: str, alias: str = "r"
    ) -> Condition | None:
        """A parameter common to all resources, over rows of any of ``types``."""
        code, _, modifier_text = name.partition(":")
        modifier = modifier_text or None
        if code == "_list":
            return self._list(types, modifier, c.split_commas(value), alias)
        if code not in COMMON:
            return None
        alternatives = c.split_commas(value)
        if code in ("_id", "_lastUpdated"):
            return self.simple(types[0] if types else "Patient", code, modifier, value, alias)
        kind = "token" if code in ("_tag", "_security") else "uri"
        if modifier == "missing":
            if value not in ("true", "false"):
                raise InvalidRequest(":missing takes true or false")
            return c.missing(TABLE_BY_TYPE[kind], None, code, value == "true", alias)
        if kind == "uri":
            if modifier not in (None, "below", "above"):
                return None
            return any_of([c.uri_condition(None, code, v, modifier, alias) for v in alternatives])
        if modifier not in (None, "not"):
            return None
        parts = []
        for part in alternatives:
            where, _ = c.token_where(types, code, part)
            found = c.in_index("sp_token", None, code, where, alias)
            parts.append(c.negate(found) if modifier == "not" else found)
        return all_of(parts) if modifier == "not" else any_of(parts)
