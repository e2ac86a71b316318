"""Search values the conformance oracle asks for, generated from the data's own values:
real values, near misses, precision boundaries, every prefix, unicode variants, and the
modifiers of each parameter type."""

from __future__ import annotations

import random
import re
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

from tests.fhir.search.oracle_rules import (
    as_decimal,
    escape,
    quantities,
    reference_identifiers,
    references,
    strings,
    token_texts,
    tokens,
    uris,
)

Candidate = tuple[str | None, str]  # (modifier, value)


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
        yield "text", escape(accented(text.upper()))  # the whole text, case and accents
        yield "text", escape(text) + "zz"  # near miss
    for system, code, value in pick([t for v in found for t in typed_identifiers(v)], rng, 2):
        yield "of-type", f"{escape(system)}|{escape(code)}|{escape(value)}"
        yield "of-type", f"{escape(system)}|{escape(code)}|{escape(value)}0"  # near miss
        yield "of-type", f"{escape(system)}|{escape(code)}X|{escape(value)}"  # another type
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
        yield None, f"ap{day}"
        yield None, f"ap{month}"
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
        yield target_type, target_id  # :[type] (subject:Patient=23)
        yield target_type, target_id[:-1]
    yield None, "Patient/no-such-patient"


def quantity_candidates(found: list[Any], rng: random.Random) -> Iterator[tuple[str | None, str]]:
    for number, system, code in pick([q for v in found for q in quantities(v)], rng, 4):
        text = format(number, "f")
        yield None, text
        yield None, f"{text}|{system or ''}|{code}"
        yield None, f"{text}||{code}"
        yield None, f"{text}|http://unitsofmeasure.org|other"  # near miss: unit
        for prefix in ("gt", "lt", "ge", "le", "ne", "ap"):
            yield None, f"{prefix}{text}"
        yield None, f"ap{text}|{system or ''}|{code}"
        yield from ((None, value) for value in coarser(number))
        yield from ((None, f"ap{value}") for value in near(number))


def number_candidates(found: list[Any], rng: random.Random) -> Iterator[tuple[str | None, str]]:
    numbers = [n for v in found if (n := as_decimal(v)) is not None]
    for number in pick(numbers, rng, 4):
        text = format(number, "f")
        yield None, text
        for prefix in ("gt", "lt", "ge", "le", "ne", "ap"):
            yield None, f"{prefix}{text}"
        yield from ((None, value) for value in coarser(number))
        yield from ((None, f"ap{value}") for value in near(number))


def near(number: Decimal) -> Iterator[str]:
    """Values about 8% and 12% away: inside and outside the 10% of ``ap``."""
    for share in ("1.08", "0.88"):
        yield format((number * Decimal(share)).quantize(Decimal("0.001")), "f")


def coarser(number: Decimal) -> Iterator[str]:
    """Values one digit coarser whose precision range has ``number`` on its edge: with
    72.5, '72' ([71.5, 72.5): excluded) and '73' ([72.5, 73.5): included)."""
    exponent = int(number.as_tuple().exponent)
    step = Decimal(10) ** (exponent + 1)
    below = number.quantize(step, rounding="ROUND_FLOOR")
    yield format(below, "f")
    yield format(below + step, "f")


def typed_identifiers(value: Any) -> Iterator[tuple[str, str, str]]:
    """(type system, type code, value) of an Identifier with a coded type."""
    if not isinstance(value, dict) or not isinstance(value.get("value"), str):
        return
    kind = value.get("type")
    for coding in kind.get("coding", []) if isinstance(kind, dict) else []:
        if coding.get("code") and coding.get("system"):
            yield coding["system"], coding["code"], value["value"]


def uri_candidates(found: list[Any], rng: random.Random) -> Iterator[Candidate]:
    for uri in pick([u for v in found for u in uris(v)], rng, 1):
        yield None, escape(uri)
        yield None, escape(uri.upper())  # case-sensitive: a miss
        yield None, escape(uri) + "x"  # near miss
        if uri.startswith(("http://", "https://")):
            parent = uri.rsplit("/", 1)[0]
            yield "below", escape(parent)
            yield "below", escape(parent + "/")
            yield "below", escape(uri)
            yield "below", escape(uri + "/more")  # below something longer: a miss
            yield "above", escape(uri + "/_history/2")
            yield "above", escape(uri)
            yield "above", escape(parent)  # above its parent: a miss
    yield None, "http://example.org/fhir/nothing-here"
