"""Writes ``data/r4-terminology.json.gz`` from the R4 definitions package.

    python -m maillage.terminology.build ../shared/data/fhir-r4

Keeps of each ValueSet its url, version, compose (codes without displays) and
expansion codes; of each CodeSystem its url, version, content, hierarchy meaning,
property declarations and concept tree (codes and properties). Narratives, displays,
definitions and designations are what made the package 22 MB; an expansion reads none
of them.
"""

from __future__ import annotations

import gzip
import sys
from pathlib import Path
from typing import Any

import orjson

from maillage.terminology.catalog import DATA_FILE

SOURCES = ("valuesets.json", "v3-codesystems.json", "v2-tables.json")


def _part(part: dict[str, Any]) -> dict[str, Any]:
    kept: dict[str, Any] = {
        key: part[key] for key in ("system", "version", "valueSet", "filter") if key in part
    }
    if "concept" in part:
        kept["concept"] = [{"code": concept["code"]} for concept in part["concept"]]
    return kept


def _contains(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            key: _contains(value) if key == "contains" else value
            for key, value in entry.items()
            if key in ("system", "code", "abstract", "contains")
        }
        for entry in entries
    ]


def value_set(resource: dict[str, Any]) -> dict[str, Any]:
    kept: dict[str, Any] = {"resourceType": "ValueSet", "url": resource["url"]}
    if "version" in resource:
        kept["version"] = resource["version"]
    compose = resource.get("compose")
    if compose:
        kept["compose"] = {
            key: [_part(part) for part in compose[key]]
            for key in ("include", "exclude")
            if key in compose
        }
    expansion = resource.get("expansion")
    if expansion:
        kept["expansion"] = {
            "contains": _contains(expansion.get("contains", [])),
            **{key: expansion[key] for key in ("total", "offset") if key in expansion},
        }
    return kept


def _concepts(concepts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    kept = []
    for concept in concepts:
        item: dict[str, Any] = {"code": concept["code"]}
        if "property" in concept:
            item["property"] = concept["property"]
        if "concept" in concept:
            item["concept"] = _concepts(concept["concept"])
        kept.append(item)
    return kept


def code_system(resource: dict[str, Any]) -> dict[str, Any]:
    kept: dict[str, Any] = {"resourceType": "CodeSystem", "url": resource["url"]}
    for key in ("version", "content", "hierarchyMeaning", "caseSensitive", "supplements"):
        if key in resource:
            kept[key] = resource[key]
    if "property" in resource:
        kept["property"] = [
            {key: prop[key] for key in ("code", "uri", "type") if key in prop}
            for prop in resource["property"]
        ]
    if "concept" in resource:
        kept["concept"] = _concepts(resource["concept"])
    return kept


def build(source: Path, target: Path) -> int:
    entries = []
    for name in SOURCES:
        bundle = orjson.loads((source / name).read_bytes())
        for entry in bundle["entry"]:
            resource = entry["resource"]
            if resource["resourceType"] == "ValueSet":
                entries.append({"resource": value_set(resource)})
            elif resource["resourceType"] == "CodeSystem":
                entries.append({"resource": code_system(resource)})
    data = orjson.dumps({"resourceType": "Bundle", "type": "collection", "entry": entries})
    # mtime 0: the same package gives the same bytes
    target.write_bytes(gzip.compress(data, compresslevel=9, mtime=0))
    return len(entries)


if __name__ == "__main__":
    build(Path(sys.argv[1]), Path(__file__).parent / "data" / DATA_FILE)
