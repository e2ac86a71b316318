"""Resource validation, per resource: the compiled validator beside fhir.resources.

    .venv/bin/python -m bench.validation [--sample 10-patients] [--rounds 5]

Every resource of a shared Synthea sample (``shared/data/synthea`` beside the repository)
is validated in-process, in rounds, by three paths; the best round of each is kept:

- compiled: ``maillage.fhir.validation.validate_resource`` (tables compiled from the R4B
  models, no pydantic objects built);
- models: ``get_fhir_model_class(type).model_validate(resource)`` alone;
- models + kinds: the hub's former validator (the models plus its JSON-kind check),
  ``maillage.fhir.validation_schema.reference``.

The ratio to beat is former / compiled (target ≥ 5×). Results: bench/out/validation.md.
"""

from __future__ import annotations

import argparse
import collections
import gc
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
from fhir.resources.R4B import get_fhir_model_class

from bench.http_common import machine_description, verdict, write_results
from maillage.fhir.definitions import resource_types
from maillage.fhir.validation import validate_resource, warm_up
from maillage.fhir.validation_schema import reference

SYNTHEA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "synthea"
TARGET_RATIO = 5.0

Validator = Callable[[dict[str, Any]], object]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sample", default="10-patients", help="folder under synthea/")
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds per validator")
    return parser.parse_args(argv)


def load(sample: str) -> list[dict[str, Any]]:
    folder = SYNTHEA / sample
    resources: list[dict[str, Any]] = []
    for path in sorted(folder.glob("*.ndjson")):
        with path.open("rb") as lines:
            resources.extend(orjson.loads(line) for line in lines if line.strip())
    return resources


def _models(resource: dict[str, Any]) -> object:
    return get_fhir_model_class(resource["resourceType"]).model_validate(resource)


def _former(resource: dict[str, Any]) -> object:
    problems = reference.problems(resource)
    assert not problems, problems[:3]
    return resource


def best_round(validate: Validator, resources: list[dict[str, Any]], rounds: int) -> float:
    """Seconds of the fastest of ``rounds`` passes over ``resources``."""
    best = float("inf")
    for _ in range(rounds):
        gc.collect()
        started = time.perf_counter()
        for resource in resources:
            validate(resource)
        best = min(best, time.perf_counter() - started)
    return best


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    resources = load(args.sample)
    if not resources:
        print(f"error: no Synthea resources under {(SYNTHEA / args.sample).resolve()}")
        return 2
    started = time.perf_counter()
    for name in resource_types():
        get_fhir_model_class(name)  # imports the model modules (pydantic builds them)
    import_s = time.perf_counter() - started
    started = time.perf_counter()
    compiled_types = warm_up()
    compile_s = time.perf_counter() - started
    paths: dict[str, Validator] = {
        "compiled": validate_resource,
        "models": _models,
        "models + kinds": _former,
    }
    for validate in paths.values():  # first use: imports, caches; every resource must pass
        for resource in resources:
            validate(resource)
    by_type: dict[str, list[dict[str, Any]]] = collections.defaultdict(list)
    for resource in resources:
        by_type[resource["resourceType"]].append(resource)
    print(f"== validation: {len(resources)} resources of {args.sample}, best of {args.rounds}")
    totals = {name: best_round(fn, resources, args.rounds) for name, fn in paths.items()}
    per_us = {name: seconds / len(resources) * 1e6 for name, seconds in totals.items()}
    rows = []
    for resource_type, group in sorted(by_type.items()):
        times = {
            name: best_round(fn, group, args.rounds) / len(group) * 1e6
            for name, fn in paths.items()
        }
        rows.append((resource_type, len(group), times))
    ratio = per_us["models + kinds"] / per_us["compiled"]
    ratio_models = per_us["models"] / per_us["compiled"]
    for name, value in per_us.items():
        print(f"  {name:15s} {value:8.1f} µs/resource")
    print(f"  ratio former/compiled {ratio:.1f}x, models/compiled {ratio_models:.1f}x")
    markdown = _markdown(args, len(resources), per_us, rows, ratio, ratio_models)
    markdown += (
        f"\nStart-up: importing the R4B models {import_s:.1f} s (paid before too); "
        f"compiling the schemas of their {compiled_types} classes {compile_s * 1000:.0f} ms "
        "(done lazily per type otherwise).\n"
    )
    payload = {
        "sample": args.sample,
        "resources": len(resources),
        "rounds": args.rounds,
        "us_per_resource": per_us,
        "ratio_former_over_compiled": ratio,
        "ratio_models_over_compiled": ratio_models,
        "import_models_s": import_s,
        "compile_schemas_s": compile_s,
        "by_type": {name: {"count": n, "us": times} for name, n, times in rows},
        "machine": machine_description(),
    }
    write_results("validation", payload, markdown)
    return 0


def _markdown(
    args: argparse.Namespace,
    count: int,
    per_us: dict[str, float],
    rows: list[tuple[str, int, dict[str, float]]],
    ratio: float,
    ratio_models: float,
) -> str:
    machine = machine_description()
    lines = [
        "## Validation",
        "",
        f"`.venv/bin/python -m bench.validation --sample {args.sample} --rounds {args.rounds}`"
        f" — {count} Synthea resources validated in-process, one core, best of "
        f"{args.rounds} rounds; {machine['cpu']}, {machine['nproc']} CPUs, {machine['date']}, "
        f"load average {os.getloadavg()[0]:.1f} at the end (a shared machine is noisy: "
        "compare the ratios, not the absolute figures).",
        "",
        "| validator | µs / resource | resources/s (one core) |",
        "|---|---|---|",
    ]
    for name, value in per_us.items():
        lines.append(f"| {name} | {value:.1f} | {1e6 / value:,.0f} |")
    lines += [
        "",
        f"Ratio former (models + kinds) / compiled: **{ratio:.1f}×** "
        f"(models alone / compiled: {ratio_models:.1f}×). "
        f"Target ≥ {TARGET_RATIO:.0f}×: {verdict(ratio >= TARGET_RATIO)}.",
        "",
        "| type | count | compiled µs | models µs | models + kinds µs | ratio |",
        "|---|---|---|---|---|---|",
    ]
    for resource_type, n, times in rows:
        former = times["models + kinds"]
        lines.append(
            f"| {resource_type} | {n} | {times['compiled']:.1f} | {times['models']:.1f} "
            f"| {former:.1f} | {former / times['compiled']:.1f}× |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
