"""Every benchmark in bench/, one after another, each figure beside its floor: ``make bench``.

    .venv/bin/python -m bench.run_all [--quick] [--only read_by_id create ...]

One embedded PostgreSQL (or MAILLAGE_BENCH_DATABASE_URL) serves all of them; each script
makes its own fresh database in it. Results: bench/out/<name>.md and .json, and
bench/out/summary.md with the machine they were measured on.
"""

from __future__ import annotations

import argparse
import importlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.http_common import (
    BENCH_DIR,
    OUT_DIR,
    BenchError,
    fail,
    machine_description,
    postgres_server,
    require_wrk,
)

# Run first, in this order; any other bench/*.py with a main() runs after them.
ORDER = ("read_by_id", "create", "transaction", "bulk_load")
NOT_BENCHMARKS = {
    "__init__",
    "run_all",
    "http_common",
    "common",
    "scale_data",
    "scale_queries",
    "scale_report",
    "hl7_messages",
}
# --quick: shorter runs, to check that everything works (not for the record).
QUICK_ARGS: dict[str, list[str]] = {
    "read_by_id": ["--duration", "5", "--warmup", "2", "--patients", "2000"],
    "create": ["--duration", "5", "--warmup", "2"],
    "transaction": ["--bundles", "8", "--warmup", "2"],
    "bulk_load": ["--resources", "10000"],
    "search": ["--duration", "3", "--warmup", "1", "--patients", "3000"],
    "scale": ["--resources", "30000", "--requests", "30"],
    "hl7_ack": ["--duration", "3", "--warmup", "1"],
    "identity_febrl": ["--rounds", "1"],
    "audit_writes": ["--duration", "3"],
    "hidden_timing": ["--reads", "500"],
    "hl7_pipeline": [
        "--patients",
        "2000",
        "--adt",
        "400",
        "--oru",
        "200",
        "--sustained-seconds",
        "5",
    ],
}


def discover() -> list[str]:
    found = sorted(
        path.stem
        for path in BENCH_DIR.glob("*.py")
        if path.stem not in NOT_BENCHMARKS and not path.stem.startswith("_")
    )
    return [name for name in ORDER if name in found] + [n for n in found if n not in ORDER]


def _entry_point(name: str) -> Callable[[list[str]], Any] | None:
    module = importlib.import_module(f"bench.{name}")
    main = getattr(module, "main", None)
    return main if callable(main) else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="short runs (smoke test)")
    parser.add_argument("--only", nargs="+", help="benchmark names (default: all)")
    args = parser.parse_args(argv)
    try:
        require_wrk()
    except BenchError as error:
        return fail(error)
    names = [name for name in discover() if not args.only or name in args.only]
    print(f"benchmarks: {', '.join(names)}")
    outcomes: dict[str, str] = {}
    started = time.monotonic()
    with postgres_server() as server:
        machine = machine_description(server)
        for key, value in machine.items():
            print(f"  {key}: {value}")
        for name in names:
            entry = _entry_point(name)
            if entry is None:
                outcomes[name] = "skipped (no main)"
                continue
            print(f"\n### {name}")
            try:
                code = entry(QUICK_ARGS.get(name, []) if args.quick else [])
            except Exception as error:  # one failing benchmark does not stop the others
                print(f"  {name} failed: {error!r}")
                code = 1
            outcomes[name] = "ok" if code in (0, None) else f"failed ({code})"
    _write_summary(machine, names, outcomes, time.monotonic() - started, args.quick)
    for name, outcome in outcomes.items():
        print(f"{name}: {outcome}")
    return 0 if all(outcome == "ok" for outcome in outcomes.values()) else 1


def _write_summary(
    machine: dict[str, str],
    names: list[str],
    outcomes: dict[str, str],
    elapsed: float,
    quick: bool,
) -> None:
    lines = [
        "# Benchmark results" + (" (--quick: smoke test, not for the record)" if quick else ""),
        "",
        "Machine:",
        "",
        *[f"- {key}: {value}" for key, value in machine.items()],
        f"- total time: {elapsed:.0f} s",
        "",
    ]
    for name in names:
        result = OUT_DIR / f"{name}.md"
        lines.append(f"<!-- {name}: {outcomes.get(name, '?')} -->")
        if result.exists() and outcomes.get(name) == "ok":
            lines += [_demote(result.read_text()), ""]
        else:
            lines += [f"## {name}", "", f"(no result: {outcomes.get(name, 'not run')})", ""]
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    Path(OUT_DIR / "summary.md").write_text("\n".join(lines))
    print(f"\nsummary -> {OUT_DIR / 'summary.md'}")


def _demote(markdown: str) -> str:
    """A result file's top title becomes a section of the summary."""
    out = []
    for line in markdown.splitlines():
        if line.startswith("# "):
            line = "#" + line
        out.append(line)
    return "\n".join(out)


if __name__ == "__main__":
    raise SystemExit(main())
