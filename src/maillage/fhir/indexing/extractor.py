"""Turn a resource into its index rows, for every indexed parameter of its type."""

from __future__ import annotations

from typing import Any

from maillage.fhir.definitions import SearchParam, params_for
from maillage.fhir.indexing.values import (
    IndexRows,
    add_token,
    dates_of,
    decimal_of,
    normalized,
    references_of,
    strings_of,
    tokens_of,
)


def extract_index(resource: dict[str, Any]) -> IndexRows:
    resource_type = resource["resourceType"]
    rows = IndexRows()
    for param in params_for(resource_type).values():
        if param.compiled is None or param.code == "_id":
            continue
        _extract_param(rows, resource_type, param, resource)
    return rows


def _extract_param(
    rows: IndexRows, resource_type: str, param: SearchParam, resource: dict[str, Any]
) -> None:
    assert param.compiled is not None
    nodes = param.compiled.evaluate(resource)
    code = param.code
    kind = param.type
    for node in nodes:
        if kind == "token":
            for system, token in tokens_of(node):
                add_token(rows, resource_type, code, system, token)
        elif kind == "string":
            for text in strings_of(node):
                norm, exact = normalized(text)
                rows.string.append((code, norm, exact))
        elif kind == "date":
            for low, high in dates_of(node):
                rows.date.append((code, low, high))
        elif kind == "reference":
            for target_type, target_id, target_url in references_of(node):
                rows.reference.append((code, target_type, target_id, target_url))
        elif kind == "uri":
            if isinstance(node.value, str):
                rows.uri.append((code, node.value))
        elif kind == "number":
            number = decimal_of(node.value)
            if number is not None:
                rows.number.append((code, number))
        elif kind == "quantity" and isinstance(node.value, dict):
            amount = decimal_of(node.value.get("value"))
            if amount is not None:
                system = node.value.get("system")
                unit_code = node.value.get("code") or node.value.get("unit")
                rows.quantity.append((code, system, unit_code, amount))
