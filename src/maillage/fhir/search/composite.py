"""Composite parameters (``Observation?code-value-quantity=http://loinc.org|2339-0$gt5``).

A composite value is ``component$component[$...]``, each component searched with its
own parameter's rules. The index tables keep one row per value, not per repeating
element, so the engine works in two layers:

1. the AND of the component parameters' index conditions on the same resource (fast,
   indexed). When the composite's element is the resource itself
   (``Observation.code-value-*``) or cannot repeat, this is the exact answer;
2. when the element repeats (``Observation.component``, ``useContext``...), a check over
   the stored JSON (``jsonb_array_elements``) that the components match *within one
   element*, for the component shapes it can read: codes (CodeableConcept, Coding,
   code), quantities, numbers and references. A component of another shape (a string,
   a date, a ``Range``, ``%resource``) leaves that composite at layer 1: an
   approximation that may match components from two different elements.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from psycopg import sql
from psycopg.types.json import Jsonb

from maillage.errors import InvalidRequest
from maillage.fhir.definitions import SearchParam, definitions_cache, params_for
from maillage.fhir.search import conditions as c

if TYPE_CHECKING:
    from maillage.fhir.search.builder import ConditionBuilder

_PATH = re.compile(r"^[a-z][A-Za-z]*(\.[a-z][A-Za-z]*)*$")
_AS_TYPE = re.compile(r"^([a-z][A-Za-z]*)\.as\(([A-Za-z]+)\)$")
_REFINABLE_TYPES = {"token", "quantity", "number", "reference"}


@definitions_cache
def _by_url(resource_type: str) -> dict[str, SearchParam]:
    return {param.url: param for param in params_for(resource_type).values()}


def components(resource_type: str, param: SearchParam) -> list[tuple[SearchParam, str]] | None:
    """The component parameters (with their relative expressions), or None if one is not
    indexed for this type."""
    found = []
    for url, expression in param.components:
        component = _by_url(resource_type).get(url)
        if component is None or not component.indexed:
            return None
        found.append((component, _relative(param, component, expression)))
    return found or None


def _relative(param: SearchParam, component: SearchParam, declared: str) -> str:
    """The component's expression relative to the composite's element. When the
    component parameter's own expression is the element plus a path, that path: R4's
    ``DocumentReference.relationship`` declares its two component expressions swapped
    (``relatesto`` -- ``relatesTo.target`` -- with ``code``), which R5 corrects."""
    own = (component.expression or "").strip()
    element = (param.expression or "").strip()
    if element and "|" not in own and own.startswith(element + "."):
        return own.removeprefix(element + ".")
    return declared


def supports_composite(resource_type: str, param: SearchParam) -> bool:
    if param.type != "composite" or not param.expression:
        return False
    return components(resource_type, param) is not None


def composite_condition(
    builder: ConditionBuilder, resource_type: str, param: SearchParam, value: str, alias: str
) -> sql.Composable:
    found = components(resource_type, param)
    assert found is not None
    values = value.split("$")
    if len(values) != len(found):
        raise InvalidRequest(
            f"{param.code} takes {len(found)} components separated by $, not {value!r}"
        )
    parts = []
    for (component, _), part in zip(found, values, strict=True):
        condition = builder.typed(resource_type, component, None, [part], alias)
        if condition is None:
            raise InvalidRequest(f"{param.code}: component {component.code} is not searchable")
        parts.append(condition)
    refinement = _within_one_element(resource_type, param, found, values, alias)
    if refinement is not None:
        parts.append(refinement)
    parts.extend(_on_the_resource(resource_type, param, found, alias))
    return sql.SQL("({})").format(sql.SQL(" AND ").join(parts))


def _on_the_resource(
    resource_type: str, param: SearchParam, found: list[tuple[SearchParam, str]], alias: str
) -> list[sql.Composable]:
    """When the element is the resource itself, the components' own elements must be
    there: a component parameter may index more than the composite reads
    (``value-string`` also indexes ``valueCodeableConcept.text``; ``code-value-string``
    reads ``value.as(string)`` only)."""
    members = [part.strip() for part in (param.expression or "").split("|")]
    if members != [resource_type]:
        return []
    content = sql.SQL("{}.content").format(sql.Identifier(alias))
    return [
        sql.SQL("({} -> {}) IS NOT NULL").format(content, sql.Literal(key))
        for _, expression in found
        if (key := _key(expression)) is not None
    ]


def composite_missing(
    resource_type: str, param: SearchParam, is_missing: bool, alias: str
) -> sql.Composable:
    """``:missing``: a composite has a value when one element has a value for every
    component (each component's index rows, and, when the element repeats and its
    components can be read from the JSON, all of them within one element)."""
    found = components(resource_type, param)
    assert found is not None and param.expression is not None
    parts = [
        c.missing(f"sp_{component.type}", resource_type, component.code, False, alias)
        for component, _ in found
    ]
    elements = _elements(resource_type, param.expression, alias)
    keys = [_key(expression) for _, expression in found]
    if elements is not None and None not in keys:
        together = sql.SQL(" AND ").join(
            sql.SQL("(e -> {}) IS NOT NULL").format(sql.Literal(key)) for key in keys
        )
        parts.append(
            sql.SQL("EXISTS (SELECT 1 FROM jsonb_array_elements({}) e WHERE {})").format(
                elements, together
            )
        )
    parts.extend(_on_the_resource(resource_type, param, found, alias))
    present = sql.SQL("({})").format(sql.SQL(" AND ").join(parts))
    return c.negate(present) if is_missing else present


def _elements(resource_type: str, expression: str, alias: str) -> sql.Composable | None:
    """A jsonb array of the composite's elements, or None when they are the resource itself
    or cannot be read as a plain path."""
    content = sql.SQL("{}.content").format(sql.Identifier(alias))
    arrays: list[sql.Composable] = []
    members = [part.strip() for part in expression.split("|")]
    members = [m for m in members if m == resource_type or m.startswith(resource_type + ".")]
    if members == [resource_type]:
        return None
    for member in members:
        if member == resource_type:
            arrays.append(sql.SQL("jsonb_build_array({})").format(content))
            continue
        path = member.removeprefix(resource_type + ".")
        if path == member or not _PATH.match(path) or "." in path:
            return None
        arrays.append(sql.SQL("coalesce({} -> {}, '[]'::jsonb)").format(content, sql.Literal(path)))
    if not arrays:
        return None
    return sql.SQL(" || ").join(
        sql.SQL(
            "(CASE WHEN jsonb_typeof({a}) = 'array' THEN {a} ELSE jsonb_build_array({a}) END)"
        ).format(a=array)
        for array in arrays
    )


def _key(expression: str) -> str | None:
    if _PATH.match(expression) and "." not in expression:
        return expression
    match = _AS_TYPE.match(expression)
    # value.as(string) -> valueString (the JSON key of a choice element)
    return f"{match[1]}{match[2][0].upper()}{match[2][1:]}" if match else None


def _within_one_element(
    resource_type: str,
    param: SearchParam,
    found: list[tuple[SearchParam, str]],
    values: list[str],
    alias: str,
) -> sql.Composable | None:
    assert param.expression is not None
    elements = _elements(resource_type, param.expression, alias)
    if elements is None:
        return None
    checks = []
    for (component, expression), value in zip(found, values, strict=True):
        key = _key(expression)
        if key is None or component.type not in _REFINABLE_TYPES:
            return None
        checks.append(
            _element_check(component.type, sql.SQL("e -> {}").format(sql.Literal(key)), value)
        )
    return sql.SQL("EXISTS (SELECT 1 FROM jsonb_array_elements({}) e WHERE {})").format(
        elements, sql.SQL(" AND ").join(checks)
    )


def _element_check(kind: str, node: sql.Composable, value: str) -> sql.Composable:
    if kind == "token":
        return _token_check(node, value)
    if kind == "reference":
        return sql.SQL("({} ->> 'reference') LIKE {}").format(
            node, sql.Literal("%" + c.like_escape(value))
        )
    if kind == "number":
        return c.number_where(value, sql.SQL("({} #>> '{{}}')::numeric").format(node))
    number, system, unit = c.quantity_parts(value)
    check = c.number_where(number, sql.SQL("({} ->> 'value')::numeric").format(node))
    if unit:
        check = sql.SQL("{} AND ({n} ->> 'code' = {u} OR {n} ->> 'unit' = {u})").format(
            check, n=node, u=sql.Literal(unit)
        )
    if system:
        check = sql.SQL("{} AND {} ->> 'system' = {}").format(check, node, sql.Literal(system))
    return sql.SQL("({})").format(check)


def _token_check(node: sql.Composable, value: str) -> sql.Composable:
    coding: dict[str, Any] = {}
    if "|" in value:
        system, code = value.split("|", 1)
        if system:
            coding["system"] = system
        if code:
            coding["code"] = code
    else:
        coding["code"] = value
    if not coding:
        return sql.SQL("TRUE")
    plain = coding.get("code")
    return sql.SQL(
        "(coalesce({n} -> 'coding', '[]'::jsonb) @> {many} OR {n} @> {one}"
        " OR ({plain}::text IS NOT NULL AND {n} #>> '{{}}' = {plain}))"
    ).format(
        n=node,
        many=Jsonb([coding]),
        one=Jsonb(coding),
        plain=sql.Literal(plain if "system" not in coding else None),
    )
