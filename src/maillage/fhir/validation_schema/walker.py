"""Walk a parsed JSON resource against the compiled schemas, collecting located issues.

The walk checks what FHIR's JSON format and the R4B models define for each element:
unknown keys, array versus single value, null and empty values, required elements,
choice groups (``value[x]``: at most one, one when required), primitive lexical forms,
required-binding codes, nested datatypes and backbone elements, primitive extensions
(``_name``) and the resources held in ``contained``, ``Bundle.entry.resource`` and
``Parameters.parameter.resource``, which are dispatched on their ``resourceType``.

Issues are ``(expression, problem)`` pairs; the expression is FHIRPath-like
(``Patient.name[0].family``, ``Patient.multipleBirth[x]`` for a choice group).
"""

from __future__ import annotations

from typing import Any

from maillage.fhir.validation_schema.compiler import (
    COMPLEX,
    PRIMITIVE,
    PRIMITIVE_EXT,
    RESOURCE,
    Rule,
    TypeSchema,
    child_schema,
)
from maillage.fhir.validation_schema.primitives import json_name

Problems = list[tuple[str, str]]


class Walker:
    """Validates resources; ``resource_schema`` names the resource types it knows."""

    __slots__ = ("resource_schema",)

    def __init__(self, resource_schema: Any) -> None:
        # resource type name -> its TypeSchema, or None for a type the hub does not know
        self.resource_schema = resource_schema

    def resource(self, node: dict[str, Any], schema: TypeSchema, path: str) -> Problems:
        problems: Problems = []
        self._object(node, schema, path, problems)
        return problems

    def _object(self, node: dict[str, Any], schema: TypeSchema, path: str, out: Problems) -> None:
        rules = schema.rules
        groups: list[str] | None = None
        for key, value in node.items():
            rule = rules.get(key)
            if rule is None:
                if key != "resourceType" or not schema.is_resource:
                    out.append(
                        (f"{path}.{key}", f"unknown element {key!r} is not permitted in {schema.name}")
                    )
                continue
            if rule.plain:
                problem = rule.check(value)  # type: ignore[misc]
                if problem is not None:
                    if value is None:
                        problem = "null is not permitted here (omit the element)"
                    out.append((f"{path}.{key}", problem))
                continue
            if value is None:
                out.append((f"{path}.{key}", "null is not permitted here (omit the element)"))
                continue
            if rule.choice is not None:
                if groups is None:
                    groups = [rule.choice]
                else:
                    groups.append(rule.choice)
            if rule.is_list:
                if type(value) is not list:
                    out.append((f"{path}.{key}", f"expected an array, got {json_name(value)}"))
                elif not value:
                    out.append((f"{path}.{key}", "an array must not be empty (omit the element)"))
                else:
                    self._list(node, rule, value, f"{path}.{key}", out)
                continue
            kind = rule.kind
            if kind == PRIMITIVE:
                problem = rule.check(value)  # type: ignore[misc]
                if problem is None and rule.enum is not None and value not in rule.enum:
                    problem = _not_in_enum(value, rule)
                if problem is not None:
                    out.append((f"{path}.{key}", problem))
            elif type(value) is list:
                out.append((f"{path}.{key}", "expected a single value, got an array"))
            elif kind == COMPLEX:
                schema_ = rule.schema or child_schema(rule)
                if type(value) is dict and (len(value) > 1 or (value and "id" not in value)):
                    self._object(value, schema_, f"{path}.{key}", out)
                else:
                    self._element(value, schema_, f"{path}.{key}", out)
            elif kind == RESOURCE:
                self._resource(value, f"{path}.{key}", out, contained=False)
            else:
                self._extension(value, rule, rule.sibling in node, f"{path}.{key}", out)
        if schema.required:
            for key, sibling in schema.required:
                if key not in node and (sibling is None or not _has_extension(node.get(sibling))):
                    out.append((f"{path}.{key}", f"missing required element {key!r}"))
        if groups is not None and len(groups) > 1 and len(set(groups)) != len(groups):
            for group in sorted({group for group in groups if groups.count(group) > 1}):
                present = [key for key in schema.choices[group] if key in node]
                out.append(
                    (f"{path}.{group}[x]", f"only one of {', '.join(present)} may be present")
                )
        for group in schema.required_choices:
            if not any(node.get(key) is not None for key in schema.choices[group]):
                out.append(
                    (f"{path}.{group}[x]", f"one of {', '.join(schema.choices[group])} is required")
                )

    def _list(
        self, node: dict[str, Any], rule: Rule, items: list[Any], path: str, out: Problems
    ) -> None:
        kind = rule.kind
        if kind == PRIMITIVE:
            check, enum = rule.check, rule.enum
            for index, item in enumerate(items):
                if item is None:
                    if not _extension_at(node.get(rule.sibling or ""), index):
                        out.append(
                            (f"{path}[{index}]", f"null is only permitted with an extension in {rule.sibling}")
                        )
                    continue
                problem = check(item)  # type: ignore[misc]
                if problem is None and enum is not None and item not in enum:
                    problem = _not_in_enum(item, rule)
                if problem is not None:
                    out.append((f"{path}[{index}]", problem))
        elif kind == COMPLEX:
            schema = rule.schema or child_schema(rule)
            for index, item in enumerate(items):
                if type(item) is dict and (len(item) > 1 or (item and "id" not in item)):
                    self._object(item, schema, f"{path}[{index}]", out)
                else:
                    self._element(item, schema, f"{path}[{index}]", out)
        elif kind == RESOURCE:
            contained = rule.key == "contained"
            for index, item in enumerate(items):
                self._resource(item, f"{path}[{index}]", out, contained=contained)
        else:
            values = node.get(rule.sibling or "")
            if type(values) is list and len(values) != len(items):
                out.append(
                    (path, f"{rule.key} must have as many items as {rule.sibling} ({len(values)})")
                )
            for index, item in enumerate(items):
                if item is None:
                    if type(values) is not list:
                        out.append((f"{path}[{index}]", f"null without a {rule.sibling} value"))
                    continue
                has_value = type(values) is list and index < len(values)
                has_value = has_value and values[index] is not None  # type: ignore[index]
                self._extension(item, rule, has_value, f"{path}[{index}]", out)

    def _element(self, item: Any, schema: TypeSchema, path: str, out: Problems) -> None:
        if type(item) is not dict:
            out.append((path, f"expected an object ({schema.name}), got {json_name(item)}"))
            return
        if len(item) < 2 and (not item or "id" in item):
            # ele-1: an element has a value or children (an id alone is not a child)
            out.append((path, "an element must have a value or child elements (ele-1)"))
        self._object(item, schema, path, out)

    def _extension(
        self, item: Any, rule: Rule, has_value: bool, path: str, out: Problems
    ) -> None:
        """``_name``: the id and extensions of a primitive value."""
        if type(item) is not dict:
            out.append((path, f"expected an object, got {json_name(item)}"))
            return
        if "extension" not in item:
            if not has_value:
                # ele-1: without its value, the primitive needs an extension
                out.append((path, f"{rule.key} without a {rule.sibling} value needs extensions"))
            elif "id" not in item:
                out.append((path, f"{rule.key} needs an id or extensions"))
        self._object(item, rule.schema or child_schema(rule), path, out)

    def _resource(self, item: Any, path: str, out: Problems, *, contained: bool) -> None:
        if type(item) is not dict:
            out.append((path, f"expected a resource object, got {json_name(item)}"))
            return
        resource_type = item.get("resourceType")
        if type(resource_type) is not str:
            out.append((f"{path}.resourceType", "a resource must name its resourceType"))
            return
        schema = self.resource_schema(resource_type)
        if schema is None:
            out.append((f"{path}.resourceType", f"unknown resource type {resource_type!r}"))
            return
        if contained and "contained" in item:
            out.append(
                (f"{path}.contained", "a contained resource must not contain resources (dom-2)")
            )
        self._object(item, schema, path, out)


def _not_in_enum(value: Any, rule: Rule) -> str:
    codes = ", ".join(sorted(rule.enum or ()))
    if len(codes) > 200:
        codes = codes[:200] + "..."
    return f"code {value!r} is not in the required value set of {rule.key} ({codes})"


def _has_extension(value: Any) -> bool:
    return type(value) is dict and bool(value.get("extension"))


def _extension_at(values: Any, index: int) -> bool:
    return type(values) is list and index < len(values) and type(values[index]) is dict
