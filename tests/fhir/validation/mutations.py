"""Samples and systematic mutations for the differential tests of the validator.

``synthea_resources`` reads the shared Synthea samples (``shared/data/synthea`` beside
the repository). ``mutations`` derives, from one valid resource, a set of broken copies:
each names its class, whether fhir.resources is expected to refuse it too (``agree``)
or only the specification does (a documented difference), and the expression the
compiled validator must report. Sites are found by walking the resource with the
compiled schemas; whether a mutation is really invalid is judged by fhir.resources.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from maillage.fhir.validation_schema import resource_schema
from maillage.fhir.validation_schema.compiler import (
    COMPLEX,
    PRIMITIVE,
    PRIMITIVE_EXT,
    RESOURCE,
    Rule,
    TypeSchema,
    child_schema,
)

SYNTHEA = Path(__file__).resolve().parents[3] / ".." / "shared" / "data" / "synthea"
SAMPLES = ("10-patients", "1000-patients")

Location = tuple[str | int, ...]

STRING_TYPES = {
    "string",
    "markdown",
    "code",
    "id",
    "uri",
    "url",
    "canonical",
    "oid",
    "uuid",
    "base64Binary",
    "xhtml",
}
TEMPORAL_TYPES = {"date", "dateTime", "instant", "time"}
INTEGER_TYPES = {"integer", "unsignedInt", "positiveInt", "integer64"}
# Bad lexical forms: (value, fhir.resources refuses it too).
BAD_FORMS: dict[str, list[tuple[Any, bool]]] = {
    "date": [("2019-02-29", True), ("2020-13", True), ("20-01-01", True), ("2020/01/01", True)],
    "dateTime": [
        ("2020-01-01T10:00:00", True),  # a time needs a zone
        ("2020-01-01T25:00:00Z", True),
        ("2021-02-29", True),
        ("2020-01-01 10:00:00Z", True),
    ],
    "instant": [("2020-01-01", True), ("2020-01-01T00:00:00", True), ("2021-04-31T00:00Z", True)],
    "time": [("24:00:00", True), ("10:00", True), ("10:00:00Z", True)],
    "id": [("a_b", True), ("has space", True), ("", True), ("x" * 65, False)],
    "code": [(" lead", True), ("two  spaces", True), ("trail ", True), ("", True)],
    "uri": [("has space", False), ("", False)],
    "canonical": [("has space", False)],
    "url": [("http://a b", False)],
    "oid": [("1.2.3", True), ("urn:oid:1", True)],
    "base64Binary": [("abc", True), ("ab$c=", False)],
    "string": [("", True)],
    "markdown": [("", False)],
}
# A valid value of each primitive type, to put a second member in a choice group.
GOOD_VALUES: dict[str, Any] = {
    "boolean": True,
    "string": "x",
    "markdown": "x",
    "code": "x",
    "uri": "urn:x",
    "url": "http://example.org",
    "canonical": "http://example.org/x",
    "integer": 1,
    "unsignedInt": 1,
    "positiveInt": 1,
    "decimal": 1.5,
    "date": "2020-01-01",
    "dateTime": "2020-01-01T00:00:00Z",
    "instant": "2020-01-01T00:00:00Z",
    "time": "10:00:00",
    "id": "x",
    "oid": "urn:oid:1.2.3",
}
AN_EXTENSION = {"url": "http://example.org/x", "valueString": "x"}


@dataclass(frozen=True)
class Mutation:
    kind: str
    agree: bool  # fhir.resources refuses it too (else only the specification does)
    expression: str  # where the compiled validator must report
    resource: dict[str, Any]
    in_backbone: bool = False
    valid: bool = False  # a change both must accept


def synthea_resources(sample: str) -> list[dict[str, Any]]:
    folder = SYNTHEA / sample
    resources: list[dict[str, Any]] = []
    for path in sorted(folder.glob("*.ndjson")):
        with path.open("rb") as lines:
            resources.extend(orjson.loads(line) for line in lines if line.strip())
    return resources


def changed(resource: dict[str, Any], where: Location, edit: Callable[[Any], Any]) -> Any:
    """A copy of ``resource`` with the node at ``where`` replaced by ``edit(node)``;
    only the containers along the way are copied."""
    if not where:
        return edit(resource)
    head, rest = where[0], where[1:]
    if isinstance(resource, dict):
        copy: Any = dict(resource)
    else:
        copy = list(resource)
    copy[head] = changed(resource[head], rest, edit)  # type: ignore[index]
    return copy


def _without(key: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
    return lambda node: {k: v for k, v in node.items() if k != key}


def _with(key: str, value: Any) -> Callable[[dict[str, Any]], dict[str, Any]]:
    return lambda node: {**node, key: value}


def _sites(
    node: dict[str, Any], schema: TypeSchema, expression: str, where: Location, backbone: bool
) -> Iterator[tuple[dict[str, Any], TypeSchema, str, Location, bool]]:
    """Every object of the resource, with its schema, expression and location."""
    yield node, schema, expression, where, backbone
    for key, value in node.items():
        rule = schema.rules.get(key)
        if rule is None or rule.kind not in (COMPLEX, RESOURCE):
            continue
        items = list(enumerate(value)) if rule.is_list else [(None, value)]
        for index, item in items:
            suffix = f".{key}" if index is None else f".{key}[{index}]"
            place = (*where, key) if index is None else (*where, key, index)
            if rule.kind == RESOURCE:
                child = resource_schema(item["resourceType"])
                assert child is not None
            else:
                child = child_schema(rule)
            inner = backbone or _is_backbone(child)
            yield from _sites(item, child, expression + suffix, place, inner)


def _is_backbone(schema: TypeSchema) -> bool:
    return any(base.__name__ == "BackboneElement" for base in schema.model.__mro__)


def mutations(resource: dict[str, Any]) -> Iterator[Mutation]:
    root = resource_schema(resource["resourceType"])
    assert root is not None
    for node, schema, expr, where, backbone in _sites(
        resource, root, resource["resourceType"], (), False
    ):

        def make(kind: str, agree: bool, at: str, edit: Callable[[Any], Any]) -> Mutation:
            return Mutation(kind, agree, at, changed(resource, where, edit), backbone)  # noqa: B023

        yield from _valid_changes(resource, node, schema, expr, where)
        yield make("unknown-element", True, f"{expr}.zzUnknown", _with("zzUnknown", "x"))
        for key, _ in schema.required:
            if key in node:
                yield make("drop-required", True, f"{expr}.{key}", _without(key))
        for group, members in schema.choices.items():
            yield from _second_choice(make, node, schema, expr, group, members)
        for key, value in node.items():
            rule = schema.rules.get(key)
            if rule is None or rule.kind == PRIMITIVE_EXT:
                continue
            at = f"{expr}.{key}"
            if rule.is_list:
                yield make("unwrap-list", True, at, _with(key, value[0]))
                yield make("empty-array", False, at, _with(key, []))
            else:
                yield make("wrap-single", True, at, _with(key, [value]))
                yield make("null", False, at, _with(key, None))
            if rule.kind == PRIMITIVE:
                items = list(enumerate(value)) if rule.is_list else [(None, value)]
                for index, item in items[:1]:
                    target = at if index is None else f"{at}[{index}]"
                    for kind, agree, bad in _primitive_breaks(rule, item):
                        edit = _with(key, bad if index is None else _put(value, index, bad))
                        yield make(kind, agree, target, edit)
        if schema.name != "Resource" and "contained" in schema.rules and not where:
            bad_contained = [{"resourceType": "NotAType", "id": "x"}]
            yield make(
                "contained-unknown-type",
                True,
                f"{expr}.contained[0].resourceType",
                _with("contained", bad_contained),
            )


def _put(items: list[Any], index: int, value: Any) -> list[Any]:
    copy = list(items)
    copy[index] = value
    return copy


def _second_choice(
    make: Callable[[str, bool, str, Callable[[Any], Any]], Mutation],
    node: dict[str, Any],
    schema: TypeSchema,
    expr: str,
    group: str,
    members: tuple[str, ...],
) -> Iterator[Mutation]:
    present = [key for key in members if key in node]
    if not present:
        return
    others = [schema.rules[key] for key in members if key not in node]
    primitive = [rule for rule in others if rule.fhir_type in GOOD_VALUES]
    if primitive:
        extra: tuple[str, Any] = (primitive[0].key, GOOD_VALUES[primitive[0].fhir_type])
    elif others:
        extra = (others[0].key, {"extension": [AN_EXTENSION]})
    else:
        return
    yield make("two-choices", True, f"{expr}.{group}[x]", _with(*extra))


def _primitive_breaks(rule: Rule, value: Any) -> Iterator[tuple[str, bool, Any]]:
    """(class, fhir.resources refuses it too, the broken value) for one primitive."""
    fhir_type = rule.fhir_type
    if fhir_type in STRING_TYPES:
        yield "string-to-number", True, 12
        yield "string-to-bool", True, True
    elif fhir_type in TEMPORAL_TYPES:
        # fhir.resources reads a number as a Unix time for date, dateTime and instant
        yield "temporal-to-number", fhir_type == "time", 12
        yield "string-to-bool", True, True
    elif fhir_type == "boolean":
        yield "bool-to-string", True, "true"
        yield "bool-to-number", True, 1
    elif fhir_type in INTEGER_TYPES:
        yield "number-to-string", True, str(value)
        yield "number-to-bool", True, True
        yield "integer-with-fraction", False, float(value)
    elif fhir_type == "decimal":
        yield "number-to-string", True, str(value)
        yield "number-to-bool", True, True
    for bad, agree in BAD_FORMS.get(fhir_type, []):
        yield f"bad-{fhir_type}", agree, bad
    if rule.enum is not None:
        yield "bad-required-code", False, "zz-not-a-code"


def _valid_changes(
    resource: dict[str, Any], node: dict[str, Any], schema: TypeSchema, expr: str, where: Location
) -> Iterator[Mutation]:
    """Changes that keep the resource valid: an extension on a primitive, one optional
    element fewer."""
    needed = {key for key, _ in schema.required}
    for group in schema.required_choices:
        needed.update(schema.choices[group])
    for key, value in node.items():
        rule = schema.rules.get(key)
        if rule is None or rule.kind == PRIMITIVE_EXT:
            continue
        if rule.kind == PRIMITIVE and rule.sibling and rule.sibling not in node:
            extension = {"extension": [AN_EXTENSION]}
            ext: Any = [extension] + [None] * (len(value) - 1) if rule.is_list else extension
            edit = _with(rule.sibling, ext)
            yield Mutation(
                "add-primitive-extension",
                False,
                f"{expr}.{rule.sibling}",
                changed(resource, where, edit),
                valid=True,
            )
        left = [other for other in node if other not in (key, "id", "resourceType")]
        if key not in needed and (left or not where):
            yield Mutation(
                "drop-optional",
                False,
                f"{expr}.{key}",
                changed(resource, where, _without(key)),
                valid=True,
            )
