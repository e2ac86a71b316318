"""The CapabilityStatement: what this server really supports, derived from the code's
own tables (indexed search parameters, interactions), never a hand-kept list."""

from __future__ import annotations

import functools
from typing import Any

from maillage import __version__
from maillage.fhir.definitions import FHIR_VERSION, params_for, resource_types

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
SYSTEM_INTERACTIONS = ("transaction", "batch", "history-system")
SEARCH_RESULT_PARAMS = ("_count", "_sort", "_total")


@functools.cache
def _resources() -> tuple[dict[str, Any], ...]:
    rendered = []
    for resource_type in sorted(resource_types()):
        params = [{"name": "_id", "type": "token"}, {"name": "_lastUpdated", "type": "date"}]
        params += [
            {"name": param.code, "definition": param.url, "type": param.type}
            for param in sorted(params_for(resource_type).values(), key=lambda p: p.code)
            if param.indexed and param.code not in ("_id", "_lastUpdated")
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
                "searchParam": params,
            }
        )
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
                "resource": list(_resources()),
                "interaction": [{"code": code} for code in SYSTEM_INTERACTIONS],
            }
        ],
    }
