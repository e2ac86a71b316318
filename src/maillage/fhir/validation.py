"""Validation of every resource written, against the R4B models of fhir.resources.

The models read JSON leniently (``"active": "yes"`` becomes ``True``, ``"value": "72"``
a decimal), but the hub stores and serves the JSON it was given: so it also checks that
booleans and numbers are JSON booleans and numbers, as FHIR's JSON format requires.
Issues are located by FHIRPath-like expressions (``Patient.name[0].family``).
"""

from __future__ import annotations

import functools
import types
import typing
from decimal import Decimal
from typing import Any

from fhir.resources.R4B import get_fhir_model_class
from pydantic import ValidationError

from maillage.errors import ErrorReport, Issue, MalformedContent, NotFound, ValidationFailed
from maillage.fhir.definitions import resource_types


def require_known_type(resource_type: str) -> None:
    if resource_type not in resource_types():
        raise NotFound(
            f"unknown resource type {resource_type!r}",
            issues=[Issue(f"unknown resource type {resource_type!r}", code="not-supported")],
        )


def validate_resource(resource: Any, *, expected_type: str | None = None) -> dict[str, Any]:
    """Check a parsed JSON resource; returns it unchanged or raises with located issues."""
    if not isinstance(resource, dict) or not isinstance(resource.get("resourceType"), str):
        raise MalformedContent("the body is not a FHIR resource (no resourceType)")
    resource_type = resource["resourceType"]
    if expected_type is not None and resource_type != expected_type:
        raise_mismatch = MalformedContent(
            f"resourceType {resource_type!r} does not match the URL type {expected_type!r}"
        )
        raise raise_mismatch
    require_known_type(resource_type)
    model = get_fhir_model_class(resource_type)
    report = ErrorReport()
    try:
        model.model_validate(resource)
    except ValidationError as error:
        for problem in error.errors()[:20]:
            path = _expression(resource_type, problem["loc"])
            report.add(f"{path}: {problem['msg']}", expression=path)
    except (ValueError, TypeError) as error:
        raise ValidationFailed(f"{resource_type}: {error}") from error
    _check_json_kinds(resource, model, resource_type, report)
    report.raise_if_any(ValidationFailed)
    return resource


def _expression(resource_type: str, location: tuple[int | str, ...]) -> str:
    path = resource_type
    for part in location:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path


_JSON_KIND_NAMES = {"boolean": "a JSON boolean", "number": "a JSON number"}
_JSON_NAMES = {
    str: "a string",
    int: "a number",
    float: "a number",
    bool: "a boolean",
    dict: "an object",
    list: "an array",
    type(None): "null",
}
# alias -> (the JSON kind its values must have, or the model of its object values; is a list)
_Shape = tuple[str | type | None, bool]


def _check_json_kinds(node: dict[str, Any], model: type, path: str, report: ErrorReport) -> None:
    shapes = _shapes(model)
    for key, value in node.items():
        shape = shapes.get(key)
        if shape is None:
            continue
        kind, is_list = shape
        items = enumerate(value) if is_list and isinstance(value, list) else [(None, value)]
        for index, item in items:
            where = f"{path}.{key}" if index is None else f"{path}.{key}[{index}]"
            if isinstance(kind, str):
                if not _has_kind(item, kind):
                    got = _JSON_NAMES.get(type(item), "another kind of value")
                    report.add(f"{where}: expected {_JSON_KIND_NAMES[kind]}, got {got}", where)
            elif kind is not None and isinstance(item, dict):
                inner = item.get("resourceType")
                child = kind
                if isinstance(inner, str) and inner in resource_types():
                    child = get_fhir_model_class(inner)  # contained, Bundle.entry.resource
                _check_json_kinds(item, child, where, report)


def _has_kind(value: Any, kind: str) -> bool:
    if kind == "boolean":
        return isinstance(value, bool)
    return isinstance(value, int | float) and not isinstance(value, bool)


@functools.cache
def _shapes(model: type) -> dict[str, _Shape]:
    shapes: dict[str, _Shape] = {}
    for name, info in model.model_fields.items():  # type: ignore[attr-defined]
        annotation, is_list = _unwrap(info.annotation)
        kind: str | type | None = None
        if annotation is bool:
            kind = "boolean"
        elif annotation in (int, Decimal):
            kind = "number"
        elif hasattr(annotation, "get_model_klass"):
            kind = annotation.get_model_klass()
        shapes[info.alias or name] = (kind, is_list)
    return shapes


def _unwrap(annotation: Any) -> tuple[Any, bool]:
    """``Optional[List[Annotated[int, ...]]]`` -> (int, True)."""
    is_list = False
    while True:
        origin = typing.get_origin(annotation)
        args = typing.get_args(annotation)
        if origin in (typing.Union, types.UnionType):
            kept = [arg for arg in args if arg is not type(None)]
            if len(kept) != 1:
                return None, is_list
            annotation = kept[0]
        elif origin is typing.Annotated:
            annotation = args[0]
        elif origin is list:
            is_list, annotation = True, args[0]
        else:
            return annotation, is_list
