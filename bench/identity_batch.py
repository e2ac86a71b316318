"""Batch dedupe (``maillage identity dedupe``) of bulk-loaded source identities.

    .venv/bin/python -m bench.identity_batch [--identities 100000] [--batch-size 10000]

Generates N source identities (``bench/identity_territory_data.py``), bulk-loads them
with indexing, then times ``BulkDedupe.run`` in a process of its own (matching,
placement, review queue, events, golden records, ``refer`` links) and reports its peak
RSS. Floors measured in the same run: the plain COPY of N rows into a table shaped like
``mpi_source``, ``prepare`` + blocking keys of every identity in Python (no SQL),
scoring the candidate pairs alone, and the bulk load of the N Patients. Target:
1,000,000 in ≤ 60 s, < 4 GB.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from typing import Any

import psycopg

from bench.http_common import BenchError, fail, fresh_database, postgres_server, verdict
from bench.identity_territory_data import generate
from maillage.identity.blocking import blocking_keys
from maillage.identity.model import default_model
from maillage.identity.normalize import prepare
from maillage.identity.patient_traits import patient_traits
from maillage.identity.scoring import Scorer
from maillage.loading.dedupe import BulkDedupe
from maillage.loading.service import BulkLoader

PERSONS_PER_RECORD = 1 / 1.71
TARGET_S_PER_MILLION = 60.0
TARGET_RSS_GB = 4.0


def peak_rss_gb() -> float:
    """This process's peak resident set (VmHWM): unlike ``ru_maxrss``, not inherited
    from the parent across fork + exec (the bench's generated set would count)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024 / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 / 1024


def dedupe_child(conninfo: str, chunk_size: int, workers: int) -> None:
    """Run in a process of its own (``--child``), so that its peak RSS is the dedupe's
    alone: prints the figures as JSON."""
    service = BulkDedupe(conninfo, default_model(), chunk_size=chunk_size, workers=workers)
    started = time.perf_counter()
    filed = service.run()
    seconds = time.perf_counter() - started
    workers_gb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024 / 1024
    print(json.dumps({"filed": filed, "seconds": seconds, "rss_gb": peak_rss_gb(),
                      "workers_rss_gb": workers_gb, "timings": service.timings}))  # fmt: skip


def dedupe(conninfo: str, chunk_size: int, workers: int) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "bench.identity_batch", "--child", conninfo,
         "--batch-size", str(chunk_size), "--workers", str(workers)],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def score_floor(prepared: list[dict[str, Any]]) -> tuple[int, float]:
    """The candidate pairs of the same identities in id order (each against those before
    it, by the same blocking keys) and the time to score them alone."""
    scorer = Scorer(default_model())
    by_key: dict[str, list[int]] = {}
    pairs: list[tuple[int, int]] = []
    for number, record in enumerate(prepared):
        seen: set[int] = set()
        for key in blocking_keys(record):
            seen.update(by_key.setdefault(key, []))
            by_key[key].append(number)
        pairs.extend((number, other) for other in seen)
    started = time.perf_counter()
    for left, right in pairs:
        scorer.score(prepared[left], prepared[right])
    return len(pairs), time.perf_counter() - started


def copy_floor(conninfo: str, records: list[tuple[str, str]]) -> float:
    started = time.perf_counter()
    with psycopg.connect(conninfo) as conn:
        conn.execute("CREATE TEMP TABLE floor_source (LIKE mpi_source INCLUDING DEFAULTS)")
        with conn.cursor().copy(
            "COPY floor_source (patient_id, territorial_id, traits, blocking, link_kind) FROM STDIN"
        ) as copy:
            for patient_id, traits in records:
                copy.write_row((patient_id, patient_id, traits, [], "auto"))
    return time.perf_counter() - started


# What the dedupe wrote: (table, the rows it wrote there). Every Patient in the bench is a
# source the dedupe updated or a golden record it created; of the index rows, the golden
# records' and every Patient's ``link`` rows (a source's other rows stay as loaded).
_INDEX_WRITTEN = (
    "SELECT x.* FROM {table} x JOIN resource r ON r.rid = x.rid"
    " WHERE r.resource_type = 'Patient' AND (x.param = 'link'"
    " OR EXISTS (SELECT 1 FROM mpi_territorial t WHERE t.territorial_id = r.id))"
)
_WRITTEN: list[tuple[str, str]] = [
    ("resource", "SELECT * FROM resource WHERE resource_type = 'Patient'"),
    ("resource_version", "SELECT * FROM resource_version WHERE resource_type = 'Patient'"),
    *(
        (table, _INDEX_WRITTEN.format(table=table))
        for table in ("sp_token", "sp_string", "sp_date", "sp_uri", "sp_reference")
    ),
    ("mpi_source", "SELECT * FROM mpi_source"),
    ("mpi_territorial", "SELECT * FROM mpi_territorial"),
    ("mpi_event", "SELECT * FROM mpi_event"),
    ("mpi_candidate", "SELECT * FROM mpi_candidate"),
]


def write_floor(conninfo: str) -> tuple[float, int]:
    """The same rows the dedupe wrote, written again by plain COPY (binary) through the
    same driver into empty tables of the same shape and indexes, in one transaction:
    (seconds, rows)."""
    dumps: list[tuple[str, bytes, int]] = []
    with psycopg.connect(conninfo, autocommit=True) as conn:
        for table, query in _WRITTEN:
            conn.execute(f"DROP TABLE IF EXISTS floor_{table}")
            conn.execute(
                f"CREATE TABLE floor_{table} (LIKE {table} INCLUDING DEFAULTS"
                " INCLUDING INDEXES INCLUDING CONSTRAINTS)"
            )
            data = bytearray()
            with conn.cursor().copy(f"COPY ({query}) TO STDOUT (FORMAT BINARY)") as copy:
                for block in copy:
                    data += block
            count = conn.execute(f"SELECT count(*) FROM ({query}) AS q").fetchone()
            dumps.append((table, bytes(data), int(count[0]) if count else 0))
        conn.execute("CHECKPOINT")
    started = time.perf_counter()
    with psycopg.connect(conninfo) as conn:
        for table, dumped, _ in dumps:
            with conn.cursor().copy(f"COPY floor_{table} FROM STDIN (FORMAT BINARY)") as copy:
                copy.write(dumped)
        conn.commit()
    return time.perf_counter() - started, sum(count for _, _, count in dumps)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--identities", type=int, default=100_000)
    parser.add_argument("--batch-size", type=int, default=10_000, help="identities per chunk")
    parser.add_argument(
        "--workers",
        type=int,
        default=min(os.cpu_count() or 1, 4),
        help="processes preparing rows (default as `maillage identity dedupe`)",
    )
    parser.add_argument("--child", metavar="CONNINFO", help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args(argv)
    if args.child:
        dedupe_child(args.child, args.batch_size, args.workers)
        return 0

    data = generate(max(10, round(args.identities * PERSONS_PER_RECORD) + 10), seed=args.seed)
    patients = data.patients[: args.identities]
    for number, patient in enumerate(patients):
        patient["id"] = f"b{number}"
    started = time.perf_counter()
    prepared = [prepare(patient_traits(p)) for p in patients]
    for record in prepared:
        blocking_keys(record)
    prepare_s = time.perf_counter() - started
    pair_count, score_s = score_floor(prepared)
    rows = [(p["id"], json.dumps(r, default=str)) for p, r in zip(patients, prepared, strict=True)]
    del data
    try:
        with postgres_server() as server, fresh_database(server, "identity_batch") as db:
            started = time.perf_counter()
            BulkLoader(db).load_resources(patients)
            load_s = time.perf_counter() - started
            del patients
            floor_copy_s = copy_floor(db, rows)
            result = dedupe(db, args.batch_size, args.workers)
            floor_write_s, floor_rows = write_floor(db)
    except (BenchError, subprocess.CalledProcessError) as error:
        return fail(BenchError(str(error)))
    filed, dedupe_s = int(result["filed"]), float(result["seconds"])
    scaled = dedupe_s * 1_000_000 / max(1, filed)
    rss = float(result["rss_gb"])
    print(f"identities: {len(rows):,} (bulk-loaded with their index in {load_s:.1f} s); "
          f"filed {filed:,}")  # fmt: skip
    print(f"batch dedupe: {dedupe_s:.1f} s ({filed / dedupe_s:,.0f}/s; {scaled:,.0f} s per 1M)")
    print("  " + ", ".join(f"{k} {v:.1f} s" for k, v in result["timings"].items()))
    print("floors (same run):")
    print(f"  COPY of the same rows into mpi_source's shape {floor_copy_s:.2f} s;")
    print(f"  prepare + blocking keys in Python {prepare_s:.1f} s;")
    print(f"  scoring the {pair_count:,} candidate pairs alone {score_s:.1f} s;")
    print(f"  bulk load of the {len(rows):,} Patients with their index {load_s:.1f} s;")
    print(f"  the {floor_rows:,} rows the dedupe wrote, by plain COPY: {floor_write_s:.1f} s"
          f" ({floor_write_s * 1_000_000 / max(1, filed):,.0f} s per 1M)")  # fmt: skip
    print(f"peak RSS of the dedupe's process: {rss:.2f} GB (largest worker process:"
          f" {float(result['workers_rss_gb']):.2f} GB)")  # fmt: skip
    print(f"target 1M ≤ {TARGET_S_PER_MILLION:.0f} s: {verdict(scaled <= TARGET_S_PER_MILLION)};")
    print(f"memory < {TARGET_RSS_GB:.0f} GB: {verdict(rss < TARGET_RSS_GB)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
