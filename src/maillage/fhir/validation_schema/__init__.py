"""A structural validator compiled from the fhir.resources R4B model metadata.

``check(resource, resource_type)`` returns the located problems of a parsed JSON
resource without building pydantic models: the model classes are read once (per type,
on first use) into plain tables (``compiler``) that a small walker (``walker``) follows.
``reference`` keeps the pydantic path, the oracle of the differential tests.
"""

from __future__ import annotations

import functools
from typing import Any

from fhir.resources.R4B import get_fhir_model_class

from maillage.fhir.definitions import resource_types
from maillage.fhir.validation_schema.compiler import TypeSchema, all_model_classes, schema_of
from maillage.fhir.validation_schema.walker import Problems, Walker

__all__ = ["Problems", "check", "resource_schema", "warm_up"]


# R4 resource types the hub does not store, but which a Bundle entry may hold: the
# patient compartment definition, where ``resource_types`` comes from, omits them.
NESTED_ONLY_TYPES = frozenset({"Parameters"})


@functools.cache
def resource_schema(resource_type: str) -> TypeSchema | None:
    """The schema of an R4 resource type the hub knows, else None."""
    if resource_type not in resource_types() and resource_type not in NESTED_ONLY_TYPES:
        return None
    return schema_of(get_fhir_model_class(resource_type))


_WALKER = Walker(resource_schema)


def check(resource: dict[str, Any], resource_type: str) -> Problems:
    """(expression, problem) pairs for a resource of a known type; empty when valid."""
    schema = resource_schema(resource_type)
    if schema is None:
        return [(f"{resource_type}", f"unknown resource type {resource_type!r}")]
    return _WALKER.resource(resource, schema, resource_type)


def warm_up() -> int:
    """Compile every schema now (before forking workers, say); returns how many."""
    for name in resource_types():
        resource_schema(name)
    return len(all_model_classes())
