"""Chains (``subject:Patient.organization.name``) and reverse chains (``_has``) in the
conformance oracle: the literal references of the sample followed to the resources it
holds (search.html, chaining and reverse chaining), the end parameter matched by the
oracle's own rules."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import TYPE_CHECKING

from tests.fhir.search.oracle_candidates import pick
from tests.fhir.search.oracle_rules import references

if TYPE_CHECKING:
    from tests.fhir.search.oracle import Oracle, Query

Links = dict[str, list[tuple[str, str]]]
Reached = tuple[
    str, set[str]
]  # a type, and ids of it  # id -> (type, id) of the resources it references
INNER_TYPES = ("token", "string", "date", "reference", "uri", "quantity")
# Always asked (the examples of the issue), besides the chains drawn at random.
CURATED_CHAINS = (
    ("Encounter", "subject", "name"),
    ("Encounter", "subject:Patient", "organization.name"),
    ("Encounter", "subject", "general-practitioner:Practitioner.family"),
    ("Procedure", "encounter", "subject:Patient.birthdate"),
    ("Observation", "encounter", "subject.family"),
    ("Observation", "subject:Patient", "gender"),
    ("Encounter", "service-provider", "name"),
)
CURATED_HAS = (
    ("Patient", "_has:Observation:patient", "code"),
    ("Patient", "_has:Encounter:subject", "class"),
    ("Encounter", "_has:Condition:encounter", "code"),
    ("Organization", "_has:Patient:organization", "family"),
    ("Patient", "_has:Encounter:patient:_has:Procedure:encounter", "code"),
    ("Practitioner", "_has:Patient:general-practitioner", "gender"),
    ("Patient", "_has:Encounter:subject", "service-provider.name"),
)


def links(oracle: Oracle, resource_type: str, code: str) -> Links:
    """The literal references of a reference parameter to resources of the sample."""
    cache: dict[tuple[str, str], Links] = oracle.__dict__.setdefault("_links", {})
    if (resource_type, code) not in cache:
        targets = oracle.params[(resource_type, code)].targets
        cache[(resource_type, code)] = {
            rid: [
                (kind, target)
                for value in values
                for kind, target, _ in references(value)
                if kind
                and target is not None
                and target in oracle.ids_of.get(kind, ())
                and (not targets or kind in targets)
            ]
            for rid, values in oracle.values(resource_type, code).items()
        }
    return cache[(resource_type, code)]


def _first_code(name: str) -> str:
    return name if name.startswith("_has:") else name.split(".")[0].split(":")[0]


def defined(oracle: Oracle, resource_type: str, name: str) -> bool:
    if name.startswith("_has:") or name == "_list":
        return True
    return (resource_type, _first_code(name)) in oracle.params


def chain_ids(oracle: Oracle, resource_type: str, name: str, value: str) -> frozenset[str]:
    head, _, rest = name.partition(".")
    code, _, only = head.partition(":")
    inner: dict[str, frozenset[str]] = {}

    def found(kind: str, target: str) -> bool:
        if (only and kind != only) or not defined(oracle, kind, rest):
            return False
        if kind not in inner:
            inner[kind] = oracle.ids(kind, rest, value)
        return target in inner[kind]

    return frozenset(
        rid
        for rid, targets in links(oracle, resource_type, code).items()
        if any(found(kind, target) for kind, target in targets)
    )


def has_ids(oracle: Oracle, resource_type: str, name: str, value: str) -> frozenset[str]:
    _, source_type, code, rest = name.split(":", 3)
    sources = oracle.ids(source_type, rest, value)
    source_links = links(oracle, source_type, code)
    return frozenset(
        target
        for source in sources
        for kind, target in source_links.get(source, [])
        if kind == resource_type
    )


def _reference_params(
    oracle: Oracle, indexed: Callable[[str, str], bool]
) -> list[tuple[str, str, str]]:
    """(source type, reference parameter, the target type most referenced) of the sample."""
    found = []
    for (resource_type, code), param in sorted(oracle.params.items()):
        if param.type != "reference" or not indexed(resource_type, code):
            continue
        if not _has_values(oracle, resource_type, code):
            continue
        kinds = [
            kind for targets in links(oracle, resource_type, code).values() for kind, _ in targets
        ]
        if kinds:
            found.append((resource_type, code, max(set(kinds), key=kinds.count)))
    return found


def _end_values(
    oracle: Oracle, resource_type: str, ids: set[str], code: str, rng: random.Random, count: int
) -> list[tuple[str | None, str]]:
    """Values of the end parameter, drawn from the resources the chain reaches."""
    from tests.fhir.search.oracle import candidates

    param = oracle.params[(resource_type, code)]
    values = {rid: found for rid, found in oracle.values(resource_type, code).items() if rid in ids}
    found = candidates(param, values, rng)
    plain = [c for c in found if c[0] is None]
    return pick(plain, rng, count) + [c for c in found if c == ("missing", "true")][:1]


def _has_values(oracle: Oracle, resource_type: str, code: str) -> bool:
    try:
        return any(oracle.values(resource_type, code).values())
    except Exception:  # fhirpathpy cannot evaluate it (reported by the plan)
        return False


def _end_param(
    oracle: Oracle, resource_type: str, indexed: Callable[[str, str], bool], rng: random.Random
) -> str | None:
    codes = [
        code
        for (kind, code), param in sorted(oracle.params.items())
        if kind == resource_type
        and param.type in INNER_TYPES
        and not code.startswith("_")
        and indexed(kind, code)
        and _has_values(oracle, kind, code)
    ]
    return rng.choice(codes) if codes else None


def queries(oracle: Oracle, rng: random.Random, indexed: Callable[[str, str], bool]) -> list[Query]:
    from tests.fhir.search.oracle import Query

    out: list[Query] = []

    def add(resource_type: str, path: str, end: str, kind: str, label: str | None) -> None:
        # the end parameter: the last segment of ``end`` on the type the chain arrives at
        *_, last = end.split(".")
        code = last.split(":")[0]
        arrival = _arrival(oracle, resource_type, path, end)
        if arrival is None or (arrival[0], code) not in oracle.params:
            return
        for modifier, value in _end_values(oracle, *arrival, code, rng, 3):
            if modifier == "missing" and label == "nested":
                continue  # NOT IN under two _has: seconds of hub time for little coverage
            name = f"{path}.{end}" if kind == "chain" else f"{path}:{end}"
            name += f":{modifier}" if modifier else ""
            expected = oracle.ids(resource_type, name, value)
            out.append(Query(resource_type, name, value, kind, label, expected))

    sources = _reference_params(oracle, indexed)
    for resource_type, code, target in pick(sources, rng, 14):
        end = _end_param(oracle, target, indexed, rng)
        if end:
            add(resource_type, code, end, "chain", None)
            add(resource_type, f"{code}:{target}", end, "chain", "Type")
    by_source = {(s, c): t for s, c, t in sources}
    two = [
        (s, c, t, c2, t2) for s, c, t in sources for (s2, c2), t2 in by_source.items() if s2 == t
    ]
    for resource_type, code, _, code2, target2 in pick(two, rng, 6):
        end = _end_param(oracle, target2, indexed, rng)
        if end:
            add(resource_type, code, f"{code2}.{end}", "chain", "2 levels")
    for resource_type, path, end in CURATED_CHAINS:
        add(resource_type, path, end, "chain", "2 levels" if "." in end else None)
    for source, code, target in pick(sources, rng, 10):
        end = _end_param(oracle, source, indexed, rng)
        if end:
            add(target, f"_has:{source}:{code}", end, "_has", None)
    for resource_type, path, end in CURATED_HAS:
        add(resource_type, path, end, "_has", "nested" if path.count("_has") > 1 else None)
    return out


def _arrival(oracle: Oracle, resource_type: str, path: str, end: str) -> Reached | None:
    """The type whose parameter ends the chain (the most referenced at each step), and the
    ids of it the chain reaches from the resources of ``resource_type``."""
    kind, ids = resource_type, set(oracle.ids_of[resource_type])
    for step in [*path.split("."), *end.split(".")[:-1]]:
        if step.startswith("_has:"):
            parts = step.split(":")
            while parts and parts[0] == "_has":  # _has:Type:param[:_has:Type:param...]
                source, code, parts = parts[1], parts[2], parts[3:]
                ids = {
                    rid
                    for rid, targets in links(oracle, source, code).items()
                    if any(k == kind and target in ids for k, target in targets)
                }
                kind = source
            continue
        code, _, only = step.partition(":")
        if (kind, code) not in oracle.params:
            return None
        reached = [
            (k, target)
            for rid, targets in links(oracle, kind, code).items()
            if rid in ids
            for k, target in targets
            if not only or k == only
        ]
        if not reached:
            return None
        kinds = [k for k, _ in reached]
        kind = max(sorted(set(kinds)), key=kinds.count)
        ids = {target for k, target in reached if k == kind}
    return kind, ids
