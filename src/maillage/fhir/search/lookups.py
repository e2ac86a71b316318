"""What a search reads before its SQL is composed.

- ``:in`` / ``:not-in``: the stored ValueSets the values name, and those they import
  (``compose.*.valueSet``), through the same access filter as the search; they take
  precedence over the shipped ones with the same url (``maillage.terminology``).
- ``_list``: the items of the Lists named, through the same access filter. A List the
  caller cannot see answers like an unknown one (no match), so its existence leaks
  nothing.

The conditions themselves stay synchronous (``builder``): everything they need is read
here first, in a few indexed statements, and only when the search asks for it.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from psycopg import sql

from maillage.errors import InvalidRequest
from maillage.fhir.indexing.values import split_reference
from maillage.fhir.search.conditions import split_commas
from maillage.terminology import (
    Expansion,
    Terminology,
    by_canonical,
    imports,
    shipped,
    split_canonical,
)

Fetch = Callable[[sql.Composed], Awaitable[list[tuple[Any, ...]]]]
Visible = Callable[[str], sql.Composable]
Authorize = Callable[[str], None]

VALUE_SET_MODIFIERS = ("in", "not-in")
# Imports are followed this deep (each level one statement); deeper is refused.
MAX_IMPORT_DEPTH = 8
_LAST_PART = re.compile(r"[.:]")


@dataclass
class Lookups:
    terminology: Terminology = field(default_factory=Terminology)
    # List id -> the (type, id) of its current entries; a List absent or hidden: no key.
    lists: dict[str, list[tuple[str, str]]] = field(default_factory=dict)

    def expansion(self, canonical: str) -> Expansion:
        return self.terminology.expand(canonical)

    def codes_of(self, system: str) -> frozenset[str] | None:
        return self.terminology.codes_of(system)

    def list_items(self, list_id: str) -> list[tuple[str, str]]:
        if list_id.startswith("$"):
            raise InvalidRequest(
                f"_list={list_id}: functional lists are not supported; name a List by its id"
            )
        return self.lists.get(list_id, [])


def wanted(params: Iterable[tuple[str, str]]) -> tuple[set[str], set[str]]:
    """(value set canonicals, List ids) the parameters name, chains and ``_has`` included."""
    canonicals: set[str] = set()
    list_ids: set[str] = set()
    for name, value in params:
        last = _LAST_PART.split(name)[-1]
        if last in VALUE_SET_MODIFIERS and ":" in name:
            canonicals.update(part for part in split_commas(value) if part)
        elif last == "_list":
            list_ids.update(part for part in split_commas(value) if part)
    return canonicals, list_ids


async def gather(
    fetch: Fetch,
    params: Sequence[tuple[str, str]],
    *,
    visible: Visible,
    authorize: Authorize,
) -> Lookups:
    canonicals, list_ids = wanted(params)
    stored: dict[str, dict[str, Any]] = {}
    lists: dict[str, list[tuple[str, str]]] = {}
    if canonicals:
        authorize("ValueSet")  # reading ValueSets is a search of them, like a chain's
        stored = await _stored_value_sets(fetch, canonicals, visible)
    if list_ids:
        authorize("List")
        lists = await _lists(fetch, sorted(list_ids), visible)
    return Lookups(Terminology(stored), lists)


async def _stored_value_sets(
    fetch: Fetch, canonicals: Iterable[str], visible: Visible
) -> dict[str, dict[str, Any]]:
    """The stored ValueSets of ``canonicals`` and of what they import, by canonical."""
    found: list[dict[str, Any]] = []
    asked: set[str] = set()
    pending = {split_canonical(canonical)[0] for canonical in canonicals}
    for _ in range(MAX_IMPORT_DEPTH):
        pending -= asked
        if not pending:
            break
        asked |= pending
        rows = await fetch(
            sql.SQL(
                "SELECT r.content FROM resource r WHERE r.resource_type = 'ValueSet'"
                " AND NOT r.deleted AND {visible} AND r.rid IN (SELECT x.rid FROM sp_uri x"
                " WHERE x.resource_type = 'ValueSet' AND x.param = 'url' AND x.uri = ANY({urls}))"
                # oldest first: for a url stored more than once, the latest wins
                " ORDER BY r.last_updated, r.rid"
            ).format(visible=visible("r"), urls=sql.Literal(sorted(pending)))
        )
        found.extend(_json(row[0]) for row in rows)
        index = by_canonical(found)
        following: set[str] = set()
        for url in pending:
            value_set = index.get(url) or shipped().value_set(url)
            if value_set is not None:
                following |= {split_canonical(item)[0] for item in imports(value_set)}
        pending = following
    return by_canonical(found)


async def _lists(
    fetch: Fetch, list_ids: list[str], visible: Visible
) -> dict[str, list[tuple[str, str]]]:
    rows = await fetch(
        sql.SQL(
            "SELECT r.id, r.content FROM resource r WHERE r.resource_type = 'List'"
            " AND r.id = ANY({ids}) AND NOT r.deleted AND {visible}"
        ).format(ids=sql.Literal(list_ids), visible=visible("r"))
    )
    return {str(list_id): list(_items(_json(content))) for list_id, content in rows}


def _json(content: Any) -> dict[str, Any]:
    """A stored body: the pool reads jsonb as text (bodies are served as stored)."""
    found = orjson.loads(content) if isinstance(content, str | bytes) else content
    return found if isinstance(found, dict) else {}


def _items(content: dict[str, Any]) -> Iterable[tuple[str, str]]:
    """(type, id) of the entries' literal references; entries flagged deleted are not
    in the list any more (List.entry.deleted), and contained (``#x``) or logical
    references name nothing the store holds."""
    for entry in content.get("entry", []):
        if not isinstance(entry, dict) or entry.get("deleted") is True:
            continue
        item = entry.get("item")
        reference = item.get("reference") if isinstance(item, dict) else None
        if not isinstance(reference, str):
            continue
        item_type, item_id, _ = split_reference(reference)
        if item_type and item_id:
            yield item_type, item_id
