"""Composite parameters in the conformance oracle (search.html, composite): each
component matched by its own parameter's rules, within one element of the composite's
expression, evaluated by fhirpathpy element by element."""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any

from tests.fhir.search.oracle_candidates import pick
from tests.fhir.search.oracle_rules import (
    alternatives,
    escape,
    has_searchable,
    match_one,
    quantities,
    references,
    strings,
    tokens,
    value_spans,
)

if TYPE_CHECKING:
    from tests.fhir.search.oracle import Oracle, Param, Query

# One element: the values of each component in it.
Element = list[list[Any]]


def components(oracle: Oracle, param: Param) -> list[tuple[Param, str]]:
    """Each component's parameter, and its expression relative to the element (see
    DECISIONS["relationship"])."""
    from tests.fhir.search.oracle import oracle_expression

    found = []
    for url, expression in param.components:
        component = oracle.by_url[(param.resource_type, url)]
        own = component.expression.strip()
        if own.startswith(param.expression + ".") and "|" not in own:
            expression = own.removeprefix(param.expression + ".")
        found.append((component, oracle_expression(expression)))
    return found


def elements(oracle: Oracle, param: Param) -> dict[str, list[Element]]:
    """id -> the composite's elements in the resource (each: its components' values)."""
    from tests.fhir.search.oracle import compiled, scoped, union_members

    cache: dict[tuple[str, str], dict[str, list[Element]]] = oracle.__dict__.setdefault(
        "_composite_elements", {}
    )
    key = (param.resource_type, param.code)
    if key in cache:
        return cache[key]
    parts = components(oracle, param)
    members = union_members(scoped(param.expression, param.resource_type))
    found: dict[str, list[Element]] = {}
    for resource in oracle.sample[param.resource_type]:
        resource_elements: list[Element] = []
        for member in members:
            if member == param.resource_type:
                paths = [member]
            else:
                count = compiled(f"({member}).count()")(resource, {})[0]
                paths = [f"({member})[{index}]" for index in range(count)]
            for path in paths:
                resource_elements.append(
                    [list(compiled(f"{path}.select({expr})")(resource, {})) for _, expr in parts]
                )
        found[resource["id"]] = resource_elements
    cache[key] = found
    return found


def composite_ids(oracle: Oracle, param: Param, modifier: str | None, value: str) -> frozenset[str]:
    kinds = [component.type for component, _ in components(oracle, param)]
    found = elements(oracle, param)
    if modifier == "missing":
        return frozenset(
            rid
            for rid, resource_elements in found.items()
            if (value == "true")
            != any(
                all(has_searchable(kind, vals) for kind, vals in zip(kinds, element, strict=True))
                for element in resource_elements
            )
        )
    assert modifier is None, modifier
    wanted = [alternative.split("$") for alternative in alternatives(value)]
    return frozenset(
        rid
        for rid, resource_elements in found.items()
        if any(
            len(parts) == len(kinds)
            and all(
                match_one(kind, None, part, vals)
                for kind, part, vals in zip(kinds, parts, element, strict=True)
            )
            for parts in wanted
            for element in resource_elements
        )
    )


def component_value(kind: str, values: list[Any], variant: int) -> str | None:
    """A search value for one component, from its values in an element."""
    if kind == "token":
        pairs = [pair for value in values for pair in tokens(value)]
        if not pairs:
            return None
        system, code = pairs[0]
        return escape(code) if variant % 2 or not system else f"{escape(system)}|{escape(code)}"
    if kind == "quantity":
        found = [q for value in values for q in quantities(value)]
        if not found:
            return None
        number, unit_system, unit = found[0]
        text = format(number, "f")
        prefix = ("", "ge", "lt", "ap", "gt")[variant % 5]
        return (
            f"{prefix}{text}|{unit_system or ''}|{unit}" if variant % 2 == 0 else f"{prefix}{text}"
        )
    if kind == "date":
        texts = [v if isinstance(v, str) else v.get("start") for v in values]
        texts = [text for text in texts if isinstance(text, str)]
        if not texts or not any(True for v in values for _ in value_spans(v)):
            return None
        return ("", "ge", "lt", "ap")[variant % 4] + texts[0][:10]
    if kind == "string":
        texts = [text for value in values for text in strings(value)]
        return escape(texts[0][: max(3, len(texts[0]) // 2)].strip()) if texts else None
    if kind == "reference":
        literal = [(t, i) for value in values for t, i, _ in references(value) if i]
        return f"{literal[0][0]}/{literal[0][1]}" if literal else None
    return None


def queries(oracle: Oracle, rng: random.Random) -> list[Query]:
    from tests.fhir.search.oracle import Query

    out: list[Query] = []
    for (resource_type, code), param in sorted(oracle.params.items()):
        if param.type != "composite":
            continue
        kinds = [component.type for component, _ in components(oracle, param)]
        found = elements(oracle, param)
        complete = [
            (rid, element)
            for rid, resource_elements in found.items()
            for element in resource_elements
            if all(has_searchable(kind, vals) for kind, vals in zip(kinds, element, strict=True))
        ]
        values: list[tuple[str | None, str]] = [("missing", "false")]
        if complete:
            values.append(("missing", "true"))
        for variant, index in enumerate(pick(list(range(len(complete))), rng, 4)):
            element = complete[index][1]
            found_parts = [
                component_value(k, v, variant) for k, v in zip(kinds, element, strict=True)
            ]
            parts = [part for part in found_parts if part is not None]
            if len(parts) < len(found_parts):
                continue
            values.append((None, "$".join(parts)))
            values.append((None, "$".join([f"{parts[0]}0", *parts[1:]])))  # near miss
        several = [e for e in found.values() if len(e) > 1]
        for resource_elements in several[:2]:
            first, second = resource_elements[0], resource_elements[-1]
            found_crossed = [
                component_value(kinds[0], first[0], 1),
                *(component_value(k, v, 1) for k, v in zip(kinds[1:], second[1:], strict=True)),
            ]
            crossed = [part for part in found_crossed if part is not None]
            if len(crossed) == len(found_crossed):  # first element's code, last element's value
                values.append((None, "$".join(crossed)))
        if len(values) > 4:
            values.append((None, f"{values[2][1]},{values[4][1]}"))  # comma: OR
        for modifier, value in values:
            name = f"{code}:{modifier}" if modifier else code
            expected = oracle.ids(resource_type, name, value)
            out.append(Query(resource_type, name, value, "composite", modifier, expected))
    return out
