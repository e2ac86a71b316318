"""Can a reader tell a hidden record from an unknown id by the time of the answer?
(issue 6: "nothing hidden may be inferred from counts, errors or timing").

Both answer 404 with the same body (decision 0006). This measures the time: one signed-in
physician with no care relationship reads, one request at a time, alternately an
existing Patient she may not see and an id nobody has; the hub runs as deployed
(sign-in, care rules, audit). Reported: each side's latency (p10, p50, p90), the
difference of the medians with a bootstrap 95 % interval, and the request's own jitter
(p90 - p10 of the unknown ids) beside it. The floor: the same two reads in plain SQL
(the found row's access filter is what differs).

    python -m bench.hidden_timing [--patients 2000] [--reads 3000]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
import uuid
from typing import Any

import httpx
import psycopg

from bench.http_common import (
    OUT_DIR,
    BenchError,
    fail,
    fresh_database,
    machine_description,
    postgres_server,
    running_hub,
    seed_patients,
    write_results,
)
from bench.security_cost import add_reader_account, reader_token


def _quantiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    pick = lambda q: ordered[min(len(ordered) - 1, int(len(ordered) * q))] * 1000  # noqa: E731
    return {"p10_ms": pick(0.10), "p50_ms": pick(0.50), "p90_ms": pick(0.90)}


def _median_difference(hidden: list[float], unknown: list[float]) -> tuple[float, float, float]:
    """Median(hidden) - median(unknown), ms, with a bootstrap 95 % interval."""
    rng = random.Random(7)
    base = (statistics.median(hidden) - statistics.median(unknown)) * 1000
    samples = []
    for _ in range(400):
        left = [rng.choice(hidden) for _ in hidden]
        right = [rng.choice(unknown) for _ in unknown]
        samples.append((statistics.median(left) - statistics.median(right)) * 1000)
    samples.sort()
    return base, samples[10], samples[389]


def _http_reads(base_url: str, token: str, hidden: list[str], reads: int) -> dict[str, list[float]]:
    timings: dict[str, list[float]] = {"hidden": [], "unknown": []}
    rng = random.Random(11)
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=base_url, headers=headers, timeout=30) as http:
        for turn in range(2 * reads + 200):
            kind = "hidden" if turn % 2 == 0 else "unknown"
            target = rng.choice(hidden) if kind == "hidden" else str(uuid.uuid4())
            started = time.perf_counter()
            answer = http.get(f"/fhir/Patient/{target}")
            elapsed = time.perf_counter() - started
            if answer.status_code != 404:
                raise BenchError(f"{kind} read answered {answer.status_code}, not 404")
            if turn >= 200:  # after a warm-up
                timings[kind].append(elapsed)
    return timings


def _sql_reads(conninfo: str, hidden: list[str], reads: int) -> dict[str, list[float]]:
    """The same reads without the hub: the access filter is not applied here; the hidden
    row is found (and returned), the unknown id is not."""
    timings: dict[str, list[float]] = {"hidden": [], "unknown": []}
    rng = random.Random(13)
    query = "SELECT content FROM resource WHERE resource_type = 'Patient' AND id = %s"
    with psycopg.connect(conninfo, autocommit=True) as conn:
        for turn in range(2 * reads):
            kind = "hidden" if turn % 2 == 0 else "unknown"
            target = rng.choice(hidden) if kind == "hidden" else str(uuid.uuid4())
            started = time.perf_counter()
            conn.execute(query, (target,)).fetchone()
            timings[kind].append(time.perf_counter() - started)
    return timings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--patients", type=int, default=2000)
    parser.add_argument("--reads", type=int, default=3000, help="reads of each kind")
    args = parser.parse_args(argv)
    settings = {
        "MAILLAGE_ACCESS_POLICY": "care",
        "MAILLAGE_AUTH_ENABLED": "true",
        "MAILLAGE_AUDIT_ENABLED": "true",
    }
    try:
        with postgres_server() as server, fresh_database(server, "hidden_timing") as db:
            hidden = seed_patients(db, args.patients, OUT_DIR / "hidden_timing_ids.txt")
            add_reader_account(db)  # a physician with no care relationship to any of them
            os.environ.update(settings)
            try:
                with running_hub(db, 1, log_dir=OUT_DIR / "logs") as hub:
                    http = _http_reads(hub.base_url, reader_token(hub.base_url), hidden, args.reads)
            finally:
                for name in settings:
                    os.environ.pop(name, None)
            sql = _sql_reads(db, hidden, args.reads)
            machine = machine_description(db)
    except BenchError as error:
        return fail(error)
    rows: list[dict[str, Any]] = []
    for source, timings in (("hub (HTTP, 404 both)", http), ("floor: plain SQL", sql)):
        difference, low, high = _median_difference(timings["hidden"], timings["unknown"])
        rows.append(
            {
                "source": source,
                "hidden": _quantiles(timings["hidden"]),
                "unknown": _quantiles(timings["unknown"]),
                "median_difference_ms": difference,
                "interval_ms": [low, high],
            }
        )
    lines = [
        f"Read by id of a Patient the reader may not see vs an id nobody has, {args.reads:,}"
        " of each, one request at a time, alternated; hub as deployed (sign-in, care rules,"
        " audit), one worker.",
        "",
        "| source | hidden p10 / p50 / p90 ms | unknown p10 / p50 / p90 ms |"
        " median difference (95 % interval) | unknown's p90 - p10 |",
        "|---|---|---|---|---|",
    ]
    for row in rows:
        h, u = row["hidden"], row["unknown"]
        low, high = row["interval_ms"]
        lines.append(
            f"| {row['source']} | {h['p10_ms']:.2f} / {h['p50_ms']:.2f} / {h['p90_ms']:.2f} |"
            f" {u['p10_ms']:.2f} / {u['p50_ms']:.2f} / {u['p90_ms']:.2f} |"
            f" {row['median_difference_ms'] * 1000:+.0f} µs ({low * 1000:+.0f} to"
            f" {high * 1000:+.0f}) | {(u['p90_ms'] - u['p10_ms']) * 1000:.0f} µs |"
        )
    markdown = "\n".join(lines) + "\n"
    print(markdown)
    write_results("hidden_timing", {"machine": machine, "rows": rows, "args": vars(args)}, markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
