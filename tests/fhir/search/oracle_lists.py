"""``_list`` in the conformance oracle (search.html, "Searching by list": ``_list=42``
keeps the resources of the searched type that the List's entries reference).

A List entry names a resource by the literal reference of ``entry.item``; an entry
flagged ``deleted`` is no longer in the list (List.entry.deleted: "the item has been
removed from the list"); a contained (``#x``) or logical reference names no resource of
the store. Comma = any of the Lists; an unknown List names nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tests.fhir.search.oracle_rules import alternatives, references

if TYPE_CHECKING:
    from tests.fhir.search.oracle import Oracle, Query

# Types asked of each List (those its entries name, and one none of them names).
LIST_TYPES = (
    "Patient",
    "Observation",
    "Condition",
    "Encounter",
    "Procedure",
    "Practitioner",
    "Immunization",
)
LIST_VALUES = (
    "syn-list-0",
    "syn-list-1",
    "syn-list-0,syn-list-1",
    "syn-list-2",
    "no-such-list",
    "syn-list-2,no-such-list,syn-list-1",
)

# _list at the end of a chain or a reverse chain (type, name, value).
THROUGH = (
    ("Observation", "subject:Patient._list", "syn-list-0"),
    ("Encounter", "subject._list", "syn-list-0,syn-list-1"),
    ("Condition", "encounter._list", "syn-list-1"),
    ("Patient", "_has:Condition:subject:_list", "syn-list-0"),
    ("Patient", "_has:Encounter:subject:_list", "syn-list-1"),
    ("Encounter", "_has:Observation:encounter:_list", "syn-list-0"),
)


def list_ids(oracle: Oracle, resource_type: str, value: str) -> frozenset[str]:
    lists = {resource["id"]: resource for resource in oracle.sample.get("List", [])}
    stored = oracle.ids_of.get(resource_type, set())
    found: set[str] = set()
    for list_id in alternatives(value):
        for entry in lists.get(list_id, {}).get("entry", []):
            if entry.get("deleted") is True:
                continue
            for kind, target, _ in references(entry.get("item")):
                if kind == resource_type and target is not None and target in stored:
                    found.add(target)
    return frozenset(found)


def queries(oracle: Oracle) -> list[Query]:
    from tests.fhir.search.oracle import Query

    asked = [(t, "_list", value) for t in LIST_TYPES for value in LIST_VALUES]
    return [
        Query(
            resource_type,
            name,
            value,
            "_list",
            "_has" if name.startswith("_has:") else "chain" if "." in name else None,
            oracle.ids(resource_type, name, value),
        )
        for resource_type, name, value in [*asked, *THROUGH]
    ]
