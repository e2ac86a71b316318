"""The official FHIR R4 definitions the hub runs on: resource types, search parameters,
the patient compartment. Loaded once from package data."""

from __future__ import annotations

import functools
import json
import logging
from dataclasses import dataclass
from importlib import resources
from typing import Any

from maillage.fhir.indexing.fhirpath import CompiledPath, UnsupportedExpression, compile_expression

log = logging.getLogger(__name__)

FHIR_VERSION = "4.0.1"

# Parameters common to all resources, handled by the search engine itself.
RESOURCE_LEVEL_PARAMS = {"_id", "_lastUpdated", "_tag", "_profile", "_security", "_source"}


@dataclass(frozen=True)
class SearchParam:
    code: str
    type: str
    url: str
    expression: str | None
    targets: tuple[str, ...]
    # Per resource type, the compiled extraction; None when the expression is not
    # one the indexer can evaluate yet (the parameter is then not advertised).
    compiled: CompiledPath | None
    # Composite parameters: (component definition url, expression relative to the element).
    components: tuple[tuple[str, str], ...] = ()

    @property
    def indexed(self) -> bool:
        return self.compiled is not None


def _read_json(name: str) -> Any:
    data = (resources.files("maillage.fhir") / "data" / name).read_bytes()
    return json.loads(data)


@functools.cache
def resource_types() -> frozenset[str]:
    """R4 resource types the hub stores: those of the R4 patient compartment definition
    (which lists every type) that the validation models know."""
    from fhir.resources.R4B import get_fhir_model_class

    compartment = _read_json("compartmentdefinition-patient.json")
    known = set()
    for entry in compartment["resource"]:
        try:
            get_fhir_model_class(entry["code"])
        except (KeyError, ValueError, AttributeError, ImportError):
            continue
        known.add(entry["code"])
    return frozenset(known)


@functools.cache
def patient_compartment() -> dict[str, tuple[str, ...]]:
    """Resource type -> the search parameters that put it in a Patient's compartment."""
    compartment = _read_json("compartmentdefinition-patient.json")
    return {
        entry["code"]: tuple(entry["param"])
        for entry in compartment["resource"]
        if entry.get("param")
    }


def _expression_for(expression: str, resource_type: str) -> str | None:
    """The union members of ``expression`` that apply to ``resource_type``."""
    parts = [part.strip() for part in _split_union(expression)]
    prefixes = (
        f"{resource_type}.",
        f"({resource_type}.",
        "Resource.",
        "(Resource.",
        "DomainResource.",
        "(DomainResource.",
    )
    kept = [part for part in parts if part.startswith(prefixes) or part == resource_type]
    return " | ".join(kept) if kept else None


def _split_union(expression: str) -> list[str]:
    parts, depth, start = [], 0, 0
    for index, char in enumerate(expression):
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        elif char == "|" and depth == 0:
            parts.append(expression[start:index])
            start = index + 1
    parts.append(expression[start:])
    return parts


@functools.cache
def search_params() -> dict[str, dict[str, SearchParam]]:
    """Resource type -> code -> parameter, compiled from the official definitions."""
    bundle = _read_json("search-parameters.json")
    types = resource_types()
    by_type: dict[str, dict[str, SearchParam]] = {name: {} for name in types}
    for entry in bundle["entry"]:
        definition = entry["resource"]
        for base in definition["base"]:
            applies_to = types if base in ("Resource", "DomainResource") else {base}
            for resource_type in applies_to & types:
                param = _compile_param(definition, resource_type)
                by_type[resource_type][param.code] = param
    return by_type


def _compile_param(definition: dict[str, Any], resource_type: str) -> SearchParam:
    expression = definition.get("expression")
    compiled = None
    if expression and definition["type"] not in ("composite", "special"):
        scoped = _expression_for(expression, resource_type)
        if scoped:
            try:
                compiled = compile_expression(scoped)
            except UnsupportedExpression as error:
                log.debug("search parameter %s not indexed: %s", definition["url"], error)
    return SearchParam(
        code=definition["code"],
        type=definition["type"],
        url=definition["url"],
        expression=expression,
        targets=tuple(definition.get("target", ())),
        compiled=compiled,
        components=tuple(
            (component["definition"], component["expression"])
            for component in definition.get("component", ())
        ),
    )


def params_for(resource_type: str) -> dict[str, SearchParam]:
    return search_params().get(resource_type, {})
