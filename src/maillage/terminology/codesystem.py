"""A CodeSystem's concepts, hierarchy and properties, and the compose filters over them.

Only a CodeSystem whose ``content`` is ``complete`` can answer a filter: with
``not-present`` (SNOMED CT, LOINC as shipped by FHIR) or ``fragment`` the hierarchy is
not here, and guessing would silently give a wrong value set. The hierarchy is read from
nested ``concept`` elements (R4: their meaning is ``hierarchyMeaning``, is-a by default)
and from the ``parent``/``child`` concept properties the v2/v3 code systems also use.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from maillage.errors import ValueSetNotExpandable

_PARENT = ("parent", "subsumedBy", "http://hl7.org/fhir/concept-properties#parent")
_CHILD = ("child", "http://hl7.org/fhir/concept-properties#child")
# Filter properties that name the concept itself rather than one of its properties.
_SELF = ("concept", "code")


@dataclass
class CodeSystemIndex:
    url: str
    complete: bool
    codes: frozenset[str]
    parents: dict[str, set[str]] = field(default_factory=dict)
    properties: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    hierarchy: bool = True

    @classmethod
    def from_resource(cls, resource: dict[str, Any]) -> CodeSystemIndex:
        parents: dict[str, set[str]] = {}
        properties: dict[str, dict[str, list[str]]] = {}
        # a property's code may stand for the standard parent/child properties by its uri
        aliases = {
            prop.get("code"): prop.get("uri")
            for prop in resource.get("property", [])
            if isinstance(prop, dict)
        }
        codes: set[str] = set()

        def walk(concepts: Iterable[Any], parent: str | None) -> None:
            for concept in concepts:
                if not isinstance(concept, dict) or not isinstance(concept.get("code"), str):
                    continue
                code = concept["code"]
                codes.add(code)
                if parent is not None:
                    parents.setdefault(code, set()).add(parent)
                for prop in concept.get("property", []):
                    name, value = prop.get("code"), _property_value(prop)
                    if name is None or value is None:
                        continue
                    properties.setdefault(code, {}).setdefault(name, []).append(value)
                    if name in _PARENT or aliases.get(name) in _PARENT:
                        parents.setdefault(code, set()).add(value)
                    elif name in _CHILD or aliases.get(name) in _CHILD:
                        parents.setdefault(value, set()).add(code)
                walk(concept.get("concept", []), code)

        walk(resource.get("concept", []), None)
        return cls(
            url=str(resource.get("url", "")),
            complete=resource.get("content", "complete") == "complete",
            codes=frozenset(codes),
            parents=parents,
            properties=properties,
            hierarchy=resource.get("hierarchyMeaning") in (None, "is-a"),
        )

    # -- hierarchy ------------------------------------------------------------------
    @functools.cached_property
    def _children(self) -> dict[str, set[str]]:
        children: dict[str, set[str]] = {}
        for child, parents in self.parents.items():
            for parent in parents:
                children.setdefault(parent, set()).add(child)
        return children

    def descendants(self, code: str) -> set[str]:
        """Codes below ``code`` (not itself)."""
        children = self._children
        found: set[str] = set()
        pending = [code]
        while pending:
            for child in children.get(pending.pop(), ()):
                if child not in found:
                    found.add(child)
                    pending.append(child)
        return found

    def ancestors(self, code: str) -> set[str]:
        found: set[str] = set()
        pending = [code]
        while pending:
            for parent in self.parents.get(pending.pop(), ()):
                if parent not in found:
                    found.add(parent)
                    pending.append(parent)
        return found

    # -- compose filters ------------------------------------------------------------
    def filter(self, prop: str, op: str, value: str) -> frozenset[str]:
        """The codes meeting ``prop op value`` (a ValueSet.compose.include.filter)."""
        if op in ("is-a", "descendent-of", "is-not-a", "generalizes") and prop in _SELF:
            if not self.hierarchy:
                raise ValueSetNotExpandable(
                    f"{self.url} has no is-a hierarchy for the filter {prop} {op} {value}"
                )
            below = self.descendants(value) & self.codes
            if op == "is-a":
                return frozenset(below | ({value} & self.codes))
            if op == "descendent-of":
                return frozenset(below)
            if op == "is-not-a":
                return self.codes - below - {value}
            return frozenset((self.ancestors(value) | {value}) & self.codes)
        if op in ("in", "not-in") and prop in _SELF:
            listed = {part.strip() for part in value.split(",")}
            return frozenset(self.codes & listed if op == "in" else self.codes - listed)
        if op == "=":
            if prop in _SELF:
                return frozenset({value} & self.codes)
            return frozenset(c for c in self.codes if value in self._values(c, prop))
        if op == "regex":
            try:
                pattern = re.compile(value)
            except re.error as error:
                raise ValueSetNotExpandable(f"filter regex {value!r}: {error}") from error
            if prop in _SELF:
                return frozenset(c for c in self.codes if pattern.fullmatch(c))
            return frozenset(
                c for c in self.codes if any(pattern.fullmatch(v) for v in self._values(c, prop))
            )
        if op == "exists":
            present = frozenset(c for c in self.codes if self._values(c, prop))
            return present if value == "true" else self.codes - present
        raise ValueSetNotExpandable(
            f"the filter {prop} {op} {value} on {self.url} is not supported here"
        )

    def _values(self, code: str, prop: str) -> list[str]:
        return self.properties.get(code, {}).get(prop, [])


def _property_value(prop: dict[str, Any]) -> str | None:
    for key, value in prop.items():
        if key.startswith("value"):
            if isinstance(value, bool):
                return "true" if value else "false"
            if isinstance(value, str | int | float):
                return str(value)
            if isinstance(value, dict) and isinstance(value.get("code"), str):
                return str(value["code"])  # valueCoding
    return None
