"""Token ``:in`` / ``:not-in`` in the conformance oracle: value set membership computed
from the ValueSet JSON itself (search.html, token: the value is the canonical of a value
set, and the modifier "tests whether the coding is in [not in] the specified value set").

The value sets are the sample's own (``oracle_synthetic``) and the official R4 ones,
read from ``shared/data/fhir-r4`` (``valuesets.json``; the v3 and v2 packages when a
value set or a filter needs their code systems). Nothing here imports the hub's
terminology: membership is decided code by code, by the compose rules of the ValueSet
resource (an include is the conjunction of its system, concepts, filters and imported
value sets; the value set is the union of the includes minus the excludes).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from tests.fhir.search.oracle_rules import alternatives, tokens

if TYPE_CHECKING:
    from tests.fhir.search.oracle import Oracle, Param, Query

PACKAGES = ("valuesets.json", "v3-codesystems.json", "v2-tables.json")
OFFICIAL = "http://hl7.org/fhir/ValueSet/"
V3 = "http://terminology.hl7.org/ValueSet/v3-"
VS = "http://example.org/fhir/ValueSet/conformance-"
# (type, parameter, value sets asked): each with :in and :not-in, each value set alone.
ASKED: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("Condition", "code", ("explicit", "snomed-but", "import", "import|2", "intersect")),
    ("Procedure", "code", ("snomed-but", "intersect", "explicit", "snomed-minus-explicit")),
    ("Immunization", "vaccine-code", ("explicit", "import", "import-deep", "snomed-of-explicit")),
    ("Condition", "code", ("snomed-minus-explicit", "snomed-of-explicit")),
    ("DocumentReference", "type", ("explicit",)),
    ("Observation", "code", ("explicit", "import")),
    ("Observation", "status", (OFFICIAL + "observation-status",)),
    ("Patient", "gender", (OFFICIAL + "administrative-gender", "gender-but", "expanded")),
    ("Patient", "gender", (OFFICIAL + "administrative-gender|4.0.1", "snomed-but")),
    ("Patient", "_security", (V3 + "ConfidentialityClassification",)),
    ("Observation", "_tag", ("tags",)),
    (
        "Condition",
        "clinical-status",
        (OFFICIAL + "condition-clinical", "inactive", "clinical-but", "expanded"),
    ),
    ("Condition", "verification-status", (OFFICIAL + "condition-ver-status",)),
    ("Encounter", "class", (V3 + "ActEncounterCode", "expanded", "encounter-but")),
    ("Encounter", "status", (OFFICIAL + "encounter-status", OFFICIAL + "encounter-status|4.0.1")),
    # official value sets of the sample's other coded elements (code elements: no system)
    ("Encounter", "type", (OFFICIAL + "encounter-type",)),
    ("Patient", "language", (OFFICIAL + "languages", OFFICIAL + "all-languages")),
    ("Immunization", "vaccine-code", (OFFICIAL + "vaccine-code",)),
    ("Immunization", "status", (OFFICIAL + "immunization-status",)),
    ("Condition", "category", (OFFICIAL + "condition-category",)),
    ("MedicationRequest", "status", (OFFICIAL + "medicationrequest-status",)),
    ("MedicationRequest", "intent", (OFFICIAL + "medicationrequest-intent",)),
    ("AllergyIntolerance", "criticality", (OFFICIAL + "allergy-intolerance-criticality",)),
    ("AllergyIntolerance", "clinical-status", (OFFICIAL + "allergyintolerance-clinical",)),
    ("Procedure", "status", (OFFICIAL + "event-status",)),
    ("DocumentReference", "status", (OFFICIAL + "document-reference-status",)),
)
# Several value sets at once (comma = any of them), chains and reverse chains.
COMBINED: tuple[tuple[str, str, str], ...] = (
    ("Condition", "code", "explicit,intersect"),
    ("Condition", "clinical-status", "inactive,expanded"),
    ("Patient", "gender", "gender-but,expanded"),
    ("Encounter", "subject:Patient.gender", "gender-but"),
    ("Encounter", "subject:Patient.gender", "expanded"),
    ("Patient", "_has:Condition:subject:code", "explicit"),
    ("Patient", "_has:Condition:subject:clinical-status", "inactive"),
    ("Encounter", "_has:Condition:encounter:code", "intersect"),
)


# -- the definitions ----------------------------------------------------------------------


@functools.cache
def _package(name: str) -> dict[str, dict[str, Any]]:
    """A package's resources by url (and ``url|version``)."""
    from tests.fhir.search.oracle import SHARED_DATA

    bundle = json.loads((SHARED_DATA / "fhir-r4" / name).read_text())
    found: dict[str, dict[str, Any]] = {}
    for entry in bundle["entry"]:
        resource = entry["resource"]
        found.setdefault(resource["url"], resource)
        if "version" in resource:
            found.setdefault(f"{resource['url']}|{resource['version']}", resource)
    return found


def official(canonical: str, kind: str) -> dict[str, Any] | None:
    """An official ValueSet or CodeSystem of the R4 packages (first the FHIR one)."""
    for name in PACKAGES:
        resource = _package(name).get(canonical)
        if resource is not None and resource["resourceType"] == kind:
            return resource
    return None


@functools.cache
def code_system(url: str) -> tuple[frozenset[str], dict[str, frozenset[str]]] | None:
    """(codes, code -> its descendants) of a complete official code system, else None
    (SNOMED CT, LOINC, CVX: not in the package, their codes cannot be listed)."""
    resource = official(url, "CodeSystem")
    if resource is None or resource.get("content", "complete") != "complete":
        return None
    children: dict[str, set[str]] = {}

    def walk(concepts: list[dict[str, Any]], parent: str | None) -> None:
        for concept in concepts:
            children.setdefault(concept["code"], set())
            if parent is not None:
                children[parent].add(concept["code"])
            for prop in concept.get("property", []):
                if prop["code"] == "child" and "valueCode" in prop:
                    children[concept["code"]].add(prop["valueCode"])
                if prop["code"] in ("parent", "subsumedBy") and "valueCode" in prop:
                    children.setdefault(prop["valueCode"], set()).add(concept["code"])
            walk(concept.get("concept", []), concept["code"])

    walk(resource.get("concept", []), None)

    def below(code: str) -> frozenset[str]:
        found, pending = set(), [code]
        while pending:
            for child in children.get(pending.pop(), ()):
                if child not in found:
                    found.add(child)
                    pending.append(child)
        return frozenset(found)

    return frozenset(children), {code: below(code) for code in children}


def filtered(system: str, filters: list[dict[str, Any]], code: str) -> bool:
    """Whether ``code`` meets every filter of an include (concept is-a, descendent-of,
    is-not-a, =, in, not-in: the ones the value sets asked for use)."""
    known = code_system(system)
    if known is None:
        raise ValueError(f"the oracle cannot evaluate a filter on {system}")
    codes, below = known
    if code not in codes:
        return False
    for item in filters:
        prop, op, value = item["property"], item["op"], item["value"]
        if prop not in ("concept", "code"):
            raise ValueError(f"filter on the property {prop}")
        held = {
            "is-a": code == value or code in below.get(value, ()),
            "descendent-of": code in below.get(value, ()),
            "is-not-a": not (code == value or code in below.get(value, ())),
            "=": code == value,
            "in": code in value.split(","),
            "not-in": code not in value.split(","),
        }[op]
        if not held:
            return False
    return True


# -- membership ---------------------------------------------------------------------------


class ValueSets:
    """The value sets the searches name: stored (the sample's) before official ones."""

    def __init__(self, stored: list[dict[str, Any]]) -> None:
        self._known: dict[tuple[str, str | None, str], bool] = {}
        self.stored: dict[str, dict[str, Any]] = {}
        for value_set in stored:
            self.stored[value_set["url"]] = value_set
            if "version" in value_set:
                self.stored[f"{value_set['url']}|{value_set['version']}"] = value_set

    def resolve(self, canonical: str) -> dict[str, Any]:
        found = self.stored.get(canonical) or official(canonical, "ValueSet")
        if found is None:
            raise KeyError(f"no value set {canonical}")
        return found

    def systems(self, canonical: str) -> set[str]:
        """The code systems a value set draws from (through its imports too)."""
        value_set = self.resolve(canonical)
        found = {entry["system"] for entry in _contains(value_set) if entry.get("system")}
        for part in value_set.get("compose", {}).get("include", []):
            if part.get("system"):
                found.add(part["system"])
            for imported in part.get("valueSet", []):
                found |= self.systems(imported)
        return found

    def member(self, canonical: str, system: str | None, code: str) -> bool:
        """``(system, code)`` is in the value set. A code without a system (a ``code``
        element: ``Patient.gender``) takes the system its binding implies: it is in the
        set when one of the set's code systems holds it (DECISIONS["in-code-element"])."""
        key = (canonical, system, code)
        if key not in self._known:
            if system is None:
                self._known[key] = any(
                    self._member(canonical, candidate, code, listable=True)
                    for candidate in sorted(self.systems(canonical))
                )
            else:
                self._known[key] = self._member(canonical, system, code, listable=False)
        return self._known[key]

    def _member(self, canonical: str, system: str, code: str, listable: bool) -> bool:
        value_set = self.resolve(canonical)
        compose = value_set.get("compose")
        if compose is None:
            return any(
                entry.get("system") == system and entry.get("code") == code
                for entry in _contains(value_set)
            )
        return any(
            self._in_part(part, system, code, listable) for part in compose.get("include", [])
        ) and not any(
            self._in_part(part, system, code, listable) for part in compose.get("exclude", [])
        )

    def _in_part(self, part: dict[str, Any], system: str, code: str, listable: bool) -> bool:
        """An include/exclude: its system's codes (listed, filtered, or all of them) and
        every value set it imports."""
        if part.get("system"):
            if part["system"] != system:
                return False
            if "concept" in part and code not in {c["code"] for c in part["concept"]}:
                return False
            if "filter" in part and not filtered(system, part["filter"], code):
                return False
            if "concept" not in part and "filter" not in part:
                known = code_system(system)
                if known is None and listable:
                    return False  # SNOMED CT whole: no code without system is "of" it
                if known is not None and code not in known[0]:
                    return False
        return all(self._member(vs, system, code, listable) for vs in part.get("valueSet", []))


def _contains(value_set: dict[str, Any]) -> Iterator[dict[str, Any]]:
    pending = list(value_set.get("expansion", {}).get("contains", []))
    while pending:
        entry = pending.pop()
        pending.extend(entry.get("contains", []))
        if "code" in entry:
            yield entry


def value_sets(oracle: Oracle) -> ValueSets:
    cache: dict[str, ValueSets] = oracle.__dict__.setdefault("_value_sets", {})
    if "all" not in cache:
        cache["all"] = ValueSets(oracle.sample.get("ValueSet", []))
    return cache["all"]


def in_ids(oracle: Oracle, param: Param, modifier: str, value: str) -> frozenset[str]:
    """``code:in=a,b``: a coding of the resource in one of the value sets; ``:not-in``: no
    coding of the resource in any of them (resources without a value included, as
    ``:not``; DECISIONS["not-in"])."""
    sets = value_sets(oracle)
    canonicals = alternatives(value)
    found = set()
    for rid, values in oracle.values(param.resource_type, param.code).items():
        inside = any(
            sets.member(canonical, system, code)
            for canonical in canonicals
            for found_value in values
            for system, code in tokens(found_value)
        )
        if inside == (modifier == "in"):
            found.add(rid)
    return frozenset(found)


# -- the queries --------------------------------------------------------------------------


def _canonical(name: str) -> str:
    return ",".join(part if "://" in part else VS + part for part in name.split(","))


def queries(oracle: Oracle) -> list[Query]:
    from tests.fhir.search.oracle import Query

    out: list[Query] = []
    asked = [(t, code, name) for t, code, names in ASKED for name in names] + list(COMBINED)
    for resource_type, path, name in asked:
        kind = "_has" if path.startswith("_has:") else "chain" if "." in path else "token"
        for modifier in ("in", "not-in"):
            query = f"{path}:{modifier}"
            value = _canonical(name)
            expected = oracle.ids(resource_type, query, value)
            out.append(Query(resource_type, query, value, kind, modifier, expected))
    return out
