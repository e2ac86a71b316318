"""The R4 search matching rules, written out from https://hl7.org/fhir/R4/search.html for
the conformance oracle: what a value offers to each parameter type, and whether a set of
values matches a searched value (prefixes, modifiers, comma = OR).

Nothing here imports the hub; the decisions where the specification leaves a choice are
listed in ``oracle.DECISIONS``.
"""

from __future__ import annotations

import calendar
import functools
import re
import unicodedata
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from typing import Any

PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap")
# ``ap`` (search.html, prefixes): "the recommended value for the approximation is 10% of
# the stated value (or for a date, 10% of the gap between now and the date)".
AP_SHARE = Decimal("0.1")
NOW = datetime.now(UTC)

# -- normalisation and parsing ------------------------------------------------------------

_NON_WORD = re.compile(r"[\W_]+")


@functools.lru_cache(maxsize=65536)
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


@functools.lru_cache(maxsize=65536)
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
    if prefix == "ap":
        # 10% of the gap between now and the date, on both sides of the searched range
        gap = abs(NOW - search_low) / 10
        return low < search_high + gap and high > search_low - gap
    raise ValueError(prefix)


def split_prefix(value: str) -> tuple[str, str]:
    if value[:2] in PREFIXES and (value[2:3].isdigit() or value[2:3] == "-"):
        return value[:2], value[2:]
    return "eq", value


@functools.lru_cache(maxsize=65536)
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


_STRING_PARTS: tuple[str, ...] = ("text", "family", "given", "prefix", "suffix", "line")
_STRING_PARTS += ("city", "district", "state", "postalCode", "country")


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
        "uri": uris,
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
    if kind == "token" and modifier == "of-type":
        return any(of_type_matches(query, v) for v in values)
    if kind == "uri":
        return any(uri_matches(modifier, query, uri) for v in values for uri in uris(v))
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
    if kind == "reference" and modifier:  # :[type] (search.html: subject:Patient=23)
        return any(
            target_type == modifier and target_id == query
            for v in values
            for target_type, target_id, _ in references(v)
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
    if prefix == "ap":  # 10% of the stated value, or within its precision range
        margin = abs(exact) * AP_SHARE
        return exact - margin <= number <= exact + margin or low <= number < high
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


def uris(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value


def uri_matches(modifier: str | None, query: str, uri: str) -> bool:
    """search.html (uri): exact and case-sensitive by default; ``:below`` the URIs that
    start with the value; ``:above`` the URIs the value starts with (its parents)."""
    if modifier == "below":
        return uri.startswith(query)
    if modifier == "above":
        return query.startswith(uri)
    return uri == query


def of_type_matches(query: str, value: Any) -> bool:
    """``:of-type`` (search.html, token): ``system|code|value``, the system and code of one
    of the Identifier.type codings, and the Identifier.value."""
    system, code, wanted = query.split("|", 2)
    if not isinstance(value, dict) or value.get("value") != wanted:
        return False
    kind = value.get("type")
    codings = kind.get("coding", []) if isinstance(kind, dict) else []
    return any(
        coding.get("code") == code and (coding.get("system") or "") == system for coding in codings
    )
