"""Typed index values pulled from a resource, one extractor per search parameter type."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from maillage.fhir.indexing.fhirpath import Pair
from maillage.fhir.indexing.normalize import date_range, normalize_string, token_hash

# Dates far enough apart to stand for "open" period bounds.
OPEN_LOW = datetime.fromisoformat("0001-01-01T00:00:00+00:00")
OPEN_HIGH = datetime.fromisoformat("9999-12-31T23:59:59+00:00")


@dataclass
class IndexRows:
    """Rows for each index table, without the resource key (added by the writer)."""

    token: list[tuple[str, str | None, str | None, int, int]] = field(default_factory=list)
    string: list[tuple[str, str, str]] = field(default_factory=list)
    date: list[tuple[str, datetime, datetime]] = field(default_factory=list)
    number: list[tuple[str, Decimal]] = field(default_factory=list)
    quantity: list[tuple[str, str | None, str | None, Decimal]] = field(default_factory=list)
    uri: list[tuple[str, str]] = field(default_factory=list)
    reference: list[tuple[str, str | None, str | None, str | None]] = field(default_factory=list)


def add_token(
    rows: IndexRows, resource_type: str, param: str, system: str | None, code: str | None
) -> None:
    rows.token.append(
        (
            param,
            system,
            code,
            token_hash(resource_type, param, code),
            token_hash(resource_type, param, system, code),
        )
    )


def tokens_of(node: Pair) -> Iterator[tuple[str | None, str | None]]:
    value = node[0]
    if isinstance(value, bool):
        yield None, "true" if value else "false"
    elif isinstance(value, str | int):
        yield None, str(value)
    elif isinstance(value, dict):
        if "coding" in value or node[1] == "CodeableConcept":
            for coding in value.get("coding", []):
                yield from tokens_of((coding, "Coding"))
        elif "code" in value:
            yield value.get("system"), str(value["code"])
        elif "value" in value and isinstance(value["value"], str):
            # Identifier (system|value) or ContactPoint (value; its system is a kind)
            system = value.get("system")
            yield (None if system in _CONTACT_SYSTEMS else system), value["value"]


def token_texts(node: Pair) -> Iterator[str]:
    """Texts a token's ``:text`` search reads: CodeableConcept.text, Coding.display,
    Identifier.type.text (indexed as strings under ``<param>:text``)."""
    value = node[0]
    if not isinstance(value, dict):
        return
    concept = value.get("type") if "value" in value and "coding" not in value else value
    if not isinstance(concept, dict):
        return
    if isinstance(concept.get("text"), str):
        yield concept["text"]
    codings = concept.get("coding")
    for coding in codings if isinstance(codings, list) else [concept]:
        if isinstance(coding, dict) and isinstance(coding.get("display"), str):
            yield coding["display"]


def identifier_types(node: Pair) -> Iterator[tuple[str | None, str]]:
    """(type system, "<type code>|<value>") of an Identifier with a coded type, for
    ``:of-type`` (indexed as tokens under ``<param>:of-type``)."""
    value = node[0]
    if not isinstance(value, dict) or not isinstance(value.get("value"), str):
        return
    kind = value.get("type")
    if not isinstance(kind, dict):
        return
    for coding in kind.get("coding", []):
        if isinstance(coding, dict) and coding.get("code"):
            yield coding.get("system"), f"{coding['code']}|{value['value']}"


_CONTACT_SYSTEMS = {"phone", "fax", "email", "pager", "url", "sms", "other"}
_NAME_PARTS = ("text", "family", "given", "prefix", "suffix")
_ADDRESS_PARTS = ("text", "line", "city", "district", "state", "postalCode", "country")


def strings_of(node: Pair) -> Iterator[str]:
    value = node[0]
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for part in (*_NAME_PARTS, *_ADDRESS_PARTS):
            part_value = value.get(part)
            if isinstance(part_value, str):
                yield part_value
            elif isinstance(part_value, list):
                yield from (item for item in part_value if isinstance(item, str))


def dates_of(node: Pair) -> Iterator[tuple[datetime, datetime]]:
    value = node[0]
    if isinstance(value, str):
        bounds = date_range(value)
        if bounds:
            yield bounds
    elif isinstance(value, dict):
        if "start" in value or "end" in value:
            start = date_range(value["start"]) if "start" in value else None
            end = date_range(value["end"]) if "end" in value else None
            yield (start[0] if start else OPEN_LOW, end[1] if end else OPEN_HIGH)
        elif "event" in value:
            for event in value["event"]:
                yield from dates_of((event, None))
        elif "repeat" in value and isinstance(value["repeat"], dict):
            bounds = value["repeat"].get("boundsPeriod")
            if bounds:
                yield from dates_of((bounds, None))


def decimal_of(value: Any) -> Decimal | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        return Decimal(str(value))
    except InvalidOperation:
        return None


def references_of(node: Pair) -> Iterator[tuple[str | None, str | None, str | None]]:
    """(target_type, target_id, target_url) for a Reference or canonical/uri."""
    value = node[0]
    if isinstance(value, str):
        yield None, None, value
        return
    if not isinstance(value, dict):
        return
    reference = value.get("reference")
    target_type = value.get("type")
    if isinstance(reference, str):
        row = split_reference(reference)
        target_type = row[0]
        yield row
    identifier = value.get("identifier")
    if isinstance(identifier, dict) and identifier.get("value"):
        # Kept for :identifier searches: system|value in target_url, with the type the
        # reference names (what ``resolve() is`` tests: ``patient:identifier`` reads the
        # ``subject`` rows to a Patient, definitions.reference_rows).
        yield (
            target_type if isinstance(target_type, str) else None,
            None,
            f"{identifier.get('system', '')}|{identifier['value']}",
        )


def split_reference(reference: str) -> tuple[str | None, str | None, str | None]:
    """Relative ``Type/id`` (optionally ``/_history/n``) -> (type, id, None); else the URL."""
    segments = reference.split("/")
    if len(segments) >= 4 and segments[-2] == "_history":
        segments = segments[:-2]
    if len(segments) == 2 and segments[0][:1].isupper():
        return segments[0], segments[1], None
    if len(segments) > 2 and segments[-2][:1].isupper():
        return segments[-2], segments[-1], reference
    return None, None, reference


# Index rows must fit a btree entry (about 2,700 bytes): long texts are indexed by their
# start, which is what a starts-with search compares anyway.
MAX_INDEXED_CHARS = 512


def normalized(value: str) -> tuple[str, str]:
    return normalize_string(value[: MAX_INDEXED_CHARS * 2])[:MAX_INDEXED_CHARS], value
