"""Audit chain appends beside their floor: AuditEvents/s and p99 latency of
``AuditTrail.record`` for the two ways of serialising the chain, and of a plain INSERT of
the same rows without chain or lock, same pool, same tasks, same run.

- ``lock``: each event in its own transaction: ``pg_advisory_xact_lock``, read the head,
  chain, INSERT, COMMIT (what a write does inside its own transaction, ``conn=``);
- ``batch``: the per-process ``BatchWriter`` (queue → one transaction per batch, the
  caller awaits its commit: what reads do);
- ``floor``: ``INSERT`` of the same row (body built the same way) into a copy of the table
  without the trigger, the sequence number from a PostgreSQL sequence, no hash, no lock,
  one autocommit statement per event.

    .venv/bin/python -m bench.audit_append [--tasks 1 50] [--duration 8]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import psycopg

from bench.http_common import (
    BenchError,
    fail,
    fresh_database,
    machine_description,
    postgres_server,
    ratio,
    wait_until_quiet,
    write_results,
)
from maillage.audit import AuditTrail
from maillage.security import RequestContext
from maillage.storage import Database

POOL = 10
CTX = RequestContext(
    who="Practitioner/bench", site="chu-nord", roles=frozenset({"physician"}),
    organisation="Organization/chu-nord",
)  # fmt: skip
FLOOR_TABLE = """
CREATE TABLE bench_audit_floor (LIKE audit_event INCLUDING DEFAULTS INCLUDING CONSTRAINTS);
CREATE SEQUENCE bench_audit_floor_seq;
ALTER TABLE bench_audit_floor ALTER seq SET DEFAULT nextval('bench_audit_floor_seq'),
    ADD PRIMARY KEY (seq);
CREATE INDEX ON bench_audit_floor (patient_id, recorded DESC);
CREATE INDEX ON bench_audit_floor (who, recorded DESC);
"""
ZERO = bytes(32)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tasks", type=int, nargs="+", default=[1, 50])
    parser.add_argument("--duration", type=float, default=8.0, help="seconds per measure")
    return parser.parse_args(argv)


def _p(sorted_values: list[float], fraction: float) -> float:
    if not sorted_values:
        return 0.0
    return sorted_values[min(len(sorted_values) - 1, int(fraction * len(sorted_values)))]


async def _drive(
    tasks: int, duration: float, append: Callable[[int], Awaitable[None]]
) -> dict[str, float]:
    latencies: list[float] = []
    stop = time.perf_counter() + duration

    async def one(task: int) -> None:
        number = task
        while time.perf_counter() < stop:
            start = time.perf_counter()
            await append(number)
            latencies.append(time.perf_counter() - start)
            number += tasks

    began = time.perf_counter()
    await asyncio.gather(*(one(task) for task in range(tasks)))
    elapsed = time.perf_counter() - began
    ordered = sorted(latencies)
    return {
        "appends": len(latencies),
        "per_s": len(latencies) / elapsed,
        "p50_ms": _p(ordered, 0.50) * 1000,
        "p99_ms": _p(ordered, 0.99) * 1000,
    }


async def _measure(conninfo: str, tasks: int, duration: float) -> dict[str, dict[str, float]]:
    db = Database(conninfo, min_size=POOL, max_size=POOL)
    await db.open()
    trail = AuditTrail(db)
    results: dict[str, dict[str, float]] = {}
    try:

        async def floor(number: int) -> None:
            (event,) = trail.events(CTX, "read", "Observation", [str(number)], [f"p{number % 997}"])
            async with db.connection() as conn:
                await conn.execute(
                    "INSERT INTO bench_audit_floor (recorded, patient_id, who, action, outcome,"
                    " body, prev_hash, hash) VALUES (%s, %s, %s, %s, %s, %s::jsonb, %s, %s)",
                    (
                        event.recorded, event.patient_id, event.who, event.action,
                        event.outcome, orjson.dumps(event.body).decode(), ZERO, ZERO,
                    ),
                )  # fmt: skip

        async def lock(number: int) -> None:
            async with db.transaction() as conn:
                await trail.record(
                    CTX, "read", "Observation", [str(number)], [f"p{number % 997}"], conn=conn
                )

        async def batch(number: int) -> None:
            await trail.record(CTX, "read", "Observation", [str(number)], [f"p{number % 997}"])

        for name, append in (("floor", floor), ("lock", lock), ("batch", batch)):
            await _drive(tasks, 1.0, append)  # warm-up
            results[name] = await _drive(tasks, duration, append)
            print(
                f"  {tasks:>3} tasks  {name:<5} {results[name]['per_s']:>9,.0f} appends/s"
                f"  p50 {results[name]['p50_ms']:6.2f} ms  p99 {results[name]['p99_ms']:6.2f} ms"
            )
        report = await trail.verify()
        if not report.intact:
            raise BenchError(f"the chain is broken after the run: {report.broken}")
        results["chain"] = {"rows": report.checked}
    finally:
        await trail.close()
        await db.close()
    return results


def run(args: argparse.Namespace) -> int:
    with postgres_server() as server:
        runs: list[dict[str, Any]] = []
        machine: dict[str, str] = {}
        for tasks in args.tasks:
            with fresh_database(server, "audit") as conninfo:
                with psycopg.connect(conninfo, autocommit=True) as conn:
                    conn.execute(FLOOR_TABLE)
                machine = machine_description(conninfo)
                quiet = wait_until_quiet()
                measured = asyncio.run(_measure(conninfo, tasks, args.duration))
                runs.append({"tasks": tasks, "background_cpu": quiet, **measured})
    lines = [
        "# Audit chain appends",
        "",
        "| tasks | writer | appends/s | p50 ms | p99 ms | × floor |",
        "|---|---|---|---|---|---|",
    ]
    for item in runs:
        for name in ("floor", "lock", "batch"):
            figures = item[name]
            times = ratio(figures["per_s"], item["floor"]["per_s"])
            lines.append(
                f"| {item['tasks']} | {name} | {figures['per_s']:,.0f} | {figures['p50_ms']:.2f}"
                f" | {figures['p99_ms']:.2f} | {times:.2f} |"
            )
    markdown = "\n".join(lines) + "\n"
    print(markdown)
    write_results("audit_append", {"machine": machine, "runs": runs}, markdown)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return run(args)
    except BenchError as error:
        return fail(error)


if __name__ == "__main__":
    raise SystemExit(main())
