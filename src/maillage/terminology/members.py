"""The members of an expanded value set, as sets of codes per code system.

A value set may include a whole code system (``compose.include`` with a ``system`` and
nothing else): SNOMED CT or LOINC cannot be enumerated, so a system's members are kept
either as a finite set of codes or as "every code of the system except these". Union,
intersection and difference stay exact on that representation, which is all the
compose rules need (include = union, include with ``valueSet`` = intersection,
exclude = difference).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

# Codes whose coding carries no system (an ``expansion.contains`` entry may lack one).
NO_SYSTEM = ""


@dataclass(frozen=True)
class Members:
    """The codes of one system: ``codes`` if not ``whole``; else every code but ``codes``."""

    whole: bool
    codes: frozenset[str] = frozenset()

    def union(self, other: Members) -> Members:
        if self.whole and other.whole:
            return Members(True, self.codes & other.codes)
        if self.whole:
            return Members(True, self.codes - other.codes)
        if other.whole:
            return Members(True, other.codes - self.codes)
        return Members(False, self.codes | other.codes)

    def intersection(self, other: Members) -> Members:
        if self.whole and other.whole:
            return Members(True, self.codes | other.codes)
        if self.whole:
            return Members(False, other.codes - self.codes)
        if other.whole:
            return Members(False, self.codes - other.codes)
        return Members(False, self.codes & other.codes)

    def difference(self, other: Members) -> Members:
        if self.whole and other.whole:
            return Members(False, other.codes - self.codes)
        if self.whole:
            return Members(True, self.codes | other.codes)
        if other.whole:
            return Members(False, self.codes & other.codes)
        return Members(False, self.codes - other.codes)

    @property
    def empty(self) -> bool:
        return not self.whole and not self.codes

    def __contains__(self, code: object) -> bool:
        return (code not in self.codes) if self.whole else (code in self.codes)


@dataclass(frozen=True)
class Expansion:
    """A value set's members: per system, a finite or a whole-system ``Members``."""

    systems: Mapping[str, Members] = field(default_factory=lambda: MappingProxyType({}))

    @classmethod
    def of(cls, systems: Mapping[str, Members]) -> Expansion:
        kept = {system: members for system, members in systems.items() if not members.empty}
        return cls(MappingProxyType(kept))

    @classmethod
    def codes(cls, pairs: Iterable[tuple[str | None, str]]) -> Expansion:
        found: dict[str, set[str]] = {}
        for system, code in pairs:
            found.setdefault(system or NO_SYSTEM, set()).add(code)
        return cls.of({system: Members(False, frozenset(codes)) for system, codes in found.items()})

    @classmethod
    def whole_system(cls, system: str) -> Expansion:
        return cls.of({system: Members(True)})

    def _combine(self, other: Expansion, how: str) -> Expansion:
        systems = set(self.systems) | set(other.systems)
        nothing = Members(False)
        merged = {
            system: getattr(self.systems.get(system, nothing), how)(
                other.systems.get(system, nothing)
            )
            for system in systems
        }
        return Expansion.of(merged)

    def union(self, other: Expansion) -> Expansion:
        return self._combine(other, "union")

    def intersection(self, other: Expansion) -> Expansion:
        return self._combine(other, "intersection")

    def difference(self, other: Expansion) -> Expansion:
        return self._combine(other, "difference")

    def contains(self, system: str | None, code: str) -> bool:
        members = self.systems.get(system or NO_SYSTEM)
        return members is not None and code in members

    def enumerated(self) -> Iterator[tuple[str, str]]:
        """(system, code) of the systems whose members are listed."""
        for system, members in sorted(self.systems.items()):
            if not members.whole:
                yield from ((system, code) for code in sorted(members.codes))

    def whole_systems(self) -> Iterator[tuple[str, frozenset[str]]]:
        """(system, codes excepted) of the systems included whole."""
        for system, members in sorted(self.systems.items()):
            if members.whole:
                yield system, members.codes

    @property
    def empty(self) -> bool:
        return not self.systems
