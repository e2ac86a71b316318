"""Turn a resource into its index rows, for every indexed parameter of its type.

This runs for every write (API and bulk load), so it is kept fast: for each
resource type the indexed parameters are listed once, and a parameter whose
expression cannot reach anything in the resource (none of the top-level elements
its paths start with is present, not even as a choice ``value[x]``) is skipped
without being evaluated. Which parameters apply depends only on the resource's
top-level keys, so that choice is cached per (type, keys). Both caches are cleared when
the definitions change (custom SearchParameter resources: ``definitions.REGISTRY``).
"""

from __future__ import annotations

import functools
from typing import Any

from maillage.fhir.definitions import REGISTRY, SearchParam, definitions_cache, params_for
from maillage.fhir.indexing.values import (
    IndexRows,
    add_token,
    dates_of,
    decimal_of,
    identifier_types,
    normalized,
    references_of,
    strings_of,
    token_texts,
    tokens_of,
)

# (parameter, the top-level names its paths start with; None: always evaluate)
_Plan = tuple[tuple[SearchParam, frozenset[str] | None], ...]


# Served from the resource table's own columns (``id``, ``last_updated``): index rows for
# them would only cost space and write time.
COLUMN_PARAMS = frozenset({"_id", "_lastUpdated"})


@definitions_cache
def _plan(resource_type: str) -> _Plan:
    # A parameter with ``rows_of`` is read from another's rows: it has none of its own.
    return tuple(
        (param, param.compiled.first_fields)
        for param in params_for(resource_type).values()
        if param.compiled is not None and param.code not in COLUMN_PARAMS and param.rows_of is None
    )


def _choice_prefixes(keys: tuple[str, ...]) -> frozenset[str]:
    """Every ``name`` for which some key is ``name`` + an upper-case type (``valueQuantity``
    -> ``value``), i.e. the choice elements a key can stand for."""
    return frozenset(key[:cut] for key in keys for cut in range(1, len(key)) if key[cut].isupper())


@functools.lru_cache(maxsize=4096)
def _active_params(resource_type: str, keys: tuple[str, ...]) -> tuple[SearchParam, ...]:
    present = frozenset(keys) | _choice_prefixes(keys)
    return tuple(
        param
        for param, firsts in _plan(resource_type)
        if firsts is None or not firsts.isdisjoint(present)
    )


REGISTRY.on_change(_active_params.cache_clear)

MAX_URI_CHARS = 2048


def extract_index(resource: dict[str, Any], codes: frozenset[str] | None = None) -> IndexRows:
    """The index rows of ``resource``; of the parameters ``codes`` only, when given (a
    reindex of changed parameters)."""
    resource_type = resource["resourceType"]
    rows = IndexRows()
    choices: dict[str, Any] = {}
    for param in _active_params(resource_type, tuple(resource)):
        if codes is None or param.code in codes:
            _extract_param(rows, resource_type, param, resource, choices)
    # The same value reached twice (a coding's display equal to the concept's text, the
    # same reference in two places) matches nothing more: one row is enough.
    if len(rows.string) > 1:
        rows.string = list(dict.fromkeys(rows.string))
    if len(rows.reference) > 1:
        rows.reference = list(dict.fromkeys(rows.reference))
    if len(rows.token) > 1:
        rows.token = list(dict.fromkeys(rows.token))
    return rows


def _extract_param(
    rows: IndexRows,
    resource_type: str,
    param: SearchParam,
    resource: dict[str, Any],
    choices: dict[str, Any],
) -> None:
    assert param.compiled is not None
    nodes = param.compiled.evaluate_pairs(resource, choices)
    if not nodes:
        return
    code = param.code
    kind = param.type
    if kind == "token":
        for node in nodes:
            value = node[0]
            if isinstance(value, str):  # a code: one token, no text, no type
                add_token(rows, resource_type, code, None, value)
                continue
            for system, token in tokens_of(node):
                add_token(rows, resource_type, code, system, token)
            if isinstance(value, dict):
                # derived keys for :text and :of-type (see maillage.fhir.search.conditions)
                for text in token_texts(node):
                    rows.string.append((f"{code}:text", *normalized(text)))
                if "type" in value:
                    for system, typed_value in identifier_types(node):
                        add_token(rows, resource_type, f"{code}:of-type", system, typed_value)
    elif kind == "string":
        for node in nodes:
            for text in strings_of(node):
                norm, exact = normalized(text)
                rows.string.append((code, norm, exact))
    elif kind == "date":
        for node in nodes:
            for low, high in dates_of(node):
                rows.date.append((code, low, high))
    elif kind == "reference":
        for node in nodes:
            for target_type, target_id, target_url in references_of(node):
                rows.reference.append((code, target_type, target_id, target_url))
    elif kind == "uri":
        for node in nodes:
            # A btree entry holds about 2,700 bytes; no real URI is that long.
            if isinstance(node[0], str) and len(node[0]) <= MAX_URI_CHARS:
                rows.uri.append((code, node[0]))
    elif kind == "number":
        for node in nodes:
            number = decimal_of(node[0])
            if number is not None:
                rows.number.append((code, number))
    elif kind == "quantity":
        for node in nodes:
            quantity = node[0]
            if isinstance(quantity, dict):
                amount = decimal_of(quantity.get("value"))
                if amount is not None:
                    system = quantity.get("system")
                    unit_code = quantity.get("code") or quantity.get("unit")
                    rows.quantity.append((code, system, unit_code, amount))
