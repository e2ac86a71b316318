"""The pydantic path: fhir.resources R4B models plus a JSON-kind check.

This was the hub's validator until the compiled one replaced it (it costs 0.3 to 1.3 ms
a resource). It stays as the oracle of the differential tests and the benchmark:
``problems(resource)`` is what the models (and the kind check that made them refuse
``"active": "yes"``) reject, located like the compiled validator's problems.

The models read JSON leniently (``"active": "yes"`` becomes ``True``, ``"value": "72"``
a decimal), so booleans and numbers are also checked to be JSON booleans and numbers.
"""

from __future__ import annotations

import functools
import types
import typing
from decimal import Decimal
from typing import Any

from fhir.resources.R4B import get_fhir_model_class
from pydantic import ValidationError

from maillage.fhir.definitions import resource_types
from maillage.fhir.validation_schema.primitives import json_name
from maillage.fhir.validation_schema.walker import Problems


def problems(resource: dict[str, Any]) -> Problems:
    """(expression, problem) pairs; the resource's type must be a known one."""
    resource_type = resource["resourceType"]
    model = get_fhir_model_class(resource_type)
    found: Problems = []
    try:
        model.model_validate(resource)
    except ValidationError as error:
        for problem in error.errors():
            path = _expression(resource_type, problem["loc"])
            found.append((path, problem["msg"]))
    except (ValueError, TypeError, LookupError) as error:
        # fhir_core raises KeyError for an unknown resourceType in contained: the old
        # validator let it through as a server error; here it counts as a refusal
        found.append((resource_type, f"{type(error).__name__}: {error}"))
    _check_json_kinds(resource, model, resource_type, found)
    return found


def _expression(resource_type: str, location: tuple[int | str, ...]) -> str:
    path = resource_type
    for part in location:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path


_JSON_KIND_NAMES = {"boolean": "a JSON boolean", "number": "a JSON number"}
# alias -> (the JSON kind its values must have, or the model of its object values; is a list)
_Shape = tuple[str | type | None, bool]


def _check_json_kinds(node: dict[str, Any], model: type, path: str, found: Problems) -> None:
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
                    found.append(
                        (where, f"expected {_JSON_KIND_NAMES[kind]}, got {json_name(item)}")
                    )
            elif kind is not None and isinstance(item, dict):
                inner = item.get("resourceType")
                child = kind
                if isinstance(inner, str) and inner in resource_types():
                    child = get_fhir_model_class(inner)  # contained, Bundle.entry.resource
                _check_json_kinds(item, child, where, found)


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
