"""What auditing each change in its own transaction costs (issue 6, decision 0007):
``POST /fhir/Patient`` with the audit off and on, same run, same bodies, same client.

On: each create stages its AuditEvent in the create's transaction (so the create is a
transaction, not one autocommit statement) and the HTTP answer waits for a seal pass
that chains what is staged. The patient index is off in both (its matching would hide
the audit's share), sign-in and access rules too. Each configuration runs twice,
alternated, the better of each pair kept. Floor: plain ``INSERT`` of the same bodies
(no validation, no index rows, no audit). After the "on" runs the bench checks that
every create has exactly one chained event and that nothing stays staged.

    python -m bench.audit_writes [--duration 10] [--concurrency 16] [--workers 1]

The client is Python (httpx, asyncio): wrk is not on this machine; it shares the two
cores, so the rates are lower than wrk's: the on/off ratio is the figure.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path
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
    sql_floor,
    synthetic_patient,
    write_results,
)


async def _load(
    base_url: str, bodies: list[dict[str, Any]], duration_s: float, concurrency: int
) -> dict[str, Any]:
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + duration_s

    async def client(number: int) -> None:
        nonlocal errors
        turn = number
        limits = httpx.Limits(max_connections=1)
        async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=30) as http:
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                response = await http.post("/fhir/Patient", json=bodies[turn % len(bodies)])
                latencies.append(time.perf_counter() - started)
                errors += response.status_code != 201
                turn += concurrency

    started = time.perf_counter()
    await asyncio.gather(*(client(n) for n in range(concurrency)))
    elapsed = time.perf_counter() - started
    ordered = sorted(latencies)
    return {
        "requests": len(ordered),
        "rate": len(ordered) / elapsed,
        "p50_ms": ordered[len(ordered) // 2] * 1000 if ordered else 0.0,
        "p99_ms": ordered[int(len(ordered) * 0.99)] * 1000 if ordered else 0.0,
        "errors": errors,
    }


def _audit_counts(conninfo: str) -> tuple[int, int]:
    """(chained create events, staged events)."""
    with psycopg.connect(conninfo) as conn:
        chained = conn.execute("SELECT count(*) FROM audit_event WHERE action = 'C'").fetchone()
        staged = conn.execute("SELECT count(*) FROM audit_pending").fetchone()
    assert chained is not None and staged is not None
    return int(chained[0]), int(staged[0])


def run(
    conninfo: str, audit: bool, bodies: list[dict[str, Any]], args: argparse.Namespace
) -> dict[str, Any]:
    settings = {
        "MAILLAGE_AUDIT_ENABLED": "true" if audit else "false",
        "MAILLAGE_ACCESS_POLICY": "allow-all",
        "MAILLAGE_IDENTITY_INDEX_ENABLED": "false",
    }
    os.environ.update(settings)
    try:
        before, _ = _audit_counts(conninfo)
        with running_hub(conninfo, args.workers, log_dir=OUT_DIR / "logs") as hub:
            asyncio.run(_load(hub.base_url, bodies, 2.0, args.concurrency))  # warm-up
            chained_warm, _ = _audit_counts(conninfo)
            result = asyncio.run(_load(hub.base_url, bodies, args.duration, args.concurrency))
        chained, staged = _audit_counts(conninfo)
    finally:
        for name in settings:
            os.environ.pop(name, None)
    if result["errors"]:
        raise BenchError(f"audit {'on' if audit else 'off'}: {result['errors']} creates failed")
    if audit and (chained - chained_warm != result["requests"] or staged):
        raise BenchError(
            f"{result['requests']} creates but {chained - chained_warm} chained events"
            f" and {staged} left staged"
        )
    if not audit and chained != before:
        raise BenchError("the audit was off but events were chained")
    label = "on " if audit else "off"
    print(
        f"  audit {label} {result['rate']:7.0f}/s  p50 {result['p50_ms']:.1f} ms  "
        f"p99 {result['p99_ms']:.1f} ms",
        flush=True,
    )
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--bodies", type=int, default=2_000)
    args = parser.parse_args(argv)
    bodies = [synthetic_patient(n) for n in range(args.bodies)]
    bodies_file = OUT_DIR / "audit_writes_bodies.ndjson"
    bodies_file.parent.mkdir(parents=True, exist_ok=True)
    bodies_file.write_text("".join(json.dumps(body) + "\n" for body in bodies))
    try:
        with postgres_server() as server, fresh_database(server, "audit_writes") as db:
            runs: dict[str, list[dict[str, Any]]] = {"off": [], "on": []}
            for _ in range(2):
                runs["off"].append(run(db, False, bodies, args))
                runs["on"].append(run(db, True, bodies, args))
            floor = sql_floor(
                "plain SQL INSERT of the same bodies",
                db,
                "insert",
                tasks=args.concurrency,
                duration_s=args.duration,
                data_file=bodies_file,
            )
            machine = machine_description(db)
    except BenchError as error:
        return fail(error)
    off = max(runs["off"], key=lambda r: r["rate"])
    on = max(runs["on"], key=lambda r: r["rate"])
    ratio = on["rate"] / off["rate"] if off["rate"] else 0.0
    markdown = "\n".join(
        [
            f"`POST /fhir/Patient`, {args.concurrency} Python clients, {args.workers} hub"
            f" worker(s), {args.duration:.0f} s per run, best of two alternated runs each;"
            " patient index, sign-in and access rules off in both.",
            "",
            "| audit of changes | creates/s | p50 | p99 |",
            "|---|---|---|---|",
            f"| off | {off['rate']:,.0f} | {off['p50_ms']:.1f} ms | {off['p99_ms']:.1f} ms |",
            f"| on (staged in the create's transaction, chained before the answer) |"
            f" {on['rate']:,.0f} | {on['p50_ms']:.1f} ms | {on['p99_ms']:.1f} ms |",
            f"| floor: plain SQL INSERT, same bodies | {floor.rate:,.0f} | {floor.p50_ms:.1f} ms"
            f" | {floor.p99_ms:.1f} ms |",
            "",
            f"On / off: {ratio:.2f}; every create of the 'on' runs had exactly one chained"
            " event, none left staged.",
            "",
        ]
    )
    print(markdown)
    write_results(
        "audit_writes",
        {
            "machine": machine,
            "off": runs["off"],
            "on": runs["on"],
            "floor": floor.as_dict(),
            "ratio": ratio,
            "args": vars(args),
            "bodies_file": str(Path(bodies_file)),
        },
        markdown,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
