"""What looking for conditional references costs every create and update.

    .venv/bin/python -m bench.conditional_references

Every write serialises the resource and searches its JSON for a conditional reference
(``fhir/conditional_references.has_conditional_references``). Measured in-process on
the Synthea 10-patient export, best of 3 passes: once with its references made literal
(what a site usually sends: the cost every write pays), once as Synthea writes them;
beside its floor, the serialisation alone (``orjson.dumps``), and validation (what
every write pays already).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from bench.http_common import machine_description
from maillage.fhir.conditional_references import has_conditional_references
from maillage.fhir.definitions import resource_types
from maillage.fhir.validation import validate_resource

SOURCE = Path(__file__).resolve().parents[2] / "shared" / "data" / "synthea" / "10-patients"


def _per_resource_us(run: Callable[[Any], Any], resources: list[Any], passes: int) -> float:
    best = float("inf")
    for _ in range(passes):
        started = time.perf_counter()
        for resource in resources:
            run(resource)
        best = min(best, time.perf_counter() - started)
    return best / len(resources) * 1e6


def main() -> None:
    as_given = [
        orjson.loads(line)
        for path in sorted(SOURCE.glob("*.ndjson"))
        for line in path.read_bytes().splitlines()
        if line.strip()
    ]
    literal = [
        orjson.loads(orjson.dumps(resource).replace(b"?identifier=", b"/x-"))
        for resource in as_given
    ]
    resource_types()
    for resource in literal[:50]:  # warm the validation rules
        validate_resource(resource)
    machine = machine_description()
    print(f"{machine['date']}: {machine['nproc']} × {machine['cpu']}, Python {machine['python']}")
    print(f"{len(literal):,} resources (Synthea 10-patient export), µs per resource:")
    floor = _per_resource_us(orjson.dumps, literal, 3)
    found = _per_resource_us(has_conditional_references, literal, 3)
    print(f"  look-up, references literal: {found:.2f} (floor, serialisation alone: {floor:.2f})")
    with_some = _per_resource_us(has_conditional_references, as_given, 3)
    print(f"  look-up, as Synthea writes them: {with_some:.2f}")
    print(
        f"  validation (every write pays it): {_per_resource_us(validate_resource, literal, 1):.2f}"
    )


if __name__ == "__main__":
    main()
