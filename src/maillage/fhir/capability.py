"""The CapabilityStatement: what this server really supports, derived from the code's
own tables (indexed search parameters, official and custom, interactions), never a
hand-kept list. Its parts are cached per generation of the definitions."""

from __future__ import annotations

from typing import Any

from maillage import __version__
from maillage.fhir import operations
from maillage.fhir.definitions import (
    FHIR_VERSION,
    SearchParam,
    definitions_cache,
    params_for,
    resource_types,
)
from maillage.fhir.search.builder import COMMON, MODIFIERS, searchable
from maillage.fhir.search.sorting import SORTABLE_TYPES

INTERACTIONS = (
    "read",
    "vread",
    "update",
    "patch",
    "delete",
    "history-instance",
    "history-type",
    "create",
    "search-type",
)
SYSTEM_INTERACTIONS = ("transaction", "batch", "history-system", "search-system")
SEARCH_RESULT_PARAMS = (
    "_count",
    "_sort",
    "_total",
    "_summary",
    "_elements",
    "_include",
    "_revinclude",
)
SEARCH_DOCUMENTATION = (
    "Search: comma = OR, repeated parameter = AND. Chaining (any depth up to 4, "
    "`subject:Patient.name=`), reverse chaining (`_has:Type:reference:parameter=`, nested), "
    "composite parameters, `_include` / `_revinclude` (with `:iterate`, `*`), "
    "`_sort` (several keys, `-` descending, on string, token, date, number, quantity, uri "
    "and reference parameters, `_id`, `_lastUpdated`), `_count`, `_total` "
    "(none, estimate, accurate), `_summary` (true, text, data, count, false), `_elements`. "
    "Unknown parameters are ignored unless `Prefer: handling=strict` (400). Whole-system "
    "search takes `_type` and the common parameters; the Patient compartment is searched "
    "at `Patient/[id]/[type]`. Active SearchParameter resources add custom parameters to "
    "their base types; while their index is being built (`$reindex` job) a search naming "
    "one answers 409 with the job's progress. Token `:in`/`:not-in` take a ValueSet url "
    "(stored, else one of the official R4 value sets; an unknown one is a 400); `_list=[id]` "
    "keeps the resources a List's entries reference (functional lists are not supported)."
)


def _documentation(param: SearchParam) -> str:
    modifiers = [m for m in MODIFIERS.get(param.type, ()) if m != "of-type" or _identifier(param)]
    text = f"modifiers: {', '.join(':' + m for m in modifiers)}" if modifiers else "no modifier"
    if param.type in SORTABLE_TYPES:
        text += "; sortable"
    if param.custom_id is not None:
        text += f"; custom, defined by SearchParameter/{param.custom_id}"
    return text


def _identifier(param: SearchParam) -> bool:
    return param.code == "identifier" or (param.expression or "").endswith(".identifier")


def _includes(resource_type: str) -> list[str]:
    codes = sorted(
        param.code
        for param in params_for(resource_type).values()
        if param.type == "reference" and param.indexed
    )
    return [f"{resource_type}:{code}" for code in codes] + ([f"{resource_type}:*"] if codes else [])


def _non_empty(**lists: list[str]) -> dict[str, list[str]]:
    return {name: values for name, values in lists.items() if values}


@definitions_cache
def _revincludes() -> dict[str, list[str]]:
    found: dict[str, list[str]] = {name: [] for name in resource_types()}
    for source in sorted(resource_types()):
        for param in sorted(params_for(source).values(), key=lambda p: p.code):
            if param.type != "reference" or not param.indexed:
                continue
            for target in param.targets:
                if target in found:
                    found[target].append(f"{source}:{param.code}")
    return found


@definitions_cache
def _resources() -> tuple[dict[str, Any], ...]:
    rendered = []
    for resource_type in sorted(resource_types()):
        params: list[dict[str, Any]] = [
            {"name": "_id", "type": "token", "documentation": "no modifier; sortable"},
            {"name": "_lastUpdated", "type": "date", "documentation": "no modifier; sortable"},
        ]
        params += [
            {
                "name": param.code,
                "definition": param.url,
                "type": param.type,
                "documentation": _documentation(param),
            }
            for param in sorted(params_for(resource_type).values(), key=lambda p: p.code)
            if searchable(resource_type, param) and param.code not in ("_id", "_lastUpdated")
        ]
        rendered.append(
            {
                "type": resource_type,
                "interaction": [{"code": code} for code in INTERACTIONS],
                "versioning": "versioned-update",
                "readHistory": True,
                "updateCreate": True,
                "conditionalCreate": True,
                "conditionalRead": "not-supported",
                "conditionalUpdate": True,
                "conditionalDelete": "single",
                "referencePolicy": ["literal", "logical", "local"],
                # FHIR JSON has no empty arrays: a type without any is left without
                **_non_empty(
                    searchInclude=_includes(resource_type),
                    searchRevInclude=_revincludes()[resource_type],
                ),
                "searchParam": params,
                "operation": operations.for_type(resource_type),
            }
        )
        # FHIR JSON has no empty arrays
        rendered[-1] = {key: value for key, value in rendered[-1].items() if value != []}
    return tuple(rendered)


def capability_statement(base_url: str) -> dict[str, Any]:
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": "2026-11-23",
        "kind": "instance",
        "software": {"name": "Maillage", "version": __version__},
        "implementation": {"description": "Maillage territorial hub", "url": base_url},
        "fhirVersion": FHIR_VERSION,
        "format": ["application/fhir+json", "json"],
        "patchFormat": ["application/json-patch+json"],
        "rest": [
            {
                "mode": "server",
                "documentation": SEARCH_DOCUMENTATION,
                "resource": list(_resources()),
                "interaction": [{"code": code} for code in SYSTEM_INTERACTIONS],
                "searchParam": _system_params(),
                "operation": operations.system_level(),
                "compartment": ["http://hl7.org/fhir/CompartmentDefinition/patient"],
            }
        ],
    }


def _system_params() -> list[dict[str, Any]]:
    kinds = {"_id": "token", "_lastUpdated": "date", "_tag": "token", "_security": "token"}
    listed = {"name": "_list", "type": "special", "documentation": "resources a List references"}
    return [{"name": code, "type": kinds.get(code, "uri")} for code in COMMON] + [listed]
