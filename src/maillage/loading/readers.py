"""Reading load input: NDJSON files (plain or gzip), folders of them, Bundle JSON files.

NDJSON is streamed line by line, so memory stays bounded whatever the file size. A
Bundle JSON file is one JSON document and is read whole (acceptable: bundles are
written by tools that hold them in memory too); its ``urn:uuid:`` full URLs are
rewritten to ``Type/id`` so that references between its entries stay valid.
"""

from __future__ import annotations

import gzip
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import orjson

from maillage.errors import ConfigurationError

NDJSON_SUFFIXES = (".ndjson", ".ndjson.gz", ".jsonl", ".jsonl.gz")
BUNDLE_SUFFIXES = (".json", ".json.gz")
_BUNDLE_TYPES = {"collection", "transaction", "batch", "searchset", "history", "document"}


@dataclass(frozen=True, slots=True)
class Item:
    """One resource to load, located in its source.

    ``raw`` is the line's bytes (NDJSON), or an already parsed resource (Bundle
    entries, Python callers). ``entry`` is the Bundle entry index when there is one.
    """

    file: str
    line: int
    raw: Any  # bytes of an NDJSON line, or a parsed resource
    entry: int | None = None


@dataclass(frozen=True, slots=True)
class Problem:
    """A location whose content could not be turned into an item (bad Bundle...)."""

    file: str
    line: int
    message: str
    entry: int | None = None


def is_ndjson(path: Path) -> bool:
    return path.name.lower().endswith(NDJSON_SUFFIXES)


def is_bundle_file(path: Path) -> bool:
    return path.name.lower().endswith(BUNDLE_SUFFIXES)


# In a folder, the files of the types other resources name (by conditional reference,
# often) come first, so that those references are resolved as their chunk is prepared
# (``references.py``). A bulk export names its files by type: ``Practitioner.000.ndjson``.
REFERENCED_FIRST = ("Organization", "Location", "Practitioner", "PractitionerRole", "Patient")


def _read_order(path: Path) -> tuple[int, Path]:
    kind = path.name.split(".")[0]
    rank = REFERENCED_FIRST.index(kind) if kind in REFERENCED_FIRST else len(REFERENCED_FIRST)
    return rank, path


def expand_paths(paths: list[Path]) -> list[Path]:
    """Files to read, in a stable order: folders are searched recursively for NDJSON and
    JSON files (the FHIR bulk export layout, or a folder of Bundles), the files of the
    types most named first (``REFERENCED_FIRST``), then by path; files given one by one
    are read in the order given."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            found = sorted(
                (
                    child
                    for child in path.rglob("*")
                    if child.is_file() and (is_ndjson(child) or is_bundle_file(child))
                ),
                key=_read_order,
            )
            files.extend(found)
        elif path.is_file():
            if not (is_ndjson(path) or is_bundle_file(path)):
                raise ConfigurationError(
                    f"{path}: not an NDJSON (.ndjson, .ndjson.gz) or Bundle JSON (.json) file"
                )
            files.append(path)
        else:
            raise ConfigurationError(f"{path} does not exist")
    return files


def _read_all(path: Path) -> bytes:
    if path.name.lower().endswith(".gz"):
        with gzip.open(path, "rb") as compressed:
            return compressed.read()
    return path.read_bytes()


class ProgressTracker:
    """Bytes of the input files consumed so far (compressed bytes for gzip files)."""

    def __init__(self) -> None:
        self.consumed = 0


def read_ndjson(path: Path, tracker: ProgressTracker | None = None) -> Iterator[Item | Problem]:
    """One item per non-blank line, streamed. A damaged gzip stream ends the file with a
    problem at the line where it broke."""
    name = str(path)
    number = 0
    with path.open("rb") as raw_file:
        stream: IO[bytes] = raw_file
        if name.lower().endswith(".gz"):
            stream = gzip.GzipFile(fileobj=raw_file)  # type: ignore[assignment]
        start = raw_file.tell()
        try:
            for number, line in enumerate(stream, start=1):
                if tracker is not None:
                    position = raw_file.tell()
                    tracker.consumed += position - start
                    start = position
                if line.strip():
                    yield Item(name, number, line)
        except (OSError, EOFError) as error:
            yield Problem(name, number + 1, f"unreadable from here on: {error}")


def read_bundle(path: Path) -> Iterator[Item | Problem]:
    """The entries' resources of a Bundle JSON file (or the single resource it holds)."""
    name = str(path)
    try:
        data = _read_all(path)
    except (OSError, EOFError) as error:
        yield Problem(name, 1, f"unreadable: {error}")
        return
    try:
        document = orjson.loads(data)
    except orjson.JSONDecodeError as error:
        yield Problem(name, 1, f"invalid JSON: {error}")
        return
    if not isinstance(document, dict) or not isinstance(document.get("resourceType"), str):
        yield Problem(name, 1, "not a FHIR resource or Bundle (no resourceType)")
        return
    if document["resourceType"] != "Bundle":
        yield Item(name, 1, document)
        return
    if document.get("type") not in _BUNDLE_TYPES:
        yield Problem(name, 1, f"Bundle.type {document.get('type')!r} is not supported")
        return
    yield from bundle_items(document, name)


def bundle_items(bundle: dict[str, Any], name: str) -> Iterator[Item | Problem]:
    """Entries with a resource (skipping search outcomes and DELETE/GET requests), with
    ``urn:uuid:`` / ``urn:oid:`` references between entries rewritten to ``Type/id``."""
    kept: list[tuple[int, dict[str, Any]]] = []
    mapping: dict[str, str] = {}
    for index, entry in enumerate(bundle.get("entry") or []):
        if not isinstance(entry, dict):
            yield Problem(name, 1, "Bundle entry is not an object", entry=index)
            continue
        resource = entry.get("resource")
        request = entry.get("request")
        method = str(request.get("method", "")).upper() if isinstance(request, dict) else ""
        search = entry.get("search")
        if resource is None or method in ("DELETE", "GET", "HEAD"):
            continue
        if isinstance(search, dict) and search.get("mode") == "outcome":
            continue
        if not isinstance(resource, dict) or not isinstance(resource.get("resourceType"), str):
            yield Problem(name, 1, "entry.resource is not a FHIR resource", entry=index)
            continue
        full_url = entry.get("fullUrl")
        if not resource.get("id"):
            if isinstance(full_url, str) and full_url.startswith("urn:uuid:"):
                assigned = full_url.removeprefix("urn:uuid:")
            else:
                assigned = str(uuid.uuid4())
            resource = {**resource, "id": assigned}
        if isinstance(full_url, str) and full_url.startswith(("urn:uuid:", "urn:oid:")):
            mapping[full_url] = f"{resource['resourceType']}/{resource['id']}"
        kept.append((index, resource))
    for index, resource in kept:
        rewritten = _rewrite_references(resource, mapping) if mapping else resource
        yield Item(name, 1, rewritten, entry=index)


def _rewrite_references(node: Any, mapping: dict[str, str]) -> Any:
    if isinstance(node, list):
        return [_rewrite_references(item, mapping) for item in node]
    if not isinstance(node, dict):
        return node
    result = {}
    for key, value in node.items():
        if key == "reference" and isinstance(value, str):
            result[key] = mapping.get(value, value)
        else:
            result[key] = _rewrite_references(value, mapping)
    return result


def read_file(path: Path, tracker: ProgressTracker | None = None) -> Iterator[Item | Problem]:
    if is_ndjson(path):
        yield from read_ndjson(path, tracker)
        return
    yield from read_bundle(path)
    if tracker is not None:
        tracker.consumed += path.stat().st_size
