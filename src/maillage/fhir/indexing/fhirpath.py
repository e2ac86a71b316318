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
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_INDEXED = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)\[(\d+)\]$")
_WHERE_EQUALS = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)\s*=\s*'([^']*)'$")
_WHERE_RESOLVE = re.compile(r"^resolve\(\)\s+is\s+([A-Za-z]+)$")


class UnsupportedExpression(ValueError):
    pass


@dataclass(frozen=True)
class Node:
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


@dataclass(frozen=True)
class CompiledPath:
    """Alternatives (union members), each a list of steps after the root type."""

    alternatives: tuple[tuple[_Step, ...], ...]

    def evaluate(self, resource: dict[str, Any]) -> list[Node]:
        found: list[Node] = []
        for steps in self.alternatives:
            nodes = [Node(resource)]
            for step in steps:
                nodes = list(_apply(step, nodes))
                if not nodes:
                    break
            found.extend(nodes)
        return found


def compile_expression(expression: str) -> CompiledPath:
    alternatives = []
    for member in _split_top_level(expression, "|"):
        alternatives.append(_compile_member(member.strip()))
    return CompiledPath(tuple(alternatives))


def _compile_member(member: str) -> tuple[_Step, ...]:
    member = _strip_parens(member)
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


def _children(value: Any) -> Iterator[Any]:
    if isinstance(value, list):
        yield from value
    elif value is not None:
        yield value


def _apply(step: _Step, nodes: list[Node]) -> Iterator[Node]:
    if isinstance(step, _Field):
        yield from _apply_field(step, nodes)
    elif isinstance(step, _AsType):
        wanted = step.type_name.lower()
        for node in nodes:
            if node.type_hint is None or node.type_hint.lower() == wanted:
                yield Node(node.value, step.type_name)
    elif isinstance(step, _WhereEquals):
        for node in nodes:
            if isinstance(node.value, dict) and node.value.get(step.field) == step.value:
                yield node
    else:
        for node in nodes:
            if _references_type(node.value, step.type_name):
                yield node


def _apply_field(step: _Field, nodes: list[Node]) -> Iterator[Node]:
    for node in nodes:
        if not isinstance(node.value, dict):
            continue
        if step.name in node.value:
            values = list(_children(node.value[step.name]))
            if step.index is not None:
                values = values[step.index : step.index + 1]
            for value in values:
                yield Node(value)
            continue
        # A choice element (value[x]): the stored key carries the type.
        prefix_length = len(step.name)
        for key, value in node.value.items():
            if (
                key.startswith(step.name)
                and len(key) > prefix_length
                and key[prefix_length].isupper()
            ):
                for child in _children(value):
                    yield Node(child, key[prefix_length:])


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
