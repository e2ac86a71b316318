"""Walk a parsed JSON resource against the compiled schemas, collecting located issues.

The walk checks what FHIR's JSON format and the R4B models define for each element:
unknown keys, array versus single value, null and empty values, required elements,
choice groups (``value[x]``: at most one, one when required), primitive lexical forms,
required-binding codes, nested datatypes and backbone elements, primitive extensions
(``_name``) and the resources held in ``contained``, ``Bundle.entry.resource`` and
``Parameters.parameter.resource``, which are dispatched on their ``resourceType``.

Beyond what fhir.resources checks, the walk applies these rules of the specification
(the models accept each; ``tests/fhir/validation/test_contract.py`` pins them): no
empty arrays, no nulls except as placeholders in primitive arrays (aligned with an
extension in ``_name``), ``_name`` arrays as long as ``name``'s, no empty elements nor
elements with only an id (ele-1), no Python field names (``class_fhir``,
``active__ext``, ``fhir_comments``), no ``resourceType`` inside a datatype, objects
for complex elements (not JSON text), a ``resourceType`` on every nested resource and
an R4 one, no resources contained in a contained resource (dom-2), the codes of
required bindings.

Problems are ``(expression, problem)`` pairs; the expression is FHIRPath-like
(``Patient.name[0].family``, ``Patient.multipleBirth[x]`` for a choice group). While
walking, the place of a node is kept as a chain of ``(parent, key, index)`` tuples,
spelled out only when a problem is found there.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeAlias

from maillage.fhir.validation_schema.compiler import (
    COMPLEX,
    PRIMITIVE,
    RESOURCE,
    Rule,
    TypeSchema,
    child_schema,
)
from maillage.fhir.validation_schema.primitives import json_name

Problems = list[tuple[str, str]]
# The resource type at the root, then (parent, key, index in the key's array or None).
Place: TypeAlias = "str | tuple[Place, str, int | None]"
NULL = "null is not permitted here (omit the element)"


def spell(place: Place, key: str | None = None) -> str:
    """``(("Patient", "name", 0), "family", None)`` -> ``Patient.name[0].family``."""
    parts: list[str] = [] if key is None else [f".{key}"]
    while type(place) is tuple:
        place, name, index = place
        parts.append(f".{name}" if index is None else f".{name}[{index}]")
    assert isinstance(place, str)
    return place + "".join(reversed(parts))


class Walker:
    """Validates resources; ``resource_schema`` names the resource types it knows."""

    __slots__ = ("resource_schema",)

    def __init__(self, resource_schema: Callable[[str], TypeSchema | None]) -> None:
        # resource type name -> its TypeSchema, or None for a type the hub does not know
        self.resource_schema = resource_schema

    def resource(self, node: dict[str, Any], schema: TypeSchema, root: str) -> Problems:
        problems: Problems = []
        self._object(node, schema, root, problems)
        return problems

    def _object(self, node: dict[str, Any], schema: TypeSchema, at: Place, out: Problems) -> None:
        rules = schema.rules
        groups: list[str] | None = None
        for key, value in node.items():
            rule = rules.get(key)
            if rule is None:
                if key != "resourceType" or not schema.is_resource:
                    unknown = f"unknown element {key!r} is not permitted in {schema.name}"
                    out.append((spell(at, key), unknown))
                continue
            if rule.plain:
                problem = rule.check(value)  # type: ignore[misc]
                if problem is not None:
                    out.append((spell(at, key), NULL if value is None else problem))
                continue
            if value is None:
                out.append((spell(at, key), NULL))
                continue
            if rule.choice is not None:
                if groups is None:
                    groups = [rule.choice]
                else:
                    groups.append(rule.choice)
            if rule.is_list:
                if type(value) is not list:
                    out.append((spell(at, key), f"expected an array, got {json_name(value)}"))
                elif not value:
                    out.append((spell(at, key), "an array must not be empty (omit the element)"))
                else:
                    self._list(node, rule, value, at, out)
                continue
            kind = rule.kind
            if kind == PRIMITIVE:
                problem = rule.check(value)  # type: ignore[misc]
                if problem is None and rule.enum is not None and value not in rule.enum:
                    problem = _not_in_enum(value, rule)
                if problem is not None:
                    out.append((spell(at, key), problem))
            elif type(value) is list:
                out.append((spell(at, key), "expected a single value, got an array"))
            elif kind == COMPLEX:
                child = rule.schema or child_schema(rule)
                if type(value) is dict and (len(value) > 1 or (value and "id" not in value)):
                    self._object(value, child, (at, key, None), out)
                else:
                    self._element(value, child, (at, key, None), out)
            elif kind == RESOURCE:
                self._resource(value, (at, key, None), out, contained=False)
            else:
                self._extension(value, rule, rule.sibling in node, (at, key, None), out)
        if schema.required:
            for key, sibling in schema.required:
                if key not in node and (sibling is None or not _has_extension(node.get(sibling))):
                    out.append((spell(at, key), f"missing required element {key!r}"))
        if groups is not None and len(groups) > 1 and len(set(groups)) != len(groups):
            for group in sorted({group for group in groups if groups.count(group) > 1}):
                present = [key for key in schema.choices[group] if key in node]
                many = f"only one of {', '.join(present)} may be present"
                out.append((spell(at, f"{group}[x]"), many))
        for group in schema.required_choices:
            if not any(node.get(key) is not None for key in schema.choices[group]):
                needed = f"one of {', '.join(schema.choices[group])} is required"
                out.append((spell(at, f"{group}[x]"), needed))

    def _list(
        self, node: dict[str, Any], rule: Rule, items: list[Any], at: Place, out: Problems
    ) -> None:
        key, kind = rule.key, rule.kind
        if kind == PRIMITIVE:
            check, enum = rule.check, rule.enum
            for index, item in enumerate(items):
                if item is None:
                    if not _extension_at(node.get(rule.sibling or ""), index):
                        lonely = f"null is only permitted with an extension in {rule.sibling}"
                        out.append((spell((at, key, index)), lonely))
                    continue
                problem = check(item)  # type: ignore[misc]
                if problem is None and enum is not None and item not in enum:
                    problem = _not_in_enum(item, rule)
                if problem is not None:
                    out.append((spell((at, key, index)), problem))
        elif kind == COMPLEX:
            schema = rule.schema or child_schema(rule)
            for index, item in enumerate(items):
                if type(item) is dict and (len(item) > 1 or (item and "id" not in item)):
                    self._object(item, schema, (at, key, index), out)
                else:
                    self._element(item, schema, (at, key, index), out)
        elif kind == RESOURCE:
            contained = key == "contained"
            for index, item in enumerate(items):
                self._resource(item, (at, key, index), out, contained=contained)
        else:
            values = node.get(rule.sibling or "")
            if type(values) is list and len(values) != len(items):
                count = f"{key} must have as many items as {rule.sibling} ({len(values)})"
                out.append((spell(at, key), count))
            for index, item in enumerate(items):
                if item is None:
                    if type(values) is not list:
                        out.append((spell((at, key, index)), f"null without a {rule.sibling}"))
                    continue
                has_value = type(values) is list and index < len(values)
                has_value = has_value and values[index] is not None  # type: ignore[index]
                self._extension(item, rule, has_value, (at, key, index), out)

    def _element(self, item: Any, schema: TypeSchema, at: Place, out: Problems) -> None:
        if type(item) is not dict:
            out.append((spell(at), f"expected an object ({schema.name}), got {json_name(item)}"))
            return
        if len(item) < 2 and (not item or "id" in item):
            # ele-1: an element has a value or children (an id alone is not a child)
            out.append((spell(at), "an element must have a value or child elements (ele-1)"))
        self._object(item, schema, at, out)

    def _extension(self, item: Any, rule: Rule, has_value: bool, at: Place, out: Problems) -> None:
        """``_name``: the id and extensions of a primitive value."""
        if type(item) is not dict:
            out.append((spell(at), f"expected an object, got {json_name(item)}"))
            return
        if "extension" not in item:
            if not has_value:
                # ele-1: without its value, the primitive needs an extension
                lonely = f"{rule.key} without a {rule.sibling} value needs extensions"
                out.append((spell(at), lonely))
            elif "id" not in item:
                out.append((spell(at), f"{rule.key} needs an id or extensions"))
        self._object(item, rule.schema or child_schema(rule), at, out)

    def _resource(self, item: Any, at: Place, out: Problems, *, contained: bool) -> None:
        if type(item) is not dict:
            out.append((spell(at), f"expected a resource object, got {json_name(item)}"))
            return
        resource_type = item.get("resourceType")
        if type(resource_type) is not str:
            out.append((spell(at, "resourceType"), "a resource must name its resourceType"))
            return
        schema = self.resource_schema(resource_type)
        if schema is None:
            unknown = f"unknown resource type {resource_type!r}"
            out.append((spell(at, "resourceType"), unknown))
            return
        if contained and "contained" in item:
            nested = "a contained resource must not contain resources (dom-2)"
            out.append((spell(at, "contained"), nested))
        self._object(item, schema, at, out)


def _not_in_enum(value: Any, rule: Rule) -> str:
    codes = ", ".join(sorted(rule.enum or ()))
    if len(codes) > 200:
        codes = codes[:200] + "..."
    return f"code {value!r} is not in the required value set of {rule.key} ({codes})"


def _has_extension(value: Any) -> bool:
    return type(value) is dict and bool(value.get("extension"))


def _extension_at(values: Any, index: int) -> bool:
    return type(values) is list and index < len(values) and type(values[index]) is dict
