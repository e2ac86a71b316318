"""Online matching against a large base of identities (issue 4).

    python -m bench.identity_online [--base 1000000] [--registrations 3000]
                                    [--concurrency 16] [--workers 2]

1. A French territorial set (``bench/identity_territory_data.py``) is generated; a random
   sample of ``--registrations`` records is put aside, the rest is the base.
2. The base is bulk-loaded as Patients with their golden records (without search index
   rows: the matching reads the patient index, not the search index) and filed in the
   patient index by COPY, each record its own territorial identity (the match cost
   depends on the candidates a key brings, not on how the base is clustered); a
   registration that links to a base identity updates its golden record, as in a
   running territory.
3. **Match**: in-process, the online path's matching step for each put-aside record —
   prepare, blocking keys, candidate query, scoring, placement — timed per record; the
   floor is the same candidate query alone through the same driver.
4. **Registrations**: the put-aside records POSTed to a running hub (``--workers`` HTTP
   processes, ``--concurrency`` connections of the lean client ``bench/raw_http.py``, bodies
   encoded beforehand): with the index (match, link, golden record and the source's
   link, all in the request) and, as the floor, the same POSTs to a hub with the index
   off, on the same base. The CPU each registration cost the hub, PostgreSQL and the
   client is reported beside.

Targets: ≥ 200 registrations/s sustained, match p95 < 20 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import io
import json
import os
import pickle
import random
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import orjson
import psutil
import psycopg

from bench.http_common import (
    OUT_DIR,
    BenchError,
    fail,
    fresh_database,
    machine_description,
    postgres_server,
    running_hub,
    vacuum_analyze,
    verdict,
    write_results,
)
from bench.identity_territory_data import TerritorySet, generate
from bench.raw_http import RawConnection
from maillage.identity.blocking import DEFAULT_BLOCKING, blocking_keys
from maillage.identity.golden import build_golden
from maillage.identity.linking import Scored, place
from maillage.identity.model import default_model
from maillage.identity.normalize import prepare
from maillage.identity.patient_traits import patient_traits
from maillage.identity.scoring import Scorer
from maillage.loading.service import BulkLoader
from maillage.mpi import store as mpi_store
from maillage.mpi.rekey import record_rules
from maillage.storage.database import Database

PERSONS_PER_RECORD = 1 / 1.71  # the generator's mean registrations per person
MATCH_TARGET_P95_MS = 20.0
REGISTRATION_TARGET = 200.0


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return 0.0
    return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))]


def index_row(item: tuple[str, dict[str, Any]], rules: Sequence[str] = DEFAULT_BLOCKING) -> str:
    """One COPY line of mpi_source for a base Patient, keyed by ``rules``."""
    patient_id, patient = item
    traits = patient_traits(patient)
    prepared = prepare(traits)
    keys = blocking_keys(prepared, rules)
    ipp = patient["identifier"][0]
    fields: list[str | None] = [
        patient_id,
        f"t-{patient_id}",
        ipp["system"],
        ipp["value"],
        json.dumps(prepared),
        "{" + ",".join(json.dumps(key) for key in keys) + "}",
        traits.get("ins_status"),
        "auto",
    ]
    return "\t".join(_copy_text(field) for field in fields) + "\n"


def _copy_text(field: str | None) -> str:
    """A field in COPY's text format."""
    if field is None:
        return "\\N"
    return field.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")


def _golden(patient: dict[str, Any]) -> dict[str, Any]:
    """The golden record of a base identity (its own territorial identity ``t-<id>``), as
    the index would have written it: a registration that links to it updates it."""
    stored = {**patient, "meta": {"lastUpdated": "2026-01-01T00:00:00Z"}}
    return build_golden(f"t-{patient['id']}", [stored]).body


def load_base(conninfo: str, base: list[dict[str, Any]]) -> dict[str, float]:
    started = time.perf_counter()
    with ProcessPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        goldens = list(pool.map(_golden, base, chunksize=2000))
    report = BulkLoader(conninfo, index=False).load_resources([*base, *goldens])
    loaded_s = time.perf_counter() - started
    if report.rejected:
        raise BenchError(f"{len(report.rejected)} base Patients rejected: {report.rejected[:3]}")
    timings = file_sources(conninfo, base, DEFAULT_BLOCKING)
    vacuum_analyze(conninfo)
    return {"bulk_load_s": loaded_s, **timings}


def file_sources(
    conninfo: str, base: list[dict[str, Any]], rules: Sequence[str]
) -> dict[str, float]:
    """File every base identity in the patient index by COPY, as its own territorial
    identity, with keys made by ``rules`` (recorded as the index's rules)."""
    started = time.perf_counter()
    with ProcessPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        lines = list(
            pool.map(
                functools.partial(index_row, rules=tuple(rules)),
                ((p["id"], p) for p in base),
                chunksize=2000,
            )
        )
    prepared_s = time.perf_counter() - started
    started = time.perf_counter()
    with psycopg.connect(conninfo) as conn:
        with conn.cursor().copy(
            "COPY mpi_source (patient_id, territorial_id, ipp_system, ipp, traits, blocking,"
            " reliability, link_kind) FROM STDIN"
        ) as copy:
            buffer = io.StringIO()
            for number, line in enumerate(lines, 1):
                buffer.write(line)
                if number % 20000 == 0:
                    copy.write(buffer.getvalue())
                    buffer = io.StringIO()
            copy.write(buffer.getvalue())
        conn.execute(
            "INSERT INTO mpi_territorial (territorial_id) SELECT territorial_id FROM mpi_source"
        )
        record_rules(conn, rules)  # the keys above: no rekey at the hub's start
    return {"prepare_s": prepared_s, "copy_s": time.perf_counter() - started}


async def time_matches(conninfo: str, records: list[dict[str, Any]]) -> dict[str, Any]:
    """The online matching step per record, and the candidate query alone (the floor)."""
    scorer = Scorer(default_model())
    database = Database(conninfo, min_size=1, max_size=1)
    await database.open()
    match_ms: list[float] = []
    query_ms: list[float] = []
    candidates: list[int] = []
    linked = 0
    try:
        async with database.connection() as conn:
            for record in records:  # warm-up: a few, not counted
                await mpi_store.candidates(
                    conn, blocking_keys(prepare(patient_traits(record))), "warm-up", 2000
                )
                break
            for number, record in enumerate(records):
                started = time.perf_counter()
                prepared = prepare(patient_traits(record))
                keys = blocking_keys(prepared)
                found = await mpi_store.candidates(conn, keys, f"r{number}", 2000)
                scored = [Scored(p, t, scorer.score(prepared, traits)) for p, t, traits in found]
                placement = place(scored)
                match_ms.append((time.perf_counter() - started) * 1000)
                candidates.append(len(found))
                linked += placement.territorial_id is not None
                started = time.perf_counter()
                await mpi_store.candidates(conn, keys, f"r{number}", 2000)
                query_ms.append((time.perf_counter() - started) * 1000)
    finally:
        await database.close()
    return {
        "records": len(records),
        "match_p50_ms": _percentile(match_ms, 0.5),
        "match_p95_ms": _percentile(match_ms, 0.95),
        "match_p99_ms": _percentile(match_ms, 0.99),
        "query_p50_ms": _percentile(query_ms, 0.5),
        "query_p95_ms": _percentile(query_ms, 0.95),
        "candidates_mean": sum(candidates) / max(1, len(candidates)),
        "candidates_max": max(candidates, default=0),
        "linked_share": linked / max(1, len(records)),
    }


async def post_all(
    base_url: str, records: list[dict[str, Any]], concurrency: int
) -> dict[str, Any]:
    """POST every record, ``concurrency`` connections at a time; the bodies are encoded
    before the clock starts and sent by the lean client (``bench/raw_http.py``)."""
    probe = RawConnection(f"{base_url}/fhir")
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for record in records:
        body = orjson.dumps({key: value for key, value in record.items() if key != "id"})
        queue.put_nowait(probe.post_bytes("/Patient", body, "application/fhir+json"))
    latencies: list[float] = []
    errors: list[str] = []

    async def client() -> None:
        async with RawConnection(f"{base_url}/fhir") as connection:
            while not queue.empty():
                request = queue.get_nowait()
                started = time.perf_counter()
                status, answer = await connection.send(request)
                latencies.append(time.perf_counter() - started)
                if status != 201:
                    errors.append(f"{status} {answer[:200]!r}")

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    return {
        "registrations": len(latencies),
        "elapsed_s": elapsed,
        "rate": len(latencies) / elapsed if elapsed else 0.0,
        "p50_ms": _percentile(latencies, 0.5) * 1000,
        "p95_ms": _percentile(latencies, 0.95) * 1000,
        "p99_ms": _percentile(latencies, 0.99) * 1000,
        "errors": len(errors),
        "first_errors": errors[:3],
    }


def _cpu_s(processes: list[psutil.Process]) -> float:
    total = 0.0
    for process in processes:
        try:
            times = process.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


def _hub_processes(pid: int) -> list[psutil.Process]:
    root = psutil.Process(pid)
    return [root, *root.children(recursive=True)]


def _postgres_cpu_s() -> dict[int, float]:
    """CPU seconds of each of the server's processes (the hub's pooled backends live as
    long as the hub; one opened during the run counts from zero)."""
    found = [p for p in psutil.process_iter(["name"]) if (p.info["name"] or "") == "postgres"]
    return {process.pid: _cpu_s([process]) for process in found}


def registrations(
    conninfo: str, records: list[dict[str, Any]], *, workers: int, concurrency: int, index: bool
) -> dict[str, Any]:
    """POST the records; also the CPU each registration cost the hub, PostgreSQL and
    this client (CPU time over the run / registrations): where the time goes."""
    os.environ["MAILLAGE_IDENTITY_INDEX_ENABLED"] = "true" if index else "false"
    try:
        with running_hub(conninfo, workers, log_dir=OUT_DIR / "logs") as hub:
            hub_processes = _hub_processes(hub.pid)
            hub_before, pg_before, client_before = (
                _cpu_s(hub_processes),
                _postgres_cpu_s(),
                time.process_time(),
            )
            result = asyncio.run(post_all(hub.base_url, records, concurrency))
            hub_s = _cpu_s(hub_processes) - hub_before
            pg_s = sum(cpu - pg_before.get(pid, 0.0) for pid, cpu in _postgres_cpu_s().items())
            client_s = time.process_time() - client_before
    finally:
        os.environ.pop("MAILLAGE_IDENTITY_INDEX_ENABLED", None)
    count = max(1, result["registrations"])
    for name, seconds in (("hub", hub_s), ("postgres", pg_s), ("client", client_s)):
        result[f"{name}_cpu_ms"] = seconds * 1000 / count
    return result


def generated_set(persons: int, seed: int) -> TerritorySet:
    """The generated set, kept in bench/out between runs (generating a million
    registrations takes minutes; the set depends only on its size and seed)."""
    cached = OUT_DIR / f"identity-set-{persons}-{seed}.pickle"
    if cached.exists():
        with cached.open("rb") as file:
            found: TerritorySet = pickle.load(file)
        return found
    data = generate(persons, seed=seed)
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    with cached.open("wb") as file:
        pickle.dump(data, file, protocol=pickle.HIGHEST_PROTOCOL)
    return data


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--base", type=int, default=1_000_000)
    parser.add_argument("--registrations", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args(argv)

    total = args.base + args.registrations
    print(f"generating ~{total:,} registrations ...", flush=True)
    started = time.perf_counter()
    data = generated_set(max(10, round(total * PERSONS_PER_RECORD)), args.seed)
    generated_s = time.perf_counter() - started
    patients = data.patients
    for number, patient in enumerate(patients):
        patient["id"] = f"b{number}"
    rng = random.Random(args.seed)
    aside = set(rng.sample(range(len(patients)), min(args.registrations, len(patients) // 2)))
    base = [p for n, p in enumerate(patients) if n not in aside]
    new = [patients[n] for n in sorted(aside)]
    rng.shuffle(new)
    half = len(new) // 2
    try:
        with postgres_server() as server, fresh_database(server, "identity_online") as db:
            print(f"loading a base of {len(base):,} identities ...", flush=True)
            setup = load_base(db, base)
            print(f"  {setup}", flush=True)
            print(f"timing the match of {len(new):,} records ...", flush=True)
            match = asyncio.run(time_matches(db, new))
            print(f"  {match}", flush=True)
            print("registrations, index off (floor) ...", flush=True)
            floor = registrations(
                db, new[half:], workers=args.workers, concurrency=args.concurrency, index=False
            )
            print(f"  {floor}", flush=True)
            print("registrations, index on ...", flush=True)
            online = registrations(
                db, new[:half], workers=args.workers, concurrency=args.concurrency, index=True
            )
            print(f"  {online}", flush=True)
            machine = machine_description(db)
    except BenchError as error:
        return fail(error)

    match_ok = match["match_p95_ms"] < MATCH_TARGET_P95_MS
    rate_ok = online["rate"] >= REGISTRATION_TARGET and online["errors"] == 0
    lines = [
        f"Base: {len(base):,} identities; {len(new):,} records put aside "
        f"(generated in {generated_s:.0f} s; base bulk-loaded in {setup['bulk_load_s']:.0f} s,"
        f" with its golden records; prepared in {setup['prepare_s']:.0f} s, filed by COPY in"
        f" {setup['copy_s']:.0f} s).",
        "",
        "| figure | value | floor (same run) | target | verdict |",
        "|---|---|---|---|---|",
        f"| match p95 (prepare + candidates + scoring + placement) | {match['match_p95_ms']:.2f} ms"
        f" (p50 {match['match_p50_ms']:.2f}, p99 {match['match_p99_ms']:.2f}) | candidate query "
        f"alone p95 {match['query_p95_ms']:.2f} ms (p50 {match['query_p50_ms']:.2f}) | < 20 ms |"
        f" {verdict(match_ok)} |",
        f"| registrations/s (POST Patient, index on) | {online['rate']:.0f}/s (p95 "
        f"{online['p95_ms']:.1f} ms, errors {online['errors']}) | index off: {floor['rate']:.0f}/s "
        f"(p95 {floor['p95_ms']:.1f} ms) | ≥ 200/s | {verdict(rate_ok)} |",
        "",
        "CPU per registration (CPU time over the run / registrations; 2 cores shared by"
        " the hub, PostgreSQL and the client):",
        "",
        "| hub | ms hub | ms PostgreSQL | ms client |",
        "|---|---:|---:|---:|",
        *(
            f"| index {label} | {run['hub_cpu_ms']:.2f} | {run['postgres_cpu_ms']:.2f} |"
            f" {run['client_cpu_ms']:.2f} |"
            for label, run in (("off", floor), ("on", online))
        ),
        "",
        f"Candidates per record: mean {match['candidates_mean']:.1f}, max "
        f"{match['candidates_max']}; share of put-aside records placed in an existing "
        f"territorial identity: {match['linked_share']:.1%}.",
    ]
    markdown = "\n".join(lines) + "\n"
    print(markdown)
    write_results(
        "identity_online",
        {
            "machine": machine,
            "setup": setup,
            "match": match,
            "floor": floor,
            "online": online,
            "args": vars(args),
        },
        markdown,
    )
    return 0 if match_ok and rate_ok else 1


if __name__ == "__main__":
    sys.exit(main())
