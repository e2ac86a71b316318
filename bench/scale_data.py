"""The data set of the scale benchmark: the Synthea 10-patient export replicated with new
ids and new patients up to a target count (1,000,000 resources by default), plus one
patient who owns ``heavy`` resources (for ``$everything``).

Copies are made on the raw JSON lines, not parsed objects (a million resources): every
id in the sample is a UUID, so replacing every UUID in a line by one derived from it and
the copy's number (a name-based UUID, RFC 9562 version 5) renames the resource, its
references, its identifier values and its conditional references together, consistently
within the copy. The new ids look like any store's: random-looking UUIDs. (Until session
13 the copies appended ``-c<N>`` to the original UUID, so 139 ids shared each 36-character
prefix, which no real store has; the figures barely moved with the change.)

Patients of copy N get family names ending in a tag of their own (``Upton904`` ->
``Upton904qb``), so a name search finds one copy's patients, not the same name 140 times.

Synthetic data only (Synthea, Apache-2.0): no real person.
"""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path

from bench.http_common import ROOT, BenchError

SOURCE = ROOT.parent / "shared" / "data" / "synthea" / "10-patients"
_UUID = re.compile(rb"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_FAMILY = re.compile(rb'"family":"([^"\\]+)"')
_PATIENT_REF = re.compile(rb'"reference":"Patient/([^"]+)"')


def copy_tag(copy: int) -> str:
    """Letters that tell copy ``copy`` apart in family names (a, b, ..., ba, bb, ...)."""
    letters = ""
    copy += 26  # two letters at least: a one-letter tag is a prefix of many others
    while copy:
        copy, digit = divmod(copy, 26)
        letters = chr(ord("a") + digit) + letters
    return letters


def _source_lines() -> list[tuple[str, bytes]]:
    if not SOURCE.is_dir():
        raise BenchError(f"{SOURCE} not found: the shared data folder must sit beside the repo")
    lines = []
    for path in sorted(SOURCE.glob("*.ndjson")):
        resource_type = path.name.split(".")[0]
        with path.open("rb") as source:
            lines += [(resource_type, line.rstrip(b"\n")) for line in source if line.strip()]
    return lines


# Namespace of the copies' ids (any fixed UUID: the same data set on every run).
_COPIES = uuid.UUID("6f1d3a52-9c4e-5b7a-8d21-0e4f6a7b8c9d")


class _Renamer:
    """The UUIDs of one copy: each original UUID -> the same new one, everywhere."""

    def __init__(self, copy: str) -> None:
        self.copy = copy
        self.known: dict[bytes, bytes] = {}

    def new_id(self, original: bytes) -> bytes:
        found = self.known.get(original)
        if found is None:
            name = original.decode() + self.copy
            found = self.known[original] = str(uuid.uuid5(_COPIES, name)).encode()
        return found

    def __call__(self, line: bytes) -> bytes:
        return _UUID.sub(lambda match: self.new_id(match.group(0)), line)


def _with_family_tag(line: bytes, tag: bytes) -> bytes:
    return _FAMILY.sub(lambda match: b'"family":"' + match.group(1) + tag + b'"', line)


def _heaviest_patient(lines: list[tuple[str, bytes]]) -> bytes:
    counts: dict[bytes, int] = {}
    for _, line in lines:
        for found in set(_PATIENT_REF.findall(line)):
            counts[found] = counts.get(found, 0) + 1
    return max(counts, key=lambda key: counts[key])


def build(folder: Path, target: int, heavy: int) -> dict[str, int | str]:
    """Write the data set in ``folder`` (one NDJSON file per type), unless the folder
    already holds the same one. Returns what it holds."""
    marker = folder.parent / f"{folder.name}.json"  # beside: the loader reads the folder
    wanted: dict[str, int | str] = {
        "target": target,
        "heavy": heavy,
        "source": str(SOURCE),
        "ids": "uuid5",
    }
    if marker.exists():
        found = json.loads(marker.read_text())
        if all(found.get(key) == value for key, value in wanted.items()):
            return found
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.ndjson"):
        old.unlink()
    lines = _source_lines()
    heavy_id = _heaviest_patient(lines)
    outputs: dict[str, list[bytes]] = {}
    written = 0
    # The heavy patient first: one copy where every patient reference points at them,
    # cut at ``heavy`` resources in their compartment (the patient included).
    renamed = _Renamer("-h")
    owned = 1
    for resource_type, line in lines:
        if resource_type == "Patient":
            if b'"id":"' + heavy_id + b'"' not in line:
                continue
            line = _with_family_tag(line, b"heavy")
        elif _PATIENT_REF.search(line):
            if owned >= heavy:
                continue
            line = _PATIENT_REF.sub(b'"reference":"Patient/' + heavy_id + b'"', line)
            owned += 1
        outputs.setdefault(resource_type, []).append(renamed(line))
        written += 1
    heavy_patient = renamed.new_id(heavy_id).decode()
    copies = 0
    while written < target:
        renamed = _Renamer(f"-c{copies}")
        tag = copy_tag(copies).encode()
        for resource_type, line in lines:
            if resource_type == "Patient":
                line = _with_family_tag(line, tag)
            outputs.setdefault(resource_type, []).append(renamed(line))
            written += 1
        copies += 1
        if copies % 20 == 0 or written >= target:
            _flush(folder, outputs)
    _flush(folder, outputs)
    summary: dict[str, int | str] = {
        **wanted,
        "resources": written,
        "copies": copies,
        "heavy_patient": heavy_patient,
        "heavy_resources": owned,
    }
    marker.write_text(json.dumps(summary, indent=2))
    return summary


def _flush(folder: Path, outputs: dict[str, list[bytes]]) -> None:
    for resource_type, pending in outputs.items():
        if pending:
            with (folder / f"{resource_type}.ndjson").open("ab") as out:
                out.write(b"\n".join(pending) + b"\n")
            pending.clear()
