"""Search over HTTP (wrk) beside its floor: the same first pages fetched in plain SQL from the
index tables through psycopg 3, in the same run; and the plan of every query the hub sends.

Data: the Synthea 1000-patient sample (``BulkLoader``) plus synthetic Patients up to
``--patients`` (10,000 by default). Searches (first page, default page size):

- ``Patient?name=<prefix>`` (prefixes taken from the data, cycled);
- ``Patient?identifier=system|value``;
- ``Patient?birthdate=ge<date>&gender=<g>``;
- ``AllergyIntolerance?patient.name=<prefix>`` (chained; the sample has no Encounter).

    .venv/bin/python -m bench.search [--workers 2] [--duration 10] [--connections 20]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import re
import time
import urllib.parse
import urllib.request
from collections import Counter
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from bench import http_common
from bench.http_common import (
    LUA_DIR,
    OUT_DIR,
    ROOT,
    BenchError,
    Hub,
    LoadResult,
    fail,
    fresh_database,
    machine_description,
    postgres_server,
    profile_summary,
    profiling,
    ratio,
    recording_engine,
    require_wrk,
    run_wrk,
    running_hub,
    seed_patients,
    sql_floor,
    vacuum_analyze,
)

SAMPLE = ROOT.parent / "shared" / "data" / "synthea" / "1000-patients"
PAGE = 50  # the engine's default _count
MEDPLUM_NAME_RATE = 663.0  # DESIGN.md, "Peers measured": Patient?name= first page
MEDPLUM_NAME_P95_MS = 39.0
BENCH_SYSTEM = "urn:oid:1.2.250.1.999.1.1.1"
SYNTHEA_SYSTEM = "https://github.com/synthetichealth/synthea"
QUERIES_PER_SCENARIO = 200

_PAGE_OF = (
    "SELECT r.id, r.content FROM resource r WHERE r.resource_type = %s AND NOT r.deleted"
    " AND r.rid IN ({inner}) ORDER BY r.rid LIMIT {limit}"
)
_NAME = (
    "SELECT x.rid FROM sp_string x WHERE x.resource_type = 'Patient' AND x.param = 'name'"
    " AND x.value_norm LIKE %s"
)
# The floor of each search: the same page (ids and bodies, same order) from the index tables.
FLOOR_SQL: dict[str, str] = {
    "name": _PAGE_OF.format(inner=_NAME, limit=PAGE + 1),
    "identifier": _PAGE_OF.format(
        inner="SELECT x.rid FROM sp_token x WHERE x.resource_type = 'Patient'"
        " AND x.param = 'identifier' AND x.system_code_hash = %s",
        limit=PAGE + 1,
    ),
    "birthdate_gender": _PAGE_OF.format(
        inner="SELECT d.rid FROM sp_date d JOIN sp_token g ON g.rid = d.rid"
        " WHERE d.resource_type = 'Patient' AND d.param = 'birthdate' AND d.high >= %s"
        " AND g.resource_type = 'Patient' AND g.param = 'gender' AND g.code_hash = %s",
        limit=PAGE + 1,
    ),
    "chain": _PAGE_OF.format(
        inner="SELECT ref.rid FROM sp_reference ref JOIN resource t"
        " ON t.resource_type = ref.target_type AND t.id = ref.target_id"
        " WHERE ref.resource_type = 'AllergyIntolerance' AND ref.param = 'patient'"
        " AND t.resource_type = 'Patient' AND NOT t.deleted AND t.rid IN (" + _NAME + ")",
        limit=PAGE + 1,
    ),
}


@dataclass
class Scenario:
    key: str
    title: str
    resource_type: str
    queries: list[list[tuple[str, str]]]  # the search parameters of each request
    floor_params: list[list[Any]]  # the floor's parameters for the same request


def _path(resource_type: str, params: list[tuple[str, str]]) -> str:
    return f"/fhir/{resource_type}?{urllib.parse.urlencode(params)}"


# -- data -------------------------------------------------------------------------------
def load_sample(conninfo: str) -> int:
    from maillage.loading.service import BulkLoader

    started = time.perf_counter()
    report = BulkLoader(conninfo).load_paths([SAMPLE])
    print(f"  loaded the Synthea sample in {time.perf_counter() - started:.1f} s: {report}")
    with psycopg.connect(conninfo) as conn:
        row = conn.execute(
            "SELECT count(*) FROM resource WHERE resource_type = 'Patient'"
        ).fetchone()
    return int(row[0]) if row else 0


def _prefixes(conninfo: str) -> list[str]:
    """Realistic name prefixes: the 3 first letters of the most common family names."""
    with psycopg.connect(conninfo) as conn:
        rows = conn.execute(
            "SELECT content->'name'->0->>'family' FROM resource WHERE resource_type = 'Patient'"
        ).fetchall()
    families = Counter(
        re.sub(r"\d+$", "", str(row[0]))[:3].lower() for row in rows if row[0] and len(row[0]) > 2
    )
    return [prefix for prefix, _ in families.most_common(16)]


def scenarios(conninfo: str) -> list[Scenario]:
    from maillage.fhir.indexing.normalize import normalize_string, token_hash

    rng = random.Random(7)
    prefixes = _prefixes(conninfo)
    with psycopg.connect(conninfo) as conn:
        synthea_ids = [
            str(row[0])
            for row in conn.execute(
                "SELECT id FROM resource WHERE resource_type = 'Patient' AND id ~ '^[0-9a-f]{8}-'"
                " AND content->'identifier'->0->>'system' = %s ORDER BY id LIMIT 1000",
                (SYNTHEA_SYSTEM,),
            ).fetchall()
        ]
    identifiers = [(SYNTHEA_SYSTEM, i) for i in synthea_ids[:100]] + [
        (BENCH_SYSTEM, f"BENCH{rng.randrange(8_000):010d}") for _ in range(100)
    ]
    found: list[Scenario] = []

    def name_pattern(prefix: str) -> str:
        return normalize_string(prefix) + "%"

    names = [prefixes[n % len(prefixes)] for n in range(QUERIES_PER_SCENARIO)]
    found.append(
        Scenario(
            "name",
            "`Patient?name=<prefix>`",
            "Patient",
            [[("name", p)] for p in names],
            [["Patient", name_pattern(p)] for p in names],
        )
    )
    found.append(
        Scenario(
            "identifier",
            "`Patient?identifier=system|value`",
            "Patient",
            [[("identifier", f"{s}|{v}")] for s, v in identifiers],
            [["Patient", token_hash("Patient", "identifier", s, v)] for s, v in identifiers],
        )
    )
    dates = [
        (
            f"{1940 + rng.randrange(60)}-{1 + rng.randrange(12):02d}-01",
            rng.choice(["male", "female"]),
        )
        for _ in range(QUERIES_PER_SCENARIO)
    ]
    found.append(
        Scenario(
            "birthdate_gender",
            "`Patient?birthdate=ge<date>&gender=<g>`",
            "Patient",
            [[("birthdate", f"ge{d}"), ("gender", g)] for d, g in dates],
            [
                ["Patient", f"{d}T00:00:00+00:00", token_hash("Patient", "gender", g)]
                for d, g in dates
            ],
        )
    )
    found.append(
        Scenario(
            "chain",
            "`AllergyIntolerance?patient.name=<prefix>` (chained)",
            "AllergyIntolerance",
            [[("patient.name", p)] for p in names],
            [["AllergyIntolerance", name_pattern(p)] for p in names],
        )
    )
    return found


# -- floors -----------------------------------------------------------------------------
def _register_floors() -> None:
    """One floor operation per search, registered with the shared floor runner: each runs
    its SQL with the parameters of line n of the data file (JSON), reading the page."""

    def operation(key: str) -> http_common.Operation:
        statement = FLOOR_SQL[key]

        async def run(conn: psycopg.AsyncConnection, n: int) -> None:
            lines = http_common._FLOOR_STATE["lines"]
            params = json.loads(lines[n % len(lines)])
            cursor = await conn.execute(statement, params)
            await cursor.fetchall()

        return run

    for key in FLOOR_SQL:
        http_common.FLOOR_OPERATIONS[f"search_{key}"] = operation(key)


def floor_ids(conninfo: str, key: str, params: list[Any]) -> list[str]:
    with psycopg.connect(conninfo) as conn:
        rows = conn.execute(FLOOR_SQL[key], params).fetchall()
    return [str(row[0]) for row in rows[:PAGE]]


def hub_ids(base_url: str, resource_type: str, params: list[tuple[str, str]]) -> list[str]:
    with urllib.request.urlopen(base_url + _path(resource_type, params), timeout=30) as response:
        bundle = json.loads(response.read())
    return [entry["resource"]["id"] for entry in bundle.get("entry", [])]


# -- plans ------------------------------------------------------------------------------
async def _captured(conninfo: str, scenario: Scenario) -> list[str]:
    """The SQL statements the hub's engine sends for the scenario's first search."""
    from maillage.storage.database import _configure

    statements: list[str] = []

    engine = recording_engine(statements)
    async with await psycopg.AsyncConnection.connect(conninfo) as conn:
        await _configure(conn)
        await engine.search(
            conn,
            scenario.resource_type,
            scenario.queries[0],
            strict=True,
            visible=lambda alias: sql.SQL("TRUE"),
        )
    return statements


def plans(conninfo: str, scenario: Scenario) -> list[dict[str, Any]]:
    found = []
    statements = asyncio.run(_captured(conninfo, scenario))
    with psycopg.connect(conninfo, autocommit=True) as conn:
        for statement in statements:
            rows = conn.execute("EXPLAIN (ANALYZE, BUFFERS) " + statement).fetchall()
            plan = "\n".join(str(row[0]) for row in rows)
            seq_scans = re.findall(r"Seq Scan on (\w+)", plan)
            found.append(
                {
                    "sql": statement,
                    "plan": plan,
                    "seq_scans": seq_scans,
                    "uses_indexes": "Index" in plan and not seq_scans,
                }
            )
    return found


# -- run --------------------------------------------------------------------------------
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--patients", type=int, default=10_000, help="Patients in all (≥ sample)")
    parser.add_argument("--connections", type=int, default=20)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per measured run")
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--only", nargs="+", choices=sorted(FLOOR_SQL), help="searches to run")
    parser.add_argument("--profile", action="store_true", help="py-spy the hub during the runs")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        require_wrk()
        if not SAMPLE.is_dir():
            raise BenchError(f"the Synthea sample is missing: {SAMPLE}")
        return run(args)
    except BenchError as error:
        return fail(error)


def run(args: argparse.Namespace) -> int:
    print(f"== search: {args.connections} connections, {args.duration:.0f} s per run")
    _register_floors()
    rows: list[dict[str, Any]] = []
    with postgres_server() as server, fresh_database(server, "search") as database:
        machine = machine_description(database)
        sampled = load_sample(database)
        seed_patients(database, max(0, args.patients - sampled), OUT_DIR / "search_ids.txt")
        vacuum_analyze(database)
        with psycopg.connect(database) as conn:
            counted = conn.execute(
                "SELECT resource_type, count(*) FROM resource GROUP BY 1 ORDER BY 1"
            ).fetchall()
        print("  resources: " + ", ".join(f"{t} {n:,}" for t, n in counted))
        chosen = [s for s in scenarios(database) if not args.only or s.key in args.only]
        with running_hub(database, args.workers, log_dir=OUT_DIR / "logs") as hub:
            for scenario in chosen:
                rows.append(_measure(args, database, hub, scenario))
        for row, scenario in zip(rows, chosen, strict=True):
            row["plans"] = plans(database, scenario)
            for plan in row["plans"]:
                mark = "indexes" if plan["uses_indexes"] else f"SEQ SCAN {plan['seq_scans']}"
                print(f"  plan {scenario.key}: {mark}")
    payload = {
        "machine": machine,
        "resources": {str(t): int(n) for t, n in counted},
        "rows": rows,
        "medplum": {"rate": MEDPLUM_NAME_RATE, "p95_ms": MEDPLUM_NAME_P95_MS},
    }
    http_common.write_results("search", payload, _markdown(args, machine, counted, rows))
    return 0


def _measure(args: argparse.Namespace, database: str, hub: Hub, scenario: Scenario) -> dict:
    base_url = hub.base_url
    paths_file = OUT_DIR / f"search_{scenario.key}_paths.txt"
    data_file = OUT_DIR / f"search_{scenario.key}_floor.txt"
    paths_file.write_text(
        "\n".join(_path(scenario.resource_type, q) for q in scenario.queries) + "\n"
    )
    data_file.write_text("\n".join(json.dumps(p) for p in scenario.floor_params) + "\n")
    # Same answers: the floor returns the ids of the hub's first page, in the same order.
    checked = sizes = 0
    for query, params in list(zip(scenario.queries, scenario.floor_params, strict=True))[:20]:
        expected = floor_ids(database, scenario.key, params)
        got = hub_ids(base_url, scenario.resource_type, query)
        if got != expected:
            raise BenchError(f"{scenario.key}: the hub and the floor disagree on {query}")
        checked += 1
        sizes += len(got)
    print(f"== {scenario.title}: {checked} pages checked equal (mean {sizes / checked:.1f} rows)")
    floor = sql_floor(
        f"plain SQL page, {args.workers} process(es)",
        database,
        f"search_{scenario.key}",
        tasks=args.connections,
        duration_s=args.duration,
        processes=args.workers,
        data_file=data_file,
    )
    print("  " + floor.line())
    script = LUA_DIR / "paths.lua"
    url = f"{base_url}/fhir"
    run_wrk(
        "warm-up",
        url,
        script,
        connections=args.connections,
        duration_s=args.warmup,
        script_args=[str(paths_file)],
    )
    profiled: AbstractContextManager[list[Path]] = (
        profiling(hub, f"search-{scenario.key}", args.duration) if args.profile else nullcontext([])
    )
    with profiled as outputs:
        result = run_wrk(
            f"HTTP search, {args.workers} worker(s)",
            url,
            script,
            connections=args.connections,
            duration_s=args.duration,
            script_args=[str(paths_file)],
        )
    print("  " + result.line())
    if outputs:
        print(profile_summary(outputs, top=30))
    share = ratio(result.rate, floor.rate)
    print(f"  ratio {share:.0%} of the floor")
    return _row(scenario, result, floor, share, sizes / checked)


def _p95(result: LoadResult) -> float:
    """wrk's script reports p50/p90/p99; p95 is read between p90 and p99 (linear)."""
    return result.p90_ms + (result.p99_ms - result.p90_ms) * 5 / 9


def _row(
    scenario: Scenario, result: LoadResult, floor: LoadResult, share: float, mean_rows: float
) -> dict[str, Any]:
    return {
        "key": scenario.key,
        "title": scenario.title,
        "mean_rows": mean_rows,
        "rate": result.rate,
        "p50_ms": result.p50_ms,
        "p95_ms": _p95(result),
        "p99_ms": result.p99_ms,
        "errors": result.errors,
        "floor_rate": floor.rate,
        "floor_p50_ms": floor.p50_ms,
        "floor_p99_ms": floor.p99_ms,
        "ratio": share,
        "http": result.as_dict(),
        "floor": floor.as_dict(),
    }


def _markdown(
    args: argparse.Namespace,
    machine: dict[str, str],
    counted: list[tuple[Any, ...]],
    rows: list[dict[str, Any]],
) -> str:
    lines = [
        "## Search",
        "",
        f"wrk, {args.connections} connections, 2 threads, {args.duration:.0f} s after a "
        f"{args.warmup:.0f} s warm-up, hub with {args.workers} worker(s), first pages "
        f"(_count {PAGE}), {QUERIES_PER_SCENARIO} queries per search cycled. Data: "
        + ", ".join(f"{t} {n:,}" for t, n in counted)
        + ". Floor: the same page (ids and bodies, same order, checked equal to the hub's) "
        "from the index tables in plain parameterized SQL through psycopg 3, "
        f"{args.connections} asyncio tasks over {args.workers} process(es).",
        "",
        "| search | rows/page | HTTP req/s | p50 ms | p95 ms* | p99 ms | errors | floor/s "
        "| floor p99 ms | ratio |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row['title']} | {row['mean_rows']:.0f} | {row['rate']:,.0f} | "
            f"{row['p50_ms']:.2f} | {row['p95_ms']:.2f} | {row['p99_ms']:.2f} | {row['errors']} | "
            f"{row['floor_rate']:,.0f} | {row['floor_p99_ms']:.2f} | {row['ratio']:.0%} |"
        )
    lines += ["", "*p95 interpolated between wrk's p90 and p99.", ""]
    for row in rows:
        if row["key"] == "name":
            lines.append(
                f"`Patient?name=` against Medplum ({MEDPLUM_NAME_RATE:.0f} req/s, p95 "
                f"{MEDPLUM_NAME_P95_MS:.0f} ms): {row['rate'] / MEDPLUM_NAME_RATE:.1f}× the "
                f"rate, p95 {row['p95_ms']:.1f} ms."
            )
            lines.append("")
    lines += ["### Plans (EXPLAIN ANALYZE of each statement the engine sends)", ""]
    for row in rows:
        for plan in row.get("plans", []):
            verdict = "indexes only" if plan["uses_indexes"] else f"seq scans: {plan['seq_scans']}"
            lines += [f"{row['title']} — {verdict}", "", "```sql", plan["sql"], "```", "```"]
            lines += [plan["plan"], "```", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
