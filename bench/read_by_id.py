"""Read by id over HTTP (``GET /fhir/Patient/{id}``, wrk) beside its floor: the same lookups
in plain SQL through psycopg 3 (same pool size, same concurrency).

    .venv/bin/python -m bench.read_by_id [--workers 1 2] [--duration 15] [--profile]
"""

from __future__ import annotations

import argparse
from typing import Any

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
    seed_patients,
    sql_floor,
    verdict,
    write_results,
)

TARGET_RATE = 2_000.0
TARGET_P99_MS = 20.0
TARGET_RATIO = 0.5


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--patients", type=int, default=10_000)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--duration", type=float, default=15.0, help="seconds per measured run")
    parser.add_argument("--warmup", type=float, default=3.0)
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


def run(args: argparse.Namespace) -> int:
    print(f"== read by id: {args.connections} connections, {args.duration:.0f} s per run")
    rows: list[dict[str, Any]] = []
    profiles: dict[str, str] = {}
    with postgres_server() as server, fresh_database(server, "read") as database:
        machine = machine_description(database)
        ids_file = OUT_DIR / "read_ids.txt"
        seed_patients(database, args.patients, ids_file)
        for workers in args.workers:
            floor = sql_floor(
                f"plain SQL SELECT, {workers} process(es)",
                database,
                "select_by_id",
                tasks=args.connections,
                duration_s=args.duration,
                processes=workers,
                data_file=ids_file,
            )
            print("  " + floor.line())
            with running_hub(database, workers, log_dir=OUT_DIR / "logs") as hub:
                url = f"{hub.base_url}/fhir/Patient"
                script = LUA_DIR / "read_by_id.lua"
                run_wrk(
                    "warm-up",
                    url,
                    script,
                    connections=args.connections,
                    duration_s=args.warmup,
                    script_args=[str(ids_file)],
                )
                name = f"read-{workers}w"
                if args.profile:
                    with profiling(hub, name, args.duration) as outputs:
                        result = run_wrk(
                            f"HTTP GET, {workers} worker(s)",
                            url,
                            script,
                            connections=args.connections,
                            duration_s=args.duration,
                            script_args=[str(ids_file)],
                        )
                    profiles[name] = profile_summary(outputs)
                else:
                    result = run_wrk(
                        f"HTTP GET, {workers} worker(s)",
                        url,
                        script,
                        connections=args.connections,
                        duration_s=args.duration,
                        script_args=[str(ids_file)],
                    )
            print("  " + result.line())
            rows.append(_row(workers, result, floor))
            print(f"  ratio {rows[-1]['ratio']:.0%} of the floor -> {rows[-1]['verdict']}")
    best = max(rows, key=lambda row: row["rate"])
    markdown = _markdown(args, machine, rows, best, profiles)
    write_results(
        "read_by_id",
        {"machine": machine, "rows": rows, "best_workers": best["workers"], "profiles": profiles},
        markdown,
    )
    return 0


def _row(workers: int, result: LoadResult, floor: LoadResult) -> dict[str, Any]:
    share = ratio(result.rate, floor.rate)
    ok = (
        result.rate >= TARGET_RATE
        and result.p99_ms < TARGET_P99_MS
        and share >= TARGET_RATIO
        and result.errors == 0
    )
    return {
        "workers": workers,
        "rate": result.rate,
        "p50_ms": result.p50_ms,
        "p90_ms": result.p90_ms,
        "p99_ms": result.p99_ms,
        "errors": result.errors,
        "requests": result.requests,
        "floor_rate": floor.rate,
        "floor_p50_ms": floor.p50_ms,
        "floor_p99_ms": floor.p99_ms,
        "ratio": share,
        "verdict": verdict(ok),
        "http": result.as_dict(),
        "floor": floor.as_dict(),
    }


def _markdown(
    args: argparse.Namespace,
    machine: dict[str, str],
    rows: list[dict[str, Any]],
    best: dict[str, Any],
    profiles: dict[str, str],
) -> str:
    lines = [
        "## Read by id",
        "",
        f"`GET /fhir/Patient/{{id}}` with wrk, {args.connections} connections, 2 threads, "
        f"{args.duration:.0f} s after a {args.warmup:.0f} s warm-up, over {args.patients:,} "
        "seeded Patients (ids cycled from a file). Floor: the same lookups "
        "(`SELECT content FROM resource WHERE resource_type=%s AND id=%s`) from "
        f"{args.connections} asyncio tasks through psycopg 3 (pool of 10 per process, "
        "uvloop), split over as many processes as the hub has workers.",
        "",
        *rate_table(rows, "HTTP req/s"),
    ]
    lines += [
        "",
        f"Targets: ≥ {TARGET_RATE:,.0f} req/s, p99 < {TARGET_P99_MS:.0f} ms, "
        f"≥ {TARGET_RATIO:.0%} of the floor. Best: {best['workers']} worker(s).",
        "",
    ]
    lines += profile_sections(profiles)
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
