"""Search at scale (issue 3's targets): 1,000,000 resources, each search beside its floor.

    .venv/bin/python -m bench.scale [--resources 1000000] [--requests 200] [--keep]

1. Data: ``bench/scale_data.py`` (the Synthea 10-patient export replicated with new ids and
   patients, plus one patient owning 5,000 resources), written once under bench/out.
2. Load rate: ``maillage load --no-index`` into a fresh database, then ``maillage load``
   (full indexing) into another: the rates and their ratio (target: indexed >= 50 %).
3. Index size on disk per resource (each index table with its indexes).
4. Latency, one client on one keep-alive connection, ``--requests`` requests per search
   (values cycled from the data), against the hub (``maillage serve``): p50 / p95 / max,
   beside the floor: the same rows fetched in plain SQL through psycopg 3, same run.
5. The ``EXPLAIN (ANALYZE, BUFFERS)`` of every statement the engine sends for each search.

With ``--keep`` the indexed database lives in bench/out/scale-pg and is reused by later
runs (the loads are then skipped unless ``--reload``). Results: bench/out/scale.md/.json.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import psycopg

from bench import scale_data
from bench.bulk_load import run_loader
from bench.http_common import (
    OUT_DIR,
    BenchError,
    fail,
    fresh_database,
    machine_description,
    postgres_server,
    recording_engine,
    running_hub,
    vacuum_analyze,
    wait_until_quiet,
    write_results,
)
from bench.scale_queries import SCENARIOS, Scenario, scenario_values

PAGE = 50
KEEP_DIR = OUT_DIR / "scale-pg"
KEEP_DB = "maillage_scale"
_SEQ_SCAN = re.compile(r"Seq Scan on (\w+)")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--resources", type=int, default=1_000_000)
    parser.add_argument("--heavy", type=int, default=5_000, help="resources of one patient")
    parser.add_argument("--requests", type=int, default=200, help="per search")
    parser.add_argument("--workers", type=int, default=2, help="hub HTTP workers")
    parser.add_argument("--keep", action="store_true", help="keep the database for reruns")
    parser.add_argument("--reload", action="store_true", help="with --keep: load again")
    parser.add_argument("--skip-no-index", action="store_true", help="skip the rate baseline")
    parser.add_argument("--only", nargs="+", choices=[s.key for s in SCENARIOS])
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return run(args)
    except BenchError as error:
        return fail(error)


# -- database ---------------------------------------------------------------------------
@contextmanager
def kept_database(reload: bool) -> Iterator[tuple[str, str, bool]]:
    """(server url, database url, whether it must be loaded) in bench/out/scale-pg."""
    from maillage.storage import EmbeddedPostgres, upgrade

    embedded = EmbeddedPostgres(KEEP_DIR)
    server = embedded.start()
    try:
        with psycopg.connect(server, autocommit=True) as admin:
            exists = admin.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (KEEP_DB,)
            ).fetchone()
            if exists and reload:
                admin.execute(f'DROP DATABASE "{KEEP_DB}" WITH (FORCE)')
                exists = None
            if not exists:
                admin.execute(f'CREATE DATABASE "{KEEP_DB}"')
        params = psycopg.conninfo.conninfo_to_dict(server)
        params["dbname"] = KEEP_DB
        url = psycopg.conninfo.make_conninfo("", **params)
        upgrade(url)
        yield server, url, not exists
    finally:
        embedded.stop()


def resource_count(conninfo: str) -> int:
    with psycopg.connect(conninfo) as conn:
        row = conn.execute("SELECT count(*) FROM resource").fetchone()
    return int(row[0]) if row else 0


def index_sizes(conninfo: str) -> dict[str, Any]:
    tables = ["resource", "resource_version"] + [
        f"sp_{kind}"
        for kind in ("token", "string", "date", "number", "quantity", "uri", "reference")
    ]
    with psycopg.connect(conninfo) as conn:
        count = int(conn.execute("SELECT count(*) FROM resource").fetchone()[0])  # type: ignore[index]
        found = {}
        for table in tables:
            row = conn.execute(
                f"SELECT pg_table_size(%s), pg_indexes_size(%s), (SELECT count(*) FROM {table})",
                (table, table),
            ).fetchone()
            assert row is not None
            found[table] = {"table_bytes": row[0], "index_bytes": row[1], "rows": row[2]}
    index_tables = [t for t in tables if t.startswith("sp_")]
    search_bytes = sum(found[t]["table_bytes"] + found[t]["index_bytes"] for t in index_tables)
    return {
        "resources": count,
        "tables": found,
        "search_index_bytes": search_bytes,
        "search_index_bytes_per_resource": search_bytes / count if count else 0.0,
        "index_rows_per_resource": sum(found[t]["rows"] for t in index_tables) / max(count, 1),
        "resource_bytes_per_resource": (
            found["resource"]["table_bytes"] + found["resource"]["index_bytes"]
        )
        / max(count, 1),
    }


# -- loads ------------------------------------------------------------------------------
def measure_loads(
    server: str, database: str | None, folder: Path, skip_no_index: bool
) -> dict[str, Any]:
    loads: dict[str, Any] = {}
    if not skip_no_index:
        with fresh_database(server, "noindex") as bare:
            wait_until_quiet()
            print("  load without index ...", flush=True)
            loads["no_index"] = run_loader(bare, folder, None, extra_args=["--no-index"])
            print(f"    {loads['no_index']['summary']}")
    if database is not None:
        wait_until_quiet()
        print("  load with full indexing ...", flush=True)
        loads["indexed"] = run_loader(database, folder, None)
        print(f"    {loads['indexed']['summary']}")
    return loads


def _rate(load: dict[str, Any]) -> float:
    return float(load["loaded"]) / float(load["load_seconds"])


# -- latency ----------------------------------------------------------------------------
def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))
    return ordered[index]


def _stats(latencies: list[float]) -> dict[str, float]:
    return {
        "p50_ms": _percentile(latencies, 0.50) * 1000,
        "p95_ms": _percentile(latencies, 0.95) * 1000,
        "max_ms": max(latencies) * 1000,
        "mean_ms": sum(latencies) / len(latencies) * 1000,
    }


def fetch_all(client: httpx.Client, path: str) -> list[dict[str, Any]]:
    """Every page of a search, following ``next`` links; the bundles."""
    bundles = []
    url: str | None = path
    while url:
        response = client.get(url)
        if response.status_code != 200:
            raise BenchError(f"{url}: HTTP {response.status_code} {response.text[:500]}")
        bundle = response.json()
        bundles.append(bundle)
        links = {link["relation"]: link["url"] for link in bundle.get("link", [])}
        url = links.get("next") if path.find("$everything") >= 0 else None
    return bundles


def time_hub(base_url: str, scenario: Scenario, values: list[Any], requests: int) -> list[float]:
    latencies = []
    with httpx.Client(base_url=base_url, timeout=60) as client:
        for number in range(min(20, requests)):  # warm-up
            fetch_all(client, scenario.path(values[number % len(values)]))
        wait_until_quiet()
        for number in range(requests):
            started = time.perf_counter()
            fetch_all(client, scenario.path(values[number % len(values)]))
            latencies.append(time.perf_counter() - started)
    return latencies


def time_floor(database: str, scenario: Scenario, values: list[Any], requests: int) -> list[float]:
    latencies = []
    with psycopg.connect(database, autocommit=True) as conn:
        conn.adapters.register_loader("jsonb", psycopg.types.string.TextLoader)
        for number in range(min(20, requests)):
            scenario.floor(conn, values[number % len(values)])
        for number in range(requests):
            started = time.perf_counter()
            scenario.floor(conn, values[number % len(values)])
            latencies.append(time.perf_counter() - started)
    return latencies


def check_same_rows(base_url: str, database: str, scenario: Scenario, values: list[Any]) -> float:
    """The hub and the floor return the same resources (matches and includes) for the
    first queries; the mean number of resources per answer."""
    counted = 0
    with (
        httpx.Client(base_url=base_url, timeout=60) as client,
        psycopg.connect(database, autocommit=True) as conn,
    ):
        for value in values[:10]:
            bundles = fetch_all(client, scenario.path(value))
            got = {
                (e.get("search", {}).get("mode", "match"), _ref(e["resource"]))
                for bundle in bundles
                for e in bundle.get("entry", [])
            }
            expected = set(scenario.floor(conn, value))
            if got != expected:
                raise BenchError(
                    f"{scenario.key}: hub and floor disagree for {scenario.path(value)}: "
                    f"only hub {sorted(got - expected)[:5]}, only floor "
                    f"{sorted(expected - got)[:5]}"
                )
            counted += len(got)
    return counted / min(10, len(values))


def _ref(resource: dict[str, Any]) -> str:
    return f"{resource['resourceType']}/{resource['id']}"


# -- plans ------------------------------------------------------------------------------
async def _captured(database: str, run: Callable[[Any, Any], Any]) -> list[str]:
    from maillage.storage.database import _configure

    statements: list[str] = []

    engine = recording_engine(statements)
    async with await psycopg.AsyncConnection.connect(database) as conn:
        await _configure(conn)
        await run(engine, conn)
    return statements


def plans(database: str, scenario: Scenario, value: Any) -> list[dict[str, Any]]:
    statements = asyncio.run(_captured(database, scenario.engine_call(value)))
    found = []
    with psycopg.connect(database, autocommit=True) as conn:
        for statement in statements:
            rows = conn.execute("EXPLAIN (ANALYZE, BUFFERS) " + statement).fetchall()
            plan = "\n".join(str(row[0]) for row in rows)
            found.append(
                {
                    "sql": statement,
                    "plan": plan,
                    "seq_scans": re.findall(r"Seq Scan on (\w+)", plan),
                }
            )
    return found


# -- run --------------------------------------------------------------------------------
def run(args: argparse.Namespace) -> int:
    folder = OUT_DIR / f"scale-data-{args.resources}"
    print(f"== scale: data set in {folder}", flush=True)
    started = time.perf_counter()
    dataset = scale_data.build(folder, args.resources, args.heavy)
    print(f"  {dataset['resources']:,} resources ({time.perf_counter() - started:.0f} s)")
    with _database(args) as (server, database, must_load):
        loads = measure_loads(
            server, database if must_load else None, folder, args.skip_no_index or not must_load
        )
        if must_load:
            vacuum_analyze(database)
        if resource_count(database) < int(dataset["resources"]):
            raise BenchError("the database holds fewer resources than the data set: --reload")
        machine = machine_description(database)
        sizes = index_sizes(database)
        print(f"  search index: {sizes['search_index_bytes_per_resource']:,.0f} bytes/resource")
        rng = random.Random(11)
        chosen = [s for s in SCENARIOS if not args.only or s.key in args.only]
        rows = []
        with running_hub(database, args.workers, log_dir=OUT_DIR / "logs") as hub:
            for scenario in chosen:
                requests = min(args.requests, scenario.max_requests)
                values = scenario_values(database, scenario.key, dataset, rng, requests)
                mean = check_same_rows(hub.base_url, database, scenario, values)
                hub_latency = _stats(time_hub(hub.base_url, scenario, values, requests))
                floor_latency = _stats(time_floor(database, scenario, values, requests))
                row = {
                    "key": scenario.key,
                    "title": scenario.title,
                    "target_ms": scenario.target_ms,
                    "mean_resources": mean,
                    "requests": requests,
                    "hub": hub_latency,
                    "floor": floor_latency,
                    "example": scenario.path(values[0]),
                }
                print(
                    f"  {scenario.key:<12} hub p50 {hub_latency['p50_ms']:7.1f} p95 "
                    f"{hub_latency['p95_ms']:7.1f} ms | floor p50 {floor_latency['p50_ms']:7.1f}"
                    f" p95 {floor_latency['p95_ms']:7.1f} ms | target {scenario.target_ms} ms"
                    f" | {mean:.0f} resources",
                    flush=True,
                )
                rows.append(row)
                row["plans"] = plans(database, scenario, values[0])
    payload = {
        "machine": machine,
        "dataset": dataset,
        "loads": loads,
        "sizes": sizes,
        "rows": rows,
        "requests": args.requests,
        "workers": args.workers,
    }
    if "no_index" in loads and "indexed" in loads:
        payload["load_ratio"] = _rate(loads["indexed"]) / _rate(loads["no_index"])
    from bench.scale_report import markdown

    write_results("scale", payload, markdown(payload))
    return 0


@contextmanager
def _database(args: argparse.Namespace) -> Iterator[tuple[str, str, bool]]:
    if args.keep:
        with kept_database(args.reload) as found:
            yield found
        return
    with postgres_server() as server, fresh_database(server, "scale") as database:
        yield server, database, True


if __name__ == "__main__":
    raise SystemExit(main())
