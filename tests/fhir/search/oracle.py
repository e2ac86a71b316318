"""An independent oracle for FHIR search: the official search parameter expressions
evaluated by fhirpathpy over the raw resources, and the R4 search rules written out in
plain Python (https://hl7.org/fhir/R4/search.html).

Nothing here imports the hub: the definitions are read from ``shared/data/fhir-r4``,
the values come from fhirpathpy, and matching, normalisation and date ranges are
re-implemented from the specification text. Decisions where the oracle departs from a
literal reading, or where the specification leaves the choice to the server, are
listed in ``DECISIONS`` (and in docs/search-conformance.md).
"""

from __future__ import annotations

import calendar
import json
import random
import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from fhirpathpy import compile as compile_fhirpath
from fhirpathpy.models import models

REPO = Path(__file__).resolve().parents[3]
SHARED_DATA = REPO / ".." / "shared" / "data"
SAMPLE = SHARED_DATA / "synthea" / "10-patients"
DEFINITIONS = SHARED_DATA / "fhir-r4" / "search-parameters.json"

TYPES = ("token", "string", "date", "reference", "quantity", "number")
PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb")

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
}

# Resources the sample lacks: the Synthea bulk sample has no Observation or
# RiskAssessment, so no quantity or number values. A few are derived, deterministically,
# from the sample's encounters to give those types real values of varied precision.
QUANTITY_VALUES = ("72", "72.5", "80.25", "1.2e2", "0.5", "100", "99.5", "100.5", "7", "12.35")


# -- the sample and the definitions ------------------------------------------------------


def read_ndjson(path: Path) -> list[dict[str, Any]]:
    with path.open("rb") as lines:
        return [json.loads(line) for line in lines if line.strip()]


def derived_resources(sample: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Observations (valueQuantity) and RiskAssessments (probability) for the first
    encounters of the sample: the quantity and number values the sample has none of."""
    derived: list[dict[str, Any]] = []
    encounters = sorted(sample["Encounter"], key=lambda encounter: encounter["id"])[:40]
    for number, encounter in enumerate(encounters):
        value = QUANTITY_VALUES[number % len(QUANTITY_VALUES)]
        unit = ("kg", "mm[Hg]", "%")[number % 3]
        quantity: dict[str, Any] = {"value": float(value) if "." in value else int(float(value))}
        quantity.update({"unit": unit, "system": "http://unitsofmeasure.org", "code": unit})
        if number % 7 == 6:
            quantity.pop("system")  # a unit without system
        derived.append(
            {
                "resourceType": "Observation",
                "id": f"derived-obs-{number:03d}",
                "status": "final",
                "code": {
                    "coding": [{"system": "http://loinc.org", "code": f"{29463 + number % 4}-7"}]
                },
                "subject": encounter["subject"],
                "encounter": {"reference": f"Encounter/{encounter['id']}"},
                "effectiveDateTime": encounter["period"]["start"],
                "valueQuantity": quantity,
            }
        )
        derived.append(
            {
                "resourceType": "RiskAssessment",
                "id": f"derived-risk-{number:03d}",
                "status": "final",
                "subject": encounter["subject"],
                "occurrenceDateTime": encounter["period"]["start"][:10],
                "prediction": [{"probabilityDecimal": float(Decimal(value) / 200)}],
            }
        )
    return derived


def load_sample() -> dict[str, list[dict[str, Any]]]:
    sample: dict[str, list[dict[str, Any]]] = {}
    for path in sorted(SAMPLE.glob("*.ndjson")):
        for resource in read_ndjson(path):
            sample.setdefault(resource["resourceType"], []).append(resource)
    for resource in derived_resources(sample):
        sample.setdefault(resource["resourceType"], []).append(resource)
    return sample


@dataclass(frozen=True)
class Param:
    resource_type: str
    code: str
    type: str
    expression: str


def official_params(resource_types: Iterable[str]) -> list[Param]:
    """Official parameters of the given types with an expression, of the types tested."""
    bundle = json.loads(DEFINITIONS.read_text())
    wanted = set(resource_types)
    found: dict[tuple[str, str], Param] = {}
    for entry in bundle["entry"]:
        definition = entry["resource"]
        if definition["type"] not in TYPES or not definition.get("expression"):
            continue
        if definition["code"].startswith("_"):
            continue  # _id, _lastUpdated...: server-assigned or not in the expression
        for base in definition["base"]:
            applies = wanted if base in ("Resource", "DomainResource") else {base} & wanted
            for resource_type in sorted(applies):
                key = (resource_type, definition["code"])
                found[key] = Param(
                    resource_type, definition["code"], definition["type"], definition["expression"]
                )
    return sorted(found.values(), key=lambda p: (p.resource_type, p.code))


_RESOLVE_IS = re.compile(r"resolve\(\)\s+is\s+([A-Za-z]+)")


def oracle_expression(expression: str) -> str:
    """The expression fhirpathpy is given (see DECISIONS['resolve'])."""
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


def scoped(expression: str, resource_type: str) -> str:
    """The union members that can yield something on ``resource_type``. A member rooted at
    another type yields nothing on it (FHIRPath: a leading type name filters on the
    resource's type), so dropping it changes no result; it saves fhirpathpy the work of
    the 30-member unions of the common parameters (patient, code, date, identifier)."""
    roots = (resource_type, "Resource", "DomainResource")
    kept = [
        member
        for member in union_members(expression)
        if re.match(r"^\(*\s*([A-Za-z]+)", member)[1] in roots  # type: ignore[index]
    ]
    return " | ".join(kept) if kept else expression


def evaluate(param: Param, resources: list[dict[str, Any]]) -> dict[str, list[Any]]:
    """id -> the values fhirpathpy finds; raises if fhirpathpy cannot evaluate it."""
    expression = scoped(oracle_expression(param.expression), param.resource_type)
    compiled = compile_fhirpath(expression, models["r4"])
    return {resource["id"]: list(compiled(resource, {})) for resource in resources}


# -- normalisation and parsing ------------------------------------------------------------

_NON_WORD = re.compile(r"[\W_]+")


def fold(text: str) -> str:
    """Case- and accent-insensitive form of a string."""
    decomposed = unicodedata.normalize("NFKD", text)
    plain = "".join(char for char in decomposed if not unicodedata.combining(char))
    plain = plain.casefold().replace("œ", "oe").replace("æ", "ae")
    return _NON_WORD.sub(" ", plain).strip()


_DATE = re.compile(
    r"^(\d{4})(?:-(\d{2})(?:-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2})(?:\.(\d+))?)?"
    r"(Z|[+-]\d{2}:\d{2})?)?)?)?$"
)

Range = tuple[datetime, datetime]  # [low, high) : high exclusive


def date_span(text: str) -> Range | None:
    """The instants a FHIR date/dateTime/instant covers, by its precision (high exclusive)."""
    match = _DATE.match(text)
    if not match:
        return None
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    if month is None:
        low = datetime(int(year), 1, 1, tzinfo=UTC)
        return low, low.replace(year=low.year + 1)
    if day is None:
        low = datetime(int(year), int(month), 1, tzinfo=UTC)
        days = calendar.monthrange(low.year, low.month)[1]
        return low, low + timedelta(days=days)
    if hour is None:
        low = datetime(int(year), int(month), int(day), tzinfo=UTC)
        return low, low + timedelta(days=1)
    tz = UTC
    if zone and zone != "Z":
        offset = timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6]))
        tz = timezone(offset if zone[0] == "+" else -offset)
    low = datetime(int(year), int(month), int(day), int(hour), int(minute), tzinfo=tz)
    if second is None:
        return low, low + timedelta(minutes=1)
    low = low.replace(second=int(second))
    if fraction is None:
        return low, low + timedelta(seconds=1)
    digits = fraction[:6]
    low = low.replace(microsecond=int(digits.ljust(6, "0")))
    return low, low + timedelta(microseconds=10 ** (6 - len(digits)))


FAR_PAST = datetime(1, 1, 1, tzinfo=UTC)
FAR_FUTURE = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)


def value_spans(value: Any) -> Iterator[Range]:
    """date, dateTime, instant, Period, Timing -> ranges."""
    if isinstance(value, str):
        span = date_span(value)
        if span:
            yield span
    elif isinstance(value, dict):
        if "start" in value or "end" in value:
            start = date_span(value["start"]) if "start" in value else None
            end = date_span(value["end"]) if "end" in value else None
            yield (start[0] if start else FAR_PAST, end[1] if end else FAR_FUTURE)
        for event in value.get("event", []):
            yield from value_spans(event)
        bounds = (value.get("repeat") or {}).get("boundsPeriod")
        if bounds:
            yield from value_spans(bounds)


def compare_ranges(prefix: str, target: tuple[Any, Any], search: tuple[Any, Any]) -> bool:
    """search.html prefixes over half-open ranges [low, high)."""
    low, high = target
    search_low, search_high = search
    if prefix == "eq":
        return low >= search_low and high <= search_high
    if prefix == "ne":
        return not (low >= search_low and high <= search_high)
    if prefix == "gt":
        return high > search_high
    if prefix == "lt":
        return low < search_low
    if prefix == "ge":
        return high > search_low
    if prefix == "le":
        return low < search_high
    if prefix == "sa":
        return low >= search_high
    if prefix == "eb":
        return high <= search_low
    raise ValueError(prefix)


def split_prefix(value: str) -> tuple[str, str]:
    if value[:2] in PREFIXES and (value[2:3].isdigit() or value[2:3] == "-"):
        return value[:2], value[2:]
    return "eq", value


def number_span(text: str) -> tuple[Decimal, Decimal]:
    """search.html (number): the precision of the value implies a range, [v - h, v + h)."""
    number = Decimal(text)
    exponent = number.as_tuple().exponent
    assert isinstance(exponent, int)
    half = Decimal(5) * Decimal(10) ** (exponent - 1)
    return number - half, number + half


def as_decimal(value: Any) -> Decimal | None:
    if isinstance(value, bool) or not isinstance(value, int | float | str | Decimal):
        return None
    try:
        return Decimal(str(value))
    except InvalidOperation:
        return None


# -- what a value offers to each parameter type --------------------------------------------

_CONTACT_KINDS = {"phone", "fax", "email", "pager", "url", "sms", "other"}


def tokens(value: Any) -> Iterator[tuple[str | None, str]]:
    """(system, code) pairs a token parameter matches on."""
    if isinstance(value, bool):
        yield None, "true" if value else "false"
    elif isinstance(value, str | int):
        yield None, str(value)
    elif isinstance(value, dict):
        if "coding" in value:  # CodeableConcept
            for coding in value["coding"]:
                yield from tokens(coding)
        elif "code" in value:  # Coding
            yield value.get("system"), str(value["code"])
        elif isinstance(value.get("value"), str):  # Identifier, ContactPoint
            system = value.get("system")
            yield (None if system in _CONTACT_KINDS else system), value["value"]


def token_texts(value: Any) -> Iterator[str]:
    """Texts of ``:text``: CodeableConcept.text, Coding.display, Identifier.type.text."""
    if not isinstance(value, dict):
        return
    concept = value.get("type") if "value" in value and "coding" not in value else value
    if not isinstance(concept, dict):
        return
    if isinstance(concept.get("text"), str):
        yield concept["text"]
    for coding in concept.get("coding", [concept]):
        if isinstance(coding.get("display"), str):
            yield coding["display"]


_STRING_PARTS = ("text", "family", "given", "prefix", "suffix", "line", "city", "district")
_STRING_PARTS += ("state", "postalCode", "country")


def strings(value: Any) -> Iterator[str]:
    """A string, or the parts of a HumanName / Address (search.html, string)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for part in _STRING_PARTS:
            found = value.get(part)
            for item in found if isinstance(found, list) else [found]:
                if isinstance(item, str):
                    yield item


def references(value: Any) -> Iterator[tuple[str | None, str | None, str]]:
    """(type, id, the reference as written) of a Reference, canonical or uri."""
    text = value.get("reference") if isinstance(value, dict) else value
    if not isinstance(text, str):
        return
    match = re.match(r"^(?:.*/)?([A-Z][A-Za-z]+)/([A-Za-z0-9\-.]{1,64})(?:/_history/[^/]+)?$", text)
    if match and "?" not in text:
        yield match[1], match[2], text
    else:
        yield None, None, text


def reference_identifiers(value: Any) -> Iterator[tuple[str | None, str]]:
    """(system, value) of a Reference.identifier (a logical reference)."""
    identifier = value.get("identifier") if isinstance(value, dict) else None
    if isinstance(identifier, dict) and isinstance(identifier.get("value"), str):
        yield identifier.get("system"), identifier["value"]


def identifier_matches(query: str, identifier: tuple[str | None, str]) -> bool:
    """``:identifier``: ``system|value``, or ``value`` in any system (token rules)."""
    return token_matches(query, *identifier)


def quantities(value: Any) -> Iterator[tuple[Decimal, str | None, str | None]]:
    if isinstance(value, dict):
        number = as_decimal(value.get("value"))
        if number is not None:
            yield number, value.get("system"), value.get("code") or value.get("unit")


# -- matching ----------------------------------------------------------------------------


def has_searchable(kind: str, values: list[Any]) -> bool:
    extractor: Callable[[Any], Iterator[Any]] = {
        "token": tokens,
        "string": strings,
        "date": value_spans,
        "reference": lambda v: iter([*references(v), *reference_identifiers(v)]),
        "quantity": quantities,
        "number": lambda v: iter([n] if (n := as_decimal(v)) is not None else []),
    }[kind]
    return any(True for value in values for _ in extractor(value))


def alternatives(query: str) -> list[str]:
    """search.html: a comma separates values (OR); ``\\,`` is a literal comma."""
    return [part.replace("\x00", ",") for part in query.replace("\\,", "\x00").split(",")]


def escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace(",", "\\,")


def matches(kind: str, modifier: str | None, query: str, values: list[Any]) -> bool:
    """Whether a resource whose parameter values are ``values`` matches ``query``."""
    if modifier == "not":
        return not matches(kind, None, query, values)
    if modifier != "missing":
        return any(match_one(kind, modifier, part, values) for part in alternatives(query))
    return match_one(kind, modifier, query, values)


def match_one(kind: str, modifier: str | None, query: str, values: list[Any]) -> bool:
    if modifier == "missing":
        return (query == "true") != has_searchable(kind, values)
    if kind == "token":
        if modifier == "text":
            wanted = fold(query)
            return any(fold(t).startswith(wanted) for v in values for t in token_texts(v))
        return any(token_matches(query, system, code) for v in values for system, code in tokens(v))
    if kind == "string":
        texts = [text for value in values for text in strings(value)]
        if modifier == "exact":
            return query in texts
        if modifier == "contains":
            return any(fold(query) in fold(text) for text in texts)
        return any(fold(text).startswith(fold(query)) for text in texts)
    if kind == "date":
        prefix, raw = split_prefix(query)
        search = date_span(raw)
        assert search is not None, raw
        return any(compare_ranges(prefix, span, search) for v in values for span in value_spans(v))
    if kind == "reference" and modifier == "identifier":
        return any(
            identifier_matches(query, identifier)
            for v in values
            for identifier in reference_identifiers(v)
        )
    if kind == "reference":
        return any(reference_matches(query, *found) for v in values for found in references(v))
    if kind == "number":
        prefix, raw = split_prefix(query)
        numbers = [n for v in values if (n := as_decimal(v)) is not None]
        return any(compare_number(prefix, raw, n) for n in numbers)
    if kind == "quantity":
        number, _, unit = query.partition("|")
        system, _, code = unit.rpartition("|") if unit else ("", "", "")
        prefix, raw = split_prefix(number)
        return any(
            compare_number(prefix, raw, n)
            and (not code or code == found_code)
            and (not system or system == found_system)
            for v in values
            for n, found_system, found_code in quantities(v)
        )
    raise ValueError(kind)


def compare_number(prefix: str, raw: str, number: Decimal) -> bool:
    """search.html (number): eq and ne use the range the search value's precision implies
    ('100' is [99.5, 100.5)); lt, le, gt, ge compare with the value exactly ('gt100':
    values greater than exactly 100)."""
    exact = Decimal(raw)
    low, high = number_span(raw)
    return {
        "eq": low <= number < high,
        "ne": not low <= number < high,
        "gt": number > exact,
        "lt": number < exact,
        "ge": number >= exact,
        "le": number <= exact,
    }[prefix]


def token_matches(query: str, system: str | None, code: str) -> bool:
    if "|" not in query:
        return code == query
    wanted_system, wanted_code = query.split("|", 1)
    if wanted_code == "":
        return system == wanted_system
    if wanted_system == "":
        return system is None and code == wanted_code
    return system == wanted_system and code == wanted_code


def reference_matches(
    query: str, target_type: str | None, target_id: str | None, text: str
) -> bool:
    if target_id is None:
        return query == text
    if "/" not in query:
        return query == target_id
    if query.startswith(("http://", "https://")):
        return query == text or query.endswith(f"/{target_type}/{target_id}")
    return query == f"{target_type}/{target_id}"


# -- queries -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Query:
    resource_type: str
    code: str
    kind: str
    modifier: str | None
    value: str
    expected: frozenset[str] = field(compare=False)

    @property
    def name(self) -> str:
        return f"{self.code}:{self.modifier}" if self.modifier else self.code

    def __str__(self) -> str:
        return f"{self.resource_type}?{self.name}={self.value}"


@dataclass
class Plan:
    queries: list[Query]
    skipped: dict[str, str]  # "Type.code" -> why fhirpathpy could not evaluate it
    without_values: list[str]  # parameters no resource of the sample has a value for
    per_kind: Counter[str]


def plan(
    sample: dict[str, list[dict[str, Any]]],
    indexed: Callable[[str, str], bool],
    seed: int = 20240,
) -> Plan:
    """The queries, with their expected ids, for every official parameter of the tested
    types that the hub indexes (``indexed(type, code)``)."""
    rng = random.Random(seed)
    queries: list[Query] = []
    skipped: dict[str, str] = {}
    without_values: list[str] = []
    for param in official_params(sample):
        if not indexed(param.resource_type, param.code):
            skipped[f"{param.resource_type}.{param.code}"] = "not indexed by the hub"
            continue
        resources = sample[param.resource_type]
        try:
            values = evaluate(param, resources)
        except Exception as error:
            skipped[f"{param.resource_type}.{param.code}"] = f"fhirpathpy: {error}"
            continue
        if not any(values.values()):
            without_values.append(f"{param.resource_type}.{param.code}")
        for modifier, value in candidates(param, values, rng):
            expected = frozenset(
                rid for rid, found in values.items() if matches(param.type, modifier, value, found)
            )
            queries.append(
                Query(param.resource_type, param.code, param.type, modifier, value, expected)
            )
    unique = list(dict.fromkeys(queries))
    return Plan(unique, skipped, without_values, Counter(q.kind for q in unique))


def candidates(
    param: Param, values: dict[str, list[Any]], rng: random.Random
) -> list[tuple[str | None, str]]:
    """(modifier, value) pairs to search for: real values of the sample, near misses,
    precision boundaries and prefixes; and ``:missing`` both ways."""
    found = [v for resource_values in values.values() for v in resource_values]
    if not found:  # nothing to search for: the hub must find nothing either
        return [("missing", "false")]
    out: list[tuple[str | None, str]] = [("missing", "true"), ("missing", "false")]
    generator = {
        "token": token_candidates,
        "string": string_candidates,
        "date": date_candidates,
        "reference": reference_candidates,
        "quantity": quantity_candidates,
        "number": number_candidates,
    }[param.type]
    out.extend(generator(found, rng))
    return out


def pick(items: list[Any], rng: random.Random, count: int) -> list[Any]:
    distinct = list(dict.fromkeys(items))
    return rng.sample(distinct, min(count, len(distinct)))


def token_candidates(found: list[Any], rng: random.Random) -> Iterator[tuple[str | None, str]]:
    pairs = [pair for value in found for pair in tokens(value)]
    for system, raw_code in pick(pairs, rng, 1):
        code = escape(raw_code)
        yield None, code
        yield None, code + "0"  # near miss
        yield None, f"{escape(system or '')}|{code}"
        yield None, f"|{code}"
        if system:
            yield None, f"{escape(system)}|"
            yield "not", f"{escape(system)}|{code}"
        if code.upper() != code:
            yield None, code.upper()
    texts = [text for value in found for text in token_texts(value)]
    for text in pick(texts, rng, 1):
        yield "text", escape(text.split()[0].lower())
    if len(pairs) > 1:
        yield None, f"{escape(pairs[0][1])},{escape(pairs[-1][1])}"  # comma: OR


def string_candidates(found: list[Any], rng: random.Random) -> Iterator[tuple[str | None, str]]:
    texts = [text for value in found for text in strings(value) if text.strip()]
    for text in pick(texts, rng, 1):
        head = text[: max(2, len(text) // 2)].rstrip(" ,.-'/()")
        yield None, escape(head)
        yield None, escape(accented(text.upper()))
        yield None, escape(text) + "zz"  # near miss
        yield "exact", escape(text)
        yield "exact", escape(text.lower() if text.lower() != text else text.upper())
        middle = text[1:5].strip(" ,.-'/()")
        if middle:
            yield "contains", escape(middle)
    yield None, "Hélène"  # unicode: no such value in the sample


def accented(text: str) -> str:
    """The text with its vowels accented ("ANNA" -> "ÁNNÁ"): the same string to a search."""
    return text.translate(str.maketrans("AEIOUaeiou", "ÁÉÍÓÚáéíóú"))


def date_candidates(found: list[Any], rng: random.Random) -> Iterator[tuple[str | None, str]]:
    texts: list[str] = []
    for value in found:
        if isinstance(value, str):
            texts.append(value)
        elif isinstance(value, dict):
            texts.extend(v for v in (value.get("start"), value.get("end")) if isinstance(v, str))
    for text in pick(texts, rng, 1):
        day, month, year = text[:10], text[:7], text[:4]
        yield None, text
        yield None, day
        yield None, f"eq{month}"
        for prefix in ("ne", "gt", "lt", "ge", "le", "sa", "eb"):
            yield None, f"{prefix}{day}"
        yield None, f"sa{year}"
        yield None, f"eb{year}"
        if len(text) > 10:
            yield None, f"ge{text}"
            yield None, f"le{text}"
            # precision boundary: the minute the value starts in
            minute = to_minute(text)
            yield None, minute
            yield None, f"gt{minute}"


def to_minute(text: str) -> str:
    """The dateTime at minute precision, its zone kept."""
    zone = re.search(r"(Z|[+-]\d{2}:\d{2})$", text)
    return text[:16] + (zone[1] if zone else "")


def reference_candidates(found: list[Any], rng: random.Random) -> Iterator[tuple[str | None, str]]:
    literal = [(t, i) for value in found for t, i, _ in references(value) if i is not None]
    identifiers = [found for value in found for found in reference_identifiers(value)]
    for system, value in pick(identifiers, rng, 1):
        yield "identifier", f"{escape(system or '')}|{escape(value)}"
        yield "identifier", escape(value)
        yield "identifier", f"{escape(system or '')}|{escape(value)}0"  # near miss
    for target_type, target_id in pick(literal, rng, 1):
        yield None, f"{target_type}/{target_id}"
        yield None, target_id
        yield None, f"Group/{target_id}"  # near miss: wrong type
        yield None, f"{target_type}/{target_id[:-1]}"  # near miss: another id
    yield None, "Patient/no-such-patient"


def quantity_candidates(found: list[Any], rng: random.Random) -> Iterator[tuple[str | None, str]]:
    for number, system, code in pick([q for v in found for q in quantities(v)], rng, 4):
        text = format(number, "f")
        yield None, text
        yield None, f"{text}|{system or ''}|{code}"
        yield None, f"{text}||{code}"
        yield None, f"{text}|http://unitsofmeasure.org|other"  # near miss: unit
        for prefix in ("gt", "lt", "ge", "le", "ne"):
            yield None, f"{prefix}{text}"
        yield from ((None, value) for value in coarser(number))


def number_candidates(found: list[Any], rng: random.Random) -> Iterator[tuple[str | None, str]]:
    numbers = [n for v in found if (n := as_decimal(v)) is not None]
    for number in pick(numbers, rng, 4):
        text = format(number, "f")
        yield None, text
        for prefix in ("gt", "lt", "ge", "le", "ne"):
            yield None, f"{prefix}{text}"
        yield from ((None, value) for value in coarser(number))


def coarser(number: Decimal) -> Iterator[str]:
    """Values one digit coarser whose precision range has ``number`` on its edge: with
    72.5, '72' ([71.5, 72.5): excluded) and '73' ([72.5, 73.5): included)."""
    exponent = int(number.as_tuple().exponent)  # type: ignore[arg-type]
    step = Decimal(10) ** (exponent + 1)
    below = number.quantize(step, rounding="ROUND_FLOOR")
    yield format(below, "f")
    yield format(below + step, "f")
