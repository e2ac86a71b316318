"""The official R4 value sets and code systems shipped with the product, and the
lookup of value sets by canonical url that puts stored ones in front of them.

``data/r4-terminology.json.gz`` holds every ValueSet and CodeSystem of the R4 package
(``valuesets.json``, ``v3-codesystems.json``, ``v2-tables.json``) stripped to what an
expansion reads (``build.py`` writes it): about 160 kB, read on first use only.
"""

from __future__ import annotations

import functools
import gzip
from collections.abc import Iterable, Mapping
from importlib import resources
from typing import Any

import orjson

from maillage.terminology.codesystem import CodeSystemIndex
from maillage.terminology.expand import Expander, split_canonical
from maillage.terminology.members import Expansion

DATA_FILE = "r4-terminology.json.gz"


def by_canonical(found: Iterable[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Resources keyed by ``url`` and ``url|version``; for a bare url, the last one given
    wins (callers give stored resources oldest first)."""
    index: dict[str, dict[str, Any]] = {}
    for resource in found:
        url = resource.get("url")
        if not isinstance(url, str):
            continue
        index[url] = resource
        if isinstance(resource.get("version"), str):
            index[f"{url}|{resource['version']}"] = resource
    return index


class Catalog:
    def __init__(self, found: Iterable[dict[str, Any]]) -> None:
        value_sets: list[dict[str, Any]] = []
        code_systems: list[dict[str, Any]] = []
        for resource in found:
            kind = resource.get("resourceType")
            (value_sets if kind == "ValueSet" else code_systems).append(resource)
        self._value_sets = by_canonical(value_sets)
        self._code_systems = by_canonical(code_systems)
        self._indexes: dict[str, CodeSystemIndex] = {}

    def value_set(self, canonical: str) -> dict[str, Any] | None:
        return self._value_sets.get(canonical)

    def code_system(self, canonical: str) -> CodeSystemIndex | None:
        """The index of a code system (built on first use); a version asked that is not
        the shipped one falls back to the shipped one (R4 ships one of each)."""
        resource = self._code_systems.get(canonical)
        if resource is None:
            resource = self._code_systems.get(split_canonical(canonical)[0])
        if resource is None:
            return None
        url = str(resource["url"])
        if url not in self._indexes:
            self._indexes[url] = CodeSystemIndex.from_resource(resource)
        return self._indexes[url]

    def codes_of(self, system: str) -> frozenset[str] | None:
        """Every code of ``system`` when this catalog holds it complete, else None."""
        index = self.code_system(system)
        return index.codes if index is not None and index.complete else None


@functools.cache
def shipped() -> Catalog:
    raw = resources.files("maillage.terminology").joinpath("data", DATA_FILE).read_bytes()
    bundle = orjson.loads(gzip.decompress(raw))
    return Catalog(entry["resource"] for entry in bundle["entry"])


class Terminology:
    """Value sets looked up in ``stored`` (canonical -> ValueSet, see ``by_canonical``)
    first, then in the shipped catalog; code systems in the shipped catalog."""

    def __init__(
        self, stored: Mapping[str, dict[str, Any]] | None = None, catalog: Catalog | None = None
    ) -> None:
        self.stored = dict(stored or {})
        self._catalog = catalog
        self._expander: Expander | None = None

    @property
    def catalog(self) -> Catalog:
        # read on first use: a search without :in never loads the shipped catalog
        if self._catalog is None:
            self._catalog = shipped()
        return self._catalog

    def value_set(self, canonical: str) -> dict[str, Any] | None:
        found = self.stored.get(canonical)
        return found if found is not None else self.catalog.value_set(canonical)

    def expand(self, canonical: str) -> Expansion:
        if self._expander is None:
            self._expander = Expander(self.value_set, self.catalog.code_system)
        return self._expander.expand(canonical)

    def codes_of(self, system: str) -> frozenset[str] | None:
        return self.catalog.codes_of(system)
