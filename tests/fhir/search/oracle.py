"""An independent oracle for FHIR search: the official search parameter expressions
evaluated by fhirpathpy over the raw resources, and the R4 search rules written out in
plain Python (https://hl7.org/fhir/R4/search.html).

Nothing here imports the hub: the definitions are read from ``shared/data/fhir-r4``,
the values come from fhirpathpy, and matching, normalisation and date ranges are
re-implemented from the specification text (``oracle_rules``). The queries are generated
from the data (``oracle_candidates``; composites in ``oracle_composite``, chains and
``_has`` in ``oracle_graph``, ``:in``/``:not-in`` in ``oracle_valuesets``, ``_list`` in
``oracle_lists``). Decisions where the oracle departs from a literal reading,
or where the specification leaves the choice to the server, are listed in ``DECISIONS``
(and in docs/search-conformance.md).
"""

from __future__ import annotations

import functools
import json
import random
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fhirpathpy import compile as compile_fhirpath
from fhirpathpy.models import models

from tests.fhir.search import oracle_candidates as gen
from tests.fhir.search.oracle_rules import matches, split_prefix
from tests.fhir.search.oracle_synthetic import synthetic_resources

REPO = Path(__file__).resolve().parents[3]
SHARED_DATA = REPO / ".." / "shared" / "data"
SAMPLE = SHARED_DATA / "synthea" / "10-patients"
DEFINITIONS = SHARED_DATA / "fhir-r4" / "search-parameters.json"

TYPES = ("token", "string", "date", "reference", "quantity", "number", "uri", "composite")
# Resource-level parameters: reported under their own name, asked of a few types (the hub
# answers them the same way for every type; fhirpathpy takes its time over 8,000 resources).
RESOURCE_LEVEL = ("_id", "_lastUpdated", "_tag", "_profile", "_security", "_source")
RESOURCE_LEVEL_TYPES = ("Patient", "Observation", "Device", "Organization", "Immunization")
# Resources written for :in/:not-in and _list (oracle_synthetic); their own parameters
# are not generated (the plan of the other types stays as it was).
LOOKUP_TYPES = ("ValueSet", "List")

DECISIONS = {
    "resolve": "fhirpathpy does not implement resolve(); `where(resolve() is T)` is "
    "rewritten to a test on the literal reference (its type segment is T), which is all "
    "a server can know without reading the target.",
    "ge/le": "search.html: 'ge: the range above the search value intersects the range of "
    "the target value, or the range of the search value fully contains the range of the "
    "target'. Read as: the target range overlaps [low of search value, +inf) (le: "
    "(-inf, high]); a target that straddles the lower bound of a ge value matches.",
    "number": "search.html (number, quantity): eq and ne use the precision range of the "
    "search value, '100' = [99.5, 100.5) (upper bound exclusive, as written); lt, le, gt "
    "and ge compare with the value exactly ('gt100: greater than exactly 100'). The "
    "prefixes sa and eb are not generated for numbers (they are defined on ranges).",
    "timezone": "A dateTime without a zone is read as UTC (the specification leaves the "
    "zone of such values to the server).",
    "string-normalisation": "Case- and accent-insensitive starts-with (search.html, "
    "string). Punctuation and runs of spaces are folded to one space on both sides, as "
    "servers commonly do ('the server may ignore punctuation'); queries are generated "
    "without boundary punctuation so the decision does not change the expected set.",
    "token-case": "Token codes are compared case-sensitively (search.html: case "
    "sensitivity depends on the code system; the sample's systems are all case-sensitive).",
    "contactpoint": "A ContactPoint's system is a kind (phone, email), not a URI: it is "
    "indexed as a value without system, so `phone|555` is not a ContactPoint match.",
    "conditional-references": "Synthea's conditional references "
    "('Practitioner?identifier=...') are neither literal nor absolute: they match no "
    "Type/id search, and no query is generated from them.",
    "ne": "`ne` is evaluated per value (a resource matches if one of its values is not "
    "equal), as the other prefixes are; a resource with no value never matches.",
    "missing": ":missing=true holds when the expression yields no value the type can "
    "search on (a string element with no text, a Reference with only a display).",
    "base-type-root": "fhirpathpy filters `Resource.x` on the exact type Resource; the "
    "resource-level expressions (`Resource.id`, `Resource.meta.tag`...) are evaluated "
    "rooted at the searched type, as FHIRPath's type test of a base type intends.",
    "lastUpdated": "meta.lastUpdated is stamped by the server: the oracle evaluates "
    "`Resource.meta.lastUpdated` over the resources as stored (the sample with the stamped "
    "meta read back), an instant at millisecond precision. `ap` is not generated for it "
    "(10% of a gap of seconds would depend on when the query runs).",
    "ap": "search.html, prefixes: 'ap: the value for the parameter in the resource is "
    "approximately the same to the provided value. Note that the recommended value for "
    "the approximation is 10% of the stated value (or for a date, 10% of the gap between "
    "now and the date)'. The oracle follows the recommendation: a number matches within "
    "10% of the value (or within its precision range); a date range matches when it "
    "overlaps the searched range widened on both sides by 10% of the gap between now and "
    "the searched date.",
    "uri": "search.html (uri): 'matches are precise, case and accent sensitive, and the "
    "entire URI must match'; `:below` the URIs that start with the value, `:above` the "
    "URIs the value starts with. Plain string prefixes, as the page's examples read; "
    "`:above`/`:below` are generated from URLs only ('the modifiers :above and :below "
    "only apply to URLs, and not URNs such as OIDs').",
    "as-DateTime": "The composite code-value-date reads its value with "
    "`value.as(DateTime)`; fhirpathpy (rightly) finds no System.DateTime in a FHIR "
    "dateTime, so the component is read as `value.as(dateTime)`, the intent of the "
    "definition (Observation-value-date is `Observation.value as dateTime`).",
    "as-function": "`x.as(T)` and `(x as T)` over several items are an error in "
    "fhirpathpy (FHIRPath: as takes a singleton), and fhirpathpy's `as string` lets a "
    "CodeableConcept through; the R4 definitions use both as a type filter, over "
    "repeating elements too (`Observation.component.value as Quantity`), so they are "
    "evaluated as `x.ofType(T)`.",
    "relationship": "R4's DocumentReference `relationship` composite pairs its component "
    "`relatesto` (a reference parameter, `DocumentReference.relatesTo.target`) with the "
    "expression `code`, and `relation` (a token, `relatesTo.code`) with `target`: the "
    "expressions are swapped (R5 corrects it). A component whose own parameter's "
    "expression is the composite's element plus a path is read at that path; the value "
    "is `relatesto$relation` (`DocumentReference/1$replaces`).",
    "composite": "search.html (composite): the components are matched, each by the rules "
    "of its own parameter type, within one element the composite's expression selects "
    "(`Observation.component[i]`), not across elements.",
    "chains": "search.html (chaining): `subject.name=x` follows the literal references of "
    "`subject` to resources of the store, of any type that has a `name` parameter; "
    "`subject:Patient.name` only to Patients. A reference to a resource the store does "
    "not hold (conditional, logical) leads nowhere.",
    "_has": "search.html (reverse chaining): `_has:Observation:patient:code=x` keeps the "
    "resources that an Observation matching `code=x` references through `patient`.",
    "in": "search.html (token, :in): the value 'is a URI (relative or absolute) that "
    "identifies a value set, and the search parameter tests whether the coding is in the "
    "specified value set'. Membership is computed from the ValueSet's compose (include = "
    "its system AND its concepts AND its filters AND its imported value sets; the set = "
    "union of the includes minus the excludes; a system included whole = the codes of the "
    "code system when the R4 package holds it complete, any code of it otherwise) or, "
    "without compose, from expansion.contains. A canonical names a stored ValueSet before "
    "an official one with the same url (the server's own definition); `url|version` the "
    "one with that version. Comma = any of the value sets.",
    "not-in": "search.html (token, :not-in): 'tests whether the coding is not in the "
    "specified value set'. Read as :not is ('resources that do not contain a match'): no "
    "coding of the resource is in the value set (or in any of the comma-separated ones), "
    "so resources without a value match.",
    "in-code-element": "A token without a system (a `code` element: Patient.gender, "
    "Observation.status) carries the system of its element's binding: it is in the value "
    "set when one of the code systems the set draws from (through its imports too) has "
    "the code in it. A system included whole whose codes the R4 package cannot list "
    "(SNOMED CT) holds no code without a system.",
    "_list": "search.html (_list): `Patient?_list=42` keeps the Patients the List 42's "
    "entries reference (literal references; entries flagged `deleted` are no longer in "
    "the list; contained and logical references name no stored resource). Comma = any of "
    "the Lists; an unknown List finds nothing (the page asks for no error).",
}

# Composite component definitions read `value.as(DateTime)` (see DECISIONS["as-DateTime"]).
_AS_DATETIME = re.compile(r"\.as\(DateTime\)")
_AS_FUNCTION = re.compile(r"\.as\(")
_AS_OPERATOR = re.compile(r"\(([^()|]+?)\s+as\s+([A-Za-z]+)\)")


# -- the sample and the definitions ------------------------------------------------------


def read_ndjson(path: Path) -> list[dict[str, Any]]:
    with path.open("rb") as lines:
        return [json.loads(line) for line in lines if line.strip()]


def load_sample() -> dict[str, list[dict[str, Any]]]:
    sample: dict[str, list[dict[str, Any]]] = {}
    for path in sorted(SAMPLE.glob("*.ndjson")):
        for resource in read_ndjson(path):
            sample.setdefault(resource["resourceType"], []).append(resource)
    for resource in synthetic_resources(sample):
        sample.setdefault(resource["resourceType"], []).append(resource)
    return sample


@dataclass(frozen=True)
class Param:
    resource_type: str
    code: str
    type: str
    expression: str
    url: str = ""
    targets: tuple[str, ...] = ()
    # composite: (component parameter url, expression relative to the element)
    components: tuple[tuple[str, str], ...] = ()


@functools.cache
def _definitions() -> list[dict[str, Any]]:
    return [entry["resource"] for entry in json.loads(DEFINITIONS.read_text())["entry"]]


def official_params(resource_types: Iterable[str]) -> list[Param]:
    """Official parameters of the given types with an expression, of the types tested."""
    wanted = set(resource_types)
    found: dict[tuple[str, str], Param] = {}
    for definition in _definitions():
        if definition["type"] not in TYPES or not definition.get("expression"):
            continue
        components = tuple(
            (component["definition"], component["expression"])
            for component in definition.get("component", ())
        )
        for base in definition["base"]:
            applies = wanted if base in ("Resource", "DomainResource") else {base} & wanted
            for resource_type in sorted(applies):
                found[(resource_type, definition["code"])] = Param(
                    resource_type,
                    definition["code"],
                    definition["type"],
                    definition["expression"],
                    definition["url"],
                    tuple(definition.get("target", ())),
                    components,
                )
    return sorted(found.values(), key=lambda p: (p.resource_type, p.code))


_RESOLVE_IS = re.compile(r"resolve\(\)\s+is\s+([A-Za-z]+)")


def oracle_expression(expression: str) -> str:
    """The expression fhirpathpy is given (see DECISIONS['resolve'], ['as-DateTime'])."""
    expression = _AS_FUNCTION.sub(".ofType(", _AS_DATETIME.sub(".as(dateTime)", expression))
    expression = _AS_OPERATOR.sub(lambda m: f"({m[1]}.ofType({m[2]}))", expression)
    return _RESOLVE_IS.sub(
        lambda m: f"reference.matches('(^|/){m[1]}/[^/]+(/_history/[^/]+)?$')", expression
    )


def union_members(expression: str) -> list[str]:
    """The members of a top-level union (``a | b``), outside parentheses and quotes."""
    members, depth, quoted, start = [], 0, False, 0
    for index, char in enumerate(expression):
        if char == "'":
            quoted = not quoted
        elif not quoted and char == "(":
            depth += 1
        elif not quoted and char == ")":
            depth -= 1
        elif not quoted and depth == 0 and char == "|":
            members.append(expression[start:index].strip())
            start = index + 1
    members.append(expression[start:].strip())
    return members


_ROOT = re.compile(r"^(\(*\s*)([A-Za-z]+)")


def scoped(expression: str, resource_type: str) -> str:
    """The union members that can yield something on ``resource_type``, those rooted at a
    base type re-rooted at it (DECISIONS['base-type-root']). A member rooted at another
    type yields nothing on it (FHIRPath: a leading type name filters on the resource's
    type), so dropping it changes no result; it saves fhirpathpy the work of the
    30-member unions of the common parameters (patient, code, date, identifier)."""
    kept = []
    for member in union_members(expression):
        root = _ROOT.match(member)
        if root is None or root[2] not in (resource_type, "Resource", "DomainResource"):
            continue
        kept.append(_ROOT.sub(lambda m: m[1] + resource_type, member, count=1))
    return " | ".join(kept) if kept else expression


@functools.cache
def compiled(expression: str) -> Callable[..., Any]:
    return compile_fhirpath(expression, models["r4"])


def evaluate(param: Param, resources: list[dict[str, Any]]) -> dict[str, list[Any]]:
    """id -> the values fhirpathpy finds; raises if fhirpathpy cannot evaluate it."""
    function = compiled(scoped(oracle_expression(param.expression), param.resource_type))
    return {resource["id"]: list(function(resource, {})) for resource in resources}


# -- the oracle ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Query:
    resource_type: str
    name: str  # as sent: code[:modifier], a chain, or _has:...
    value: str
    kind: str  # what the report counts it under: a parameter type, a resource-level
    # parameter, "composite", "chain" or "_has"
    modifier: str | None
    expected: frozenset[str] = field(compare=False)

    @property
    def label(self) -> str:
        """kind[:modifier][ prefix], e.g. "date ap", "reference:Type", "chain:2 levels"."""
        label = self.kind + (f":{self.modifier}" if self.modifier else "")
        if self.kind in ("date", "number", "quantity", "_lastUpdated") and not self.modifier:
            prefix = split_prefix(self.value)[0]
            label += f" {prefix}" if prefix != "eq" or self.value.startswith("eq") else ""
        return label

    def __str__(self) -> str:
        return f"{self.resource_type}?{self.name}={self.value}"


@dataclass
class Plan:
    queries: list[Query]
    skipped: dict[str, str]  # "Type.code" -> why fhirpathpy could not evaluate it
    without_values: list[str]  # parameters no resource of the sample has a value for
    per_kind: Counter[str]
    per_label: Counter[str]


class Oracle:
    """The sample, its parameters' values (evaluated once, by fhirpathpy), and the ids
    each search answers, by the rules of ``oracle_rules``."""

    def __init__(self, sample: dict[str, list[dict[str, Any]]]) -> None:
        self.sample = sample
        searched = [kind for kind in sample if kind not in LOOKUP_TYPES]
        self.params = {(p.resource_type, p.code): p for p in official_params(searched)}
        self.by_url = {(p.resource_type, p.url): p for p in self.params.values()}
        self.ids_of = {kind: {r["id"] for r in rs} for kind, rs in sample.items()}
        self._values: dict[tuple[str, str], dict[str, list[Any]]] = {}

    def values(self, resource_type: str, code: str) -> dict[str, list[Any]]:
        key = (resource_type, code)
        if key not in self._values:
            self._values[key] = evaluate(self.params[key], self.sample[resource_type])
        return self._values[key]

    def ids(self, resource_type: str, name: str, value: str) -> frozenset[str]:
        """The ids of ``resource_type`` a search ``name=value`` finds."""
        from tests.fhir.search import oracle_composite, oracle_graph, oracle_lists, oracle_valuesets

        if name == "_list":
            return oracle_lists.list_ids(self, resource_type, value)
        if name.startswith("_has:"):
            return oracle_graph.has_ids(self, resource_type, name, value)
        if "." in name:
            return oracle_graph.chain_ids(self, resource_type, name, value)
        code, _, modifier = name.partition(":")
        param = self.params[(resource_type, code)]
        if modifier in ("in", "not-in"):
            return oracle_valuesets.in_ids(self, param, modifier, value)
        if param.type == "composite":
            return oracle_composite.composite_ids(self, param, modifier or None, value)
        return frozenset(
            rid
            for rid, found in self.values(resource_type, code).items()
            if matches(param.type, modifier or None, value, found)
        )


def plan(
    sample: dict[str, list[dict[str, Any]]],
    indexed: Callable[[str, str], bool],
    seed: int = 20240,
) -> Plan:
    """The queries, with their expected ids, for every official parameter of the tested
    types that the hub indexes (``indexed(type, code)``), plus composites, chains and
    ``_has``."""
    from tests.fhir.search import oracle_composite, oracle_graph, oracle_lists, oracle_valuesets

    rng = random.Random(seed)
    oracle = Oracle(sample)
    queries: list[Query] = []
    skipped: dict[str, str] = {}
    without_values: list[str] = []
    for param in oracle.params.values():
        name = f"{param.resource_type}.{param.code}"
        if param.type == "composite":
            continue
        if param.code in RESOURCE_LEVEL and param.resource_type not in RESOURCE_LEVEL_TYPES:
            continue
        if not indexed(param.resource_type, param.code):
            skipped[name] = "not indexed by the hub"
            continue
        try:
            values = oracle.values(param.resource_type, param.code)
        except Exception as error:
            skipped[name] = f"fhirpathpy: {error}"
            continue
        if not any(values.values()):
            without_values.append(name)
        kind = param.code if param.code in RESOURCE_LEVEL else param.type
        for modifier, value in candidates(param, values, rng):
            query_name = f"{param.code}:{modifier}" if modifier else param.code
            expected = oracle.ids(param.resource_type, query_name, value)
            label = "Type" if modifier and modifier[0].isupper() else modifier
            queries.append(Query(param.resource_type, query_name, value, kind, label, expected))
    queries.extend(oracle_composite.queries(oracle, rng))
    queries.extend(oracle_graph.queries(oracle, rng, indexed))
    queries.extend(oracle_valuesets.queries(oracle))
    queries.extend(oracle_lists.queries(oracle))
    unique = list(dict.fromkeys(queries))
    return Plan(
        unique,
        skipped,
        without_values,
        Counter(q.kind for q in unique),
        Counter(q.label for q in unique),
    )


def candidates(param: Param, values: dict[str, list[Any]], rng: random.Random) -> list[Any]:
    """(modifier, value) pairs to search for: real values of the sample, near misses,
    precision boundaries and prefixes; and ``:missing`` both ways."""
    found = [v for resource_values in values.values() for v in resource_values]
    if param.code == "_id":
        return list(id_candidates(found, rng))
    out: list[tuple[str | None, str]] = []
    if param.code != "_lastUpdated":  # always there: :missing is not generated
        out.append(("missing", "false"))
    if not found:  # nothing to search for: the hub must find nothing either
        return out
    if param.code != "_lastUpdated":
        out.append(("missing", "true"))
    generator = {
        "token": gen.token_candidates,
        "string": gen.string_candidates,
        "date": gen.date_candidates,
        "reference": gen.reference_candidates,
        "quantity": gen.quantity_candidates,
        "number": gen.number_candidates,
        "uri": gen.uri_candidates,
    }[param.type]
    for modifier, value in generator(found, rng):
        if param.code == "_lastUpdated" and value.startswith("ap"):
            continue  # DECISIONS["lastUpdated"]
        out.append((modifier, value))
    return out


def id_candidates(found: list[Any], rng: random.Random) -> Iterator[tuple[str | None, str]]:
    ids = gen.pick([value for value in found if isinstance(value, str)], rng, 3)
    yield from ((None, rid) for rid in ids)
    yield None, ",".join(ids)  # comma: OR
    yield None, ids[0] + "0"  # near miss
    yield None, "no-such-id"
