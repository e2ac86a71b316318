"""ValueSet -> ``Expansion``: ``compose`` (include, exclude, ``valueSet`` imports, filters)
or, when the compose cannot be evaluated here, an ``expansion.contains`` the ValueSet
carries.

Pure: value sets and code systems come from the callables given (the search layer
puts the stored ValueSets in front of the shipped ones), so nothing here reads a
database or the network.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from maillage.errors import UnknownValueSet, ValueSetNotExpandable
from maillage.terminology.codesystem import CodeSystemIndex
from maillage.terminology.members import Expansion

ValueSetSource = Callable[[str], "dict[str, Any] | None"]
CodeSystemSource = Callable[[str], "CodeSystemIndex | None"]


def split_canonical(canonical: str) -> tuple[str, str | None]:
    """``url|version`` -> (url, version); a bare url -> (url, None)."""
    url, bar, version = canonical.partition("|")
    return url, (version or None) if bar else None


def imports(value_set: dict[str, Any]) -> set[str]:
    """The canonicals of the value sets ``value_set``'s compose includes or excludes."""
    compose = value_set.get("compose")
    if not isinstance(compose, dict):
        return set()
    found: set[str] = set()
    for part in (*compose.get("include", []), *compose.get("exclude", [])):
        if isinstance(part, dict):
            found.update(v for v in part.get("valueSet", []) if isinstance(v, str))
    return found


class Expander:
    """Expands value sets by canonical url, each once (memoised for this expander)."""

    def __init__(self, value_sets: ValueSetSource, code_systems: CodeSystemSource) -> None:
        self._value_sets = value_sets
        self._code_systems = code_systems
        self._done: dict[str, Expansion] = {}

    def expand(self, canonical: str) -> Expansion:
        """The members of the value set ``canonical``; ``UnknownValueSet`` if there is none."""
        if self._value_sets(canonical) is None:
            raise UnknownValueSet(f"unknown value set {canonical!r}: neither stored nor shipped")
        return self._expand(canonical, ())

    def expand_resource(self, value_set: dict[str, Any]) -> Expansion:
        name = str(value_set.get("url") or value_set.get("id") or "(unnamed)")
        return self._evaluate(value_set, name, (name,))

    # -------------------------------------------------------------------------------
    def _expand(self, canonical: str, stack: tuple[str, ...]) -> Expansion:
        if canonical in self._done:
            return self._done[canonical]
        if canonical in stack:
            raise ValueSetNotExpandable(f"value set {stack[0]!r} imports itself ({canonical})")
        value_set = self._value_sets(canonical)
        if value_set is None:
            raise ValueSetNotExpandable(
                f"value set {stack[0]!r} cannot be expanded here: it imports {canonical!r},"
                " which is neither stored nor shipped"
            )
        found = self._evaluate(value_set, canonical, (*stack, canonical))
        self._done[canonical] = found
        return found

    def _evaluate(self, value_set: dict[str, Any], name: str, stack: tuple[str, ...]) -> Expansion:
        compose = value_set.get("compose")
        listed = _listed(value_set.get("expansion"))
        if isinstance(compose, dict):
            try:
                return self._compose(compose, name, stack)
            except ValueSetNotExpandable:
                # a server's expansion of the same compose (e.g. a filter on SNOMED CT)
                if listed is not None:
                    return listed
                raise
        if listed is not None:
            return listed
        raise ValueSetNotExpandable(
            f"value set {name!r} has neither a compose nor a complete expansion"
        )

    def _compose(self, compose: dict[str, Any], name: str, stack: tuple[str, ...]) -> Expansion:
        found = Expansion()
        for part in compose.get("include", []):
            found = found.union(self._part(part, name, stack))
        for part in compose.get("exclude", []):
            found = found.difference(self._part(part, name, stack))
        return found

    def _part(self, part: dict[str, Any], name: str, stack: tuple[str, ...]) -> Expansion:
        """One include/exclude: the intersection of its system's codes and its imports."""
        sets: list[Expansion] = []
        system = part.get("system")
        if isinstance(system, str) and system:
            concepts = part.get("concept", [])
            filters = part.get("filter", [])
            if concepts:
                sets.append(Expansion.codes((system, c["code"]) for c in concepts if "code" in c))
            if filters:
                sets.append(
                    Expansion.codes((system, c) for c in self._filtered(system, filters, name))
                )
            if not concepts and not filters:
                # every code of the system: kept as such, never enumerated (SNOMED CT...)
                sets.append(Expansion.whole_system(system))
        sets.extend(self._expand(canonical, stack) for canonical in part.get("valueSet", []))
        if not sets:
            raise ValueSetNotExpandable(
                f"value set {name!r}: an include or exclude has neither system nor valueSet"
            )
        found = sets[0]
        for other in sets[1:]:
            found = found.intersection(other)
        return found

    def _filtered(self, system: str, filters: Iterable[dict[str, Any]], name: str) -> set[str]:
        index = self._code_systems(system)
        codes: set[str] | None = None
        for item in filters:
            prop, op, value = item.get("property"), item.get("op"), item.get("value")
            if index is None or not index.complete:
                raise ValueSetNotExpandable(
                    f"value set {name!r} cannot be expanded here: its filter {prop} {op}"
                    f" {value} needs the content of code system {system!r}, which this hub"
                    " does not hold"
                )
            matched = index.filter(str(prop), str(op), str(value))
            codes = set(matched) if codes is None else codes & matched
        return codes or set()


def _listed(expansion: Any) -> Expansion | None:
    """The codes of a complete ``expansion.contains`` (None if absent or partial)."""
    if not isinstance(expansion, dict) or "contains" not in expansion:
        return None
    pairs = list(_contains(expansion["contains"]))
    total, offset = expansion.get("total"), expansion.get("offset", 0)
    if offset or (isinstance(total, int) and total > len(pairs)):
        return None  # one page of a larger expansion: its members are not all here
    return Expansion.codes(pairs)


def _contains(entries: Any) -> Iterator[tuple[str | None, str]]:
    for entry in entries if isinstance(entries, list) else []:
        if not isinstance(entry, dict):
            continue
        if isinstance(entry.get("code"), str):
            yield entry.get("system"), entry["code"]
        yield from _contains(entry.get("contains"))
