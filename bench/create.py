"""Create over HTTP (``POST /fhir/Patient``, wrk) beside its floor: plain INSERTs of the same
JSON bodies through psycopg 3 (same pool size, same concurrency).

The hub validates each body, stamps meta, extracts its search index rows and writes them
with the resource in one transaction; the floor writes the body alone.

    .venv/bin/python -m bench.create [--workers 1 2] [--duration 15] [--profile]
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import psycopg

from bench.http_common import (
    LUA_DIR,
    OUT_DIR,
    BenchError,
    LoadResult,
    fail,
    fresh_database,
    machine_description,
    postgres_server,
    profile_sections,
    profile_summary,
    profiling,
    rate_table,
    ratio,
    require_wrk,
    run_wrk,
    running_hub,
    sql_floor,
    synthetic_patient,
    vacuum_analyze,
    verdict,
    write_results,
)

TARGET_RATE = 500.0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--connections", type=int, default=20)
    parser.add_argument("--duration", type=float, default=15.0, help="seconds per measured run")
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--bodies", type=int, default=2_000, help="distinct Patient bodies")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--profile", action="store_true", help="py-spy the hub during the run")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        require_wrk()
        return run(args)
    except BenchError as error:
        return fail(error)


def _count(conninfo: str) -> int:
    with psycopg.connect(conninfo) as conn:
        row = conn.execute("SELECT count(*) FROM resource").fetchone()
        return int(row[0]) if row else 0


def run(args: argparse.Namespace) -> int:
    print(f"== create: {args.connections} connections, {args.duration:.0f} s per run")
    bodies_file = OUT_DIR / "create_bodies.ndjson"
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    bodies_file.write_text(
        "\n".join(
            json.dumps(synthetic_patient(100_000 + n), ensure_ascii=False)
            for n in range(args.bodies)
        )
        + "\n"
    )
    rows: list[dict[str, Any]] = []
    profiles: dict[str, str] = {}
    with postgres_server() as server:
        machine: dict[str, str] = {}
        for workers in args.workers:
            # A fresh database per worker count: both runs start from the same table sizes.
            with fresh_database(server, f"create{workers}") as database:
                machine = machine or machine_description(database)
                floor = sql_floor(
                    f"plain SQL INSERT, {workers} process(es)",
                    database,
                    "insert",
                    tasks=args.connections,
                    duration_s=args.duration,
                    processes=workers,
                    data_file=bodies_file,
                )
                print("  " + floor.line())
                vacuum_analyze(database)
                with running_hub(database, workers, log_dir=OUT_DIR / "logs") as hub:
                    url = f"{hub.base_url}/fhir/Patient"
                    script = LUA_DIR / "create.lua"
                    run_wrk(
                        "warm-up",
                        url,
                        script,
                        connections=args.connections,
                        duration_s=args.warmup,
                        script_args=[str(bodies_file)],
                    )
                    before = _count(database)
                    name = f"create-{workers}w"
                    label = f"HTTP POST, {workers} worker(s)"
                    if args.profile:
                        with profiling(hub, name, args.duration) as outputs:
                            result = run_wrk(
                                label,
                                url,
                                script,
                                connections=args.connections,
                                duration_s=args.duration,
                                script_args=[str(bodies_file)],
                            )
                        profiles[name] = profile_summary(outputs)
                    else:
                        result = run_wrk(
                            label,
                            url,
                            script,
                            connections=args.connections,
                            duration_s=args.duration,
                            script_args=[str(bodies_file)],
                        )
                    created = _count(database) - before
                print("  " + result.line())
                if created < result.requests - result.errors:
                    raise BenchError(
                        f"wrk counted {result.requests} answers but only {created} rows appeared"
                    )
                rows.append(_row(workers, result, floor, created))
                print(f"  ratio {rows[-1]['ratio']:.0%} of the floor -> {rows[-1]['verdict']}")
    best = max(rows, key=lambda row: row["rate"])
    write_results(
        "create",
        {"machine": machine, "rows": rows, "best_workers": best["workers"], "profiles": profiles},
        _markdown(args, rows, best, profiles),
    )
    return 0


def _row(workers: int, result: LoadResult, floor: LoadResult, created: int) -> dict[str, Any]:
    ok = result.rate >= TARGET_RATE and result.errors == 0
    return {
        "workers": workers,
        "rate": result.rate,
        "p50_ms": result.p50_ms,
        "p90_ms": result.p90_ms,
        "p99_ms": result.p99_ms,
        "errors": result.errors,
        "requests": result.requests,
        "rows_created": created,
        "floor_rate": floor.rate,
        "floor_p50_ms": floor.p50_ms,
        "floor_p99_ms": floor.p99_ms,
        "ratio": ratio(result.rate, floor.rate),
        "verdict": verdict(ok),
        "http": result.as_dict(),
        "floor": floor.as_dict(),
    }


def _markdown(
    args: argparse.Namespace,
    rows: list[dict[str, Any]],
    best: dict[str, Any],
    profiles: dict[str, str],
) -> str:
    lines = [
        "## Create",
        "",
        f"`POST /fhir/Patient` with wrk, {args.connections} connections, 2 threads, "
        f"{args.duration:.0f} s after a {args.warmup:.0f} s warm-up, cycling over "
        f"{args.bodies:,} synthetic Patient bodies (each request creates a new resource: "
        "validation, meta, search index rows, one transaction). Floor: plain "
        "`INSERT INTO resource (...) VALUES (...)` of the same bodies (autocommit, no index "
        f"rows) from {args.connections} asyncio tasks through psycopg 3, pool of 10 per "
        "process, as many processes as the hub has workers. A fresh database per row.",
        "",
        *rate_table(rows, "HTTP creates/s"),
    ]
    lines += [
        "",
        f"Target: ≥ {TARGET_RATE:,.0f} creates/s (p99 reported). "
        f"Best: {best['workers']} worker(s).",
        "",
    ]
    lines += profile_sections(profiles)
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
