"""A compiler for the FHIRPath subset used by the official R4 search parameters.

The R4 definitions use paths, unions (``|``), ``as Type`` / ``.as(Type)``,
``.where(resolve() is Type)``, ``.where(field='value')`` and, in a handful of
cases, ``exists()`` and boolean operators. Everything but the last is compiled
here into plain Python steps evaluated over the stored JSON; an expression
outside the subset raises ``UnsupportedExpression`` and its parameter is left
unindexed (and unadvertised) rather than indexed wrongly.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_INDEXED = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)\[(\d+)\]$")
_WHERE_EQUALS = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)\s*=\s*'([^']*)'$")
_WHERE_RESOLVE = re.compile(r"^resolve\(\)\s+is\s+([A-Za-z]+)$")


class UnsupportedExpression(ValueError):
    pass


class Node(NamedTuple):
    """A value reached by a path, with its FHIR type when a choice element told it."""

    value: Any
    type_hint: str | None = None


@dataclass(frozen=True)
class _Field:
    name: str
    index: int | None = None


@dataclass(frozen=True)
class _AsType:
    type_name: str


@dataclass(frozen=True)
class _WhereEquals:
    field: str
    value: str


@dataclass(frozen=True)
class _WhereReferenceTo:
    type_name: str


_Step = _Field | _AsType | _WhereEquals | _WhereReferenceTo


# Evaluation works on (value, type hint) pairs; each step maps a list of pairs to the next.
Pair = tuple[Any, str | None]  # a Node is one too: what indexing reads
_Runner = Callable[[list[Pair]], list[Pair]]


@dataclass(frozen=True)
class CompiledPath:
    """Alternatives (union members), each a list of steps after the root type."""

    alternatives: tuple[tuple[_Step, ...], ...]
    _runners: tuple[tuple[_Runner, ...], ...] = field(
        init=False, repr=False, compare=False, default=()
    )
    _starts: tuple[tuple[str, tuple[_Runner, ...]], ...] | None = field(
        init=False, repr=False, compare=False, default=None
    )

    def __post_init__(self) -> None:
        runners = tuple(tuple(_runner(step) for step in steps) for steps in self.alternatives)
        object.__setattr__(self, "_runners", runners)
        # Every official expression starts with a field of the resource: that first step
        # is done inline (a dict lookup) rather than through a runner.
        simple = all(
            steps and isinstance(steps[0], _Field) and steps[0].index is None
            for steps in self.alternatives
        )
        starts = (
            tuple(
                (steps[0].name, runs[1:])  # type: ignore[union-attr]
                for steps, runs in zip(self.alternatives, runners, strict=True)
            )
            if simple
            else None
        )
        object.__setattr__(self, "_starts", starts)

    @property
    def first_fields(self) -> frozenset[str] | None:
        """Names the first step of each alternative reads on the resource, or None when
        an alternative does not start with a field (it must then always be evaluated)."""
        names = set()
        for steps in self.alternatives:
            if not steps or not isinstance(steps[0], _Field):
                return None
            names.add(steps[0].name)
        return frozenset(names)

    def evaluate(
        self, resource: dict[str, Any], choices: dict[str, list[Pair]] | None = None
    ) -> list[Node]:
        """The nodes the path reaches in ``resource``; ``choices`` (empty at first, then
        kept by the caller for every path it evaluates on the same resource) remembers
        the resource's choice elements (``value[x]``) as they are looked up: a resource's
        parameters look up the same ones many times."""
        return [Node(value, hint) for value, hint in self.evaluate_pairs(resource, choices)]

    def evaluate_pairs(
        self, resource: dict[str, Any], choices: dict[str, list[Pair]] | None = None
    ) -> list[Pair]:
        """``evaluate`` as plain (value, type hint) tuples: what indexing reads, without
        building a Node for each (indexing runs for every write and every loaded row)."""
        if self._starts is not None:
            return self._evaluate_from_fields(resource, choices)
        found: list[Pair] = []
        for runners in self._runners:
            pairs: list[Pair] = [(resource, None)]
            for run in runners:
                pairs = run(pairs)
                if not pairs:
                    break
            else:
                found.extend(pairs)
        return found

    def _evaluate_from_fields(
        self, resource: dict[str, Any], choices: dict[str, list[Pair]] | None
    ) -> list[Pair]:
        assert self._starts is not None
        found: list[Pair] = []
        for name, runners in self._starts:
            child = resource.get(name, _ABSENT)
            pairs: list[Pair]
            if child is _ABSENT:
                if name not in CHOICE_NAMES:
                    continue
                if choices is None:
                    pairs = _choice_children(resource, name)
                else:
                    known = choices.get(name)
                    if known is None:
                        known = choices[name] = _choice_children(resource, name)
                    pairs = list(known)  # the runners must not share one list
            elif isinstance(child, list):
                pairs = [(item, None) for item in child]
            elif child is not None:
                pairs = [(child, None)]
            else:
                continue
            for run in runners:
                if not pairs:
                    break
                pairs = run(pairs)
            if pairs:
                found.extend(pairs)
        return found


def compile_expression(expression: str) -> CompiledPath:
    alternatives = []
    for member in _split_top_level(expression, "|"):
        alternatives.append(_compile_member(member.strip()))
    return CompiledPath(tuple(alternatives))


def _compile_member(member: str) -> tuple[_Step, ...]:
    member = _strip_parens(member)
    grouped = _leading_group(member)
    if grouped is not None:
        # ``(Observation.value as CodeableConcept).text``: the group, then the path after it
        inner, rest = grouped
        return _compile_member(inner) + tuple(
            _compile_step(part.strip()) for part in _split_top_level(rest, ".")
        )
    as_type: str | None = None
    match = re.match(r"^(.*\S)\s+as\s+([A-Za-z]+)$", member)
    if match:
        member, as_type = _strip_parens(match[1]), match[2]
    parts = _split_top_level(member, ".")
    if len(parts) < 2:
        raise UnsupportedExpression(f"no path after the root in {member!r}")
    steps: list[_Step] = [_compile_step(part.strip()) for part in parts[1:]]
    if as_type:
        steps.append(_AsType(as_type))
    return tuple(steps)


def _compile_step(part: str) -> _Step:
    if _NAME.match(part):
        return _Field(part)
    indexed = _INDEXED.match(part)
    if indexed:
        return _Field(indexed[1], int(indexed[2]))
    for function in ("as", "ofType"):
        if part.startswith(f"{function}(") and part.endswith(")"):
            return _AsType(part[len(function) + 1 : -1].strip())
    if part.startswith("where(") and part.endswith(")"):
        condition = part[len("where(") : -1].strip()
        resolve = _WHERE_RESOLVE.match(condition)
        if resolve:
            return _WhereReferenceTo(resolve[1])
        equals = _WHERE_EQUALS.match(condition)
        if equals:
            return _WhereEquals(equals[1], equals[2])
    raise UnsupportedExpression(f"step {part!r}")


def _leading_group(member: str) -> tuple[str, str] | None:
    """``(inner).rest`` -> (inner, rest); None when the member does not start that way."""
    if not member.startswith("("):
        return None
    depth = 0
    for index, char in enumerate(member):
        depth += {"(": 1, ")": -1}.get(char, 0)
        if depth == 0:
            rest = member[index + 1 :]
            if rest.startswith(".") and len(rest) > 1:
                return member[1:index], rest[1:]
            return None
    return None


def _strip_parens(text: str) -> str:
    text = text.strip()
    while text.startswith("(") and text.endswith(")") and _balanced(text[1:-1]):
        text = text[1:-1].strip()
    return text


def _balanced(text: str) -> bool:
    depth = 0
    for char in text:
        depth += {"(": 1, ")": -1}.get(char, 0)
        if depth < 0:
            return False
    return depth == 0


def _split_top_level(text: str, separator: str) -> list[str]:
    parts, depth, start, quoted = [], 0, 0, False
    for index, char in enumerate(text):
        if char == "'":
            quoted = not quoted
        elif quoted:
            continue
        elif char in "([":
            depth += 1
        elif char in ")]":
            depth -= 1
        elif char == separator and depth == 0:
            parts.append(text[start:index])
            start = index + 1
    parts.append(text[start:])
    return parts


def _runner(step: _Step) -> _Runner:
    """A function applying ``step`` to a list of pairs (compiled once per expression)."""
    if isinstance(step, _Field):
        return _field_runner(step.name, step.index)
    if isinstance(step, _AsType):
        type_name = step.type_name
        wanted = type_name.lower()

        def as_type(pairs: list[Pair]) -> list[Pair]:
            return [
                (value, type_name)
                for value, hint in pairs
                if hint is None or hint.lower() == wanted
            ]

        return as_type
    if isinstance(step, _WhereEquals):
        name, expected = step.field, step.value

        def where_equals(pairs: list[Pair]) -> list[Pair]:
            return [
                pair
                for pair in pairs
                if isinstance(pair[0], dict) and pair[0].get(name) == expected
            ]

        return where_equals
    target = step.type_name

    def where_reference_to(pairs: list[Pair]) -> list[Pair]:
        return [pair for pair in pairs if _references_type(pair[0], target)]

    return where_reference_to


_ABSENT = object()

# The names of FHIR's choice elements (``value[x]`` -> "value"), from the R4B models'
# choice groups (tests/fhir/indexing/test_fhirpath.py checks the list against them). An
# absent element of another name cannot stand for a ``nameType`` key, so its parent's keys
# are not scanned for one: most absent elements are not choices (``meta.tag``).
CHOICE_NAMES = frozenset(
    {
        "abatement",
        "additive",
        "age",
        "allowed",
        "answer",
        "asNeeded",
        "author",
        "born",
        "bounds",
        "characteristic",
        "chargeItem",
        "citeAs",
        "code",
        "collected",
        "content",
        "created",
        "deceased",
        "defaultValue",
        "definition",
        "detail",
        "diagnosis",
        "dose",
        "doseNumber",
        "due",
        "effective",
        "entity",
        "event",
        "example",
        "fastingStatus",
        "fixed",
        "identified",
        "indication",
        "item",
        "legallyBinding",
        "location",
        "manufacturer",
        "maxValue",
        "medication",
        "minValue",
        "minimumVolume",
        "module",
        "multipleBirth",
        "name",
        "occurred",
        "occurrence",
        "offset",
        "onset",
        "participantEffective",
        "pattern",
        "performed",
        "probability",
        "procedure",
        "product",
        "quantity",
        "rate",
        "reported",
        "scheduled",
        "seriesDoses",
        "serviced",
        "source",
        "start",
        "statusReason",
        "studyEffective",
        "subject",
        "substance",
        "target",
        "time",
        "timing",
        "topic",
        "used",
        "value",
        "when",
    }
)


def _field_runner(name: str, index: int | None) -> _Runner:
    is_choice = name in CHOICE_NAMES

    def field_step(pairs: list[Pair]) -> list[Pair]:
        out: list[Pair] = []
        for value, _ in pairs:
            if not isinstance(value, dict):
                continue
            child = value.get(name, _ABSENT)
            if child is not _ABSENT:
                if isinstance(child, list):
                    items = child if index is None else child[index : index + 1]
                    out.extend([(item, None) for item in items])
                elif child is not None and not index:
                    out.append((child, None))
                continue
            if is_choice:
                out.extend(_choice_children(value, name))
        return out

    return field_step


def _choice_children(value: dict[str, Any], name: str) -> list[Pair]:
    """A choice element (value[x]): the stored key carries the type."""
    prefix_length = len(name)
    out: list[Pair] = []
    for key, choice in value.items():
        if len(key) > prefix_length and key[prefix_length].isupper() and key.startswith(name):
            hint = key[prefix_length:]
            if isinstance(choice, list):
                out.extend([(item, hint) for item in choice])
            elif choice is not None:
                out.append((choice, hint))
    return out


def _references_type(value: Any, type_name: str) -> bool:
    if not isinstance(value, dict):
        return False
    reference = value.get("reference")
    if isinstance(reference, str):
        segments = reference.split("/")
        return (len(segments) >= 2 and segments[-2] == type_name) or (
            len(segments) >= 4 and segments[-4] == type_name and segments[-2] == "_history"
        )
    return value.get("type") == type_name
