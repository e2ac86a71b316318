"""A 100-entry transaction Bundle over HTTP (``POST /fhir``) beside its floor: the same 100
rows inserted in one SQL transaction through psycopg 3.

One client posts the bundles one after another (latency), as a FHIR client loading a
batch would; ``--clients`` adds concurrent posters for a throughput figure.

    .venv/bin/python -m bench.transaction [--bundles 30] [--entries 100] [--workers 1 2]
"""

from __future__ import annotations

import argparse
import http.client
import json
import statistics
import threading
import time
import uuid
from typing import Any

import psycopg

from bench.http_common import (
    OUT_DIR,
    BenchError,
    fail,
    fresh_database,
    machine_description,
    postgres_server,
    ratio,
    running_hub,
    synthetic_patient,
    write_results,
)

MAX_SECONDS = 300.0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bundles", type=int, default=30)
    parser.add_argument("--entries", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=3, help="bundles posted before measuring")
    parser.add_argument("--clients", type=int, default=4, help="posters for the throughput run")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return run(args)
    except BenchError as error:
        return fail(error)


def make_bundle(number: int, entries: int) -> dict[str, Any]:
    """A transaction of ``entries`` synthetic Patient creates (urn:uuid full URLs)."""
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": f"urn:uuid:{uuid.uuid4()}",
                "resource": synthetic_patient(number * entries + n),
                "request": {"method": "POST", "url": "Patient"},
            }
            for n in range(entries)
        ],
    }


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))]


def _post_bundles(port: int, bodies: list[bytes]) -> list[float]:
    """POST each body on one keep-alive connection; returns the latencies in seconds."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    latencies = []
    deadline = time.monotonic() + MAX_SECONDS
    try:
        for body in bodies:
            if time.monotonic() > deadline:
                raise BenchError("transaction bundles took longer than the time allowed")
            started = time.perf_counter()
            connection.request(
                "POST",
                "/fhir",
                body=body,
                headers={
                    "Content-Type": "application/fhir+json",
                    "Accept": "application/fhir+json",
                    "Prefer": "return=minimal",
                },
            )
            response = connection.getresponse()
            answer = response.read()
            latencies.append(time.perf_counter() - started)
            if response.status != 200:
                raise BenchError(f"transaction answered {response.status}: {answer[:500]!r}")
    finally:
        connection.close()
    return latencies


def _http_run(port: int, bodies: list[bytes], clients: int) -> tuple[list[float], float]:
    """``clients`` threads share out the bodies; returns latencies and wall time."""
    shares = [bodies[i::clients] for i in range(clients)]
    results: list[list[float]] = [[] for _ in range(clients)]
    errors: list[BaseException] = []

    def poster(index: int) -> None:
        try:
            results[index] = _post_bundles(port, shares[index])
        except BaseException as error:  # reported in the main thread
            errors.append(error)

    threads = [threading.Thread(target=poster, args=(i,)) for i in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=MAX_SECONDS + 60)
    elapsed = time.perf_counter() - started
    if errors:
        raise BenchError(f"a poster failed: {errors[0]}")
    return [value for values in results for value in values], elapsed


def _sql_floor(conninfo: str, bundles: list[dict[str, Any]]) -> list[float]:
    """Insert each bundle's rows in one transaction (executemany: pipelined)."""
    latencies = []
    with psycopg.connect(conninfo) as conn, conn.cursor() as cursor:
        for bundle in bundles:
            rows = [
                ("Patient", str(uuid.uuid4()), json.dumps(entry["resource"], ensure_ascii=False))
                for entry in bundle["entry"]
            ]
            started = time.perf_counter()
            with conn.transaction():
                cursor.executemany(
                    "INSERT INTO resource (resource_type, id, version_id, last_updated, method,"
                    " content) VALUES (%s, %s, 1, now(), 'POST', %s::jsonb)",
                    rows,
                )
            latencies.append(time.perf_counter() - started)
    return latencies


def _stats(latencies: list[float], entries: int, elapsed: float | None = None) -> dict[str, float]:
    total = elapsed if elapsed is not None else sum(latencies)
    return {
        "bundles": len(latencies),
        "median_ms": statistics.median(latencies) * 1000,
        "p95_ms": _percentile(latencies, 0.95) * 1000,
        "max_ms": max(latencies) * 1000,
        "resources_per_s": len(latencies) * entries / total if total else 0.0,
    }


def run(args: argparse.Namespace) -> int:
    print(f"== transaction: {args.bundles} bundles of {args.entries} Patients")
    bundles = [make_bundle(n, args.entries) for n in range(args.warmup + args.bundles)]
    bodies = [json.dumps(bundle, ensure_ascii=False).encode() for bundle in bundles]
    rows: list[dict[str, Any]] = []
    with postgres_server() as server:
        machine: dict[str, str] = {}
        for workers in args.workers:
            with fresh_database(server, f"tx{workers}") as database:
                machine = machine or machine_description(database)
                _sql_floor(database, bundles[: args.warmup])
                floor = _stats(_sql_floor(database, bundles[args.warmup :]), args.entries)
                print(
                    f"  plain SQL, one transaction of {args.entries} INSERTs: median "
                    f"{floor['median_ms']:.1f} ms, p95 {floor['p95_ms']:.1f} ms, "
                    f"{floor['resources_per_s']:,.0f} rows/s"
                )
                with running_hub(database, workers, log_dir=OUT_DIR / "logs") as hub:
                    port = int(hub.base_url.rsplit(":", 1)[1])
                    _post_bundles(port, bodies[: args.warmup])
                    sequential = _stats(_post_bundles(port, bodies[args.warmup :]), args.entries)
                    print(
                        f"  HTTP transaction, {workers} worker(s), 1 client: median "
                        f"{sequential['median_ms']:.1f} ms, p95 {sequential['p95_ms']:.1f} ms, "
                        f"{sequential['resources_per_s']:,.0f} resources/s"
                    )
                    more = [
                        json.dumps(make_bundle(10_000 + n, args.entries)).encode()
                        for n in range(args.bundles)
                    ]
                    latencies, elapsed = _http_run(port, more, args.clients)
                    concurrent = _stats(latencies, args.entries, elapsed)
                    print(
                        f"  HTTP transaction, {workers} worker(s), {args.clients} clients: "
                        f"median {concurrent['median_ms']:.1f} ms, p95 "
                        f"{concurrent['p95_ms']:.1f} ms, "
                        f"{concurrent['resources_per_s']:,.0f} resources/s"
                    )
                rows.append(
                    {
                        "workers": workers,
                        "sequential": sequential,
                        "concurrent": concurrent,
                        "clients": args.clients,
                        "floor": floor,
                        "ratio": ratio(sequential["resources_per_s"], floor["resources_per_s"]),
                    }
                )
    write_results("transaction", {"machine": machine, "rows": rows}, _markdown(args, rows))
    return 0


def _markdown(args: argparse.Namespace, rows: list[dict[str, Any]]) -> str:
    lines = [
        "## Transaction bundle",
        "",
        f"`POST /fhir` with a transaction Bundle of {args.entries} Patient creates "
        f"(`urn:uuid:` full URLs, `Prefer: return=minimal`), {args.bundles} bundles after "
        f"{args.warmup} warm-up ones, one client on one keep-alive connection; then "
        f"{args.clients} clients for throughput. Floor: the same {args.entries} bodies "
        "inserted in one SQL transaction (`executemany`, pipelined; no validation, no "
        "index rows), one connection.",
        "",
        "| workers | median ms | p95 ms | resources/s | "
        f"{args.clients} clients: median ms | resources/s | floor median ms | floor p95 ms "
        "| floor rows/s | ratio (1 client) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        s, c, f = row["sequential"], row["concurrent"], row["floor"]
        lines.append(
            f"| {row['workers']} | {s['median_ms']:.1f} | {s['p95_ms']:.1f} | "
            f"{s['resources_per_s']:,.0f} | {c['median_ms']:.1f} | "
            f"{c['resources_per_s']:,.0f} | {f['median_ms']:.1f} | {f['p95_ms']:.1f} | "
            f"{f['resources_per_s']:,.0f} | {row['ratio']:.0%} |"
        )
    lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
