"""Batch dedupe (``maillage identity dedupe``) of bulk-loaded source identities.

    .venv/bin/python -m bench.identity_batch [--identities 100000] [--batch-size 500]

Generates N source identities (``bench/identity_territory_data.py``), bulk-loads them
with indexing, then times ``BatchDedupe.run`` (matching, placement, review queue, events,
golden records, ``refer`` links) and reports peak RSS. Floors measured in the same run:
the plain COPY of N rows into a table shaped like ``mpi_source``, and ``prepare`` +
blocking keys of every identity in Python (no SQL). Target: 1,000,000 in ≤ 60 s, < 4 GB.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import sys
import time

import psycopg

from bench.http_common import BenchError, fail, fresh_database, postgres_server, verdict
from bench.identity_territory_data import generate
from maillage.fhir.repository import FhirStore
from maillage.fhir.search.engine import SearchEngine
from maillage.identity.blocking import blocking_keys
from maillage.identity.model import default_model
from maillage.identity.normalize import prepare
from maillage.identity.patient_traits import patient_traits
from maillage.loading.service import BulkLoader
from maillage.mpi.batch import BatchDedupe
from maillage.mpi.index import PatientIndex
from maillage.security import AllowAll
from maillage.storage.database import Database

PERSONS_PER_RECORD = 1 / 1.71
TARGET_S_PER_MILLION = 60.0
TARGET_RSS_GB = 4.0


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 / 1024


async def dedupe(conninfo: str, batch_size: int) -> int:
    database = Database(conninfo, min_size=1, max_size=2)
    await database.open()
    try:
        store = FhirStore(database, AllowAll(), SearchEngine())
        service = BatchDedupe(store, PatientIndex(default_model()), batch_size=batch_size)
        return await service.run()
    finally:
        await database.close()


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--identities", type=int, default=100_000)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args(argv)

    data = generate(max(10, round(args.identities * PERSONS_PER_RECORD) + 10), seed=args.seed)
    patients = data.patients[: args.identities]
    for number, patient in enumerate(patients):
        patient["id"] = f"b{number}"
    started = time.perf_counter()
    prepared = [prepare(patient_traits(p)) for p in patients]
    for record in prepared:
        blocking_keys(record)
    prepare_s = time.perf_counter() - started
    rows = [(p["id"], json.dumps(r, default=str)) for p, r in zip(patients, prepared, strict=True)]
    try:
        with postgres_server() as server, fresh_database(server, "identity_batch") as db:
            started = time.perf_counter()
            BulkLoader(db).load_resources(patients)
            load_s = time.perf_counter() - started
            floor_copy_s = copy_floor(db, rows)
            started = time.perf_counter()
            filed = asyncio.run(dedupe(db, args.batch_size))
            dedupe_s = time.perf_counter() - started
    except BenchError as error:
        return fail(error)
    scaled = dedupe_s * 1_000_000 / max(1, filed)
    rss = peak_rss_gb()
    print(f"identities: {len(patients):,} (bulk-loaded in {load_s:.1f} s); filed {filed:,}")
    print(f"batch dedupe: {dedupe_s:.1f} s ({filed / dedupe_s:,.0f}/s; {scaled:,.0f} s per 1M)")
    print(f"floor: COPY of the same rows into mpi_source's shape {floor_copy_s:.2f} s;")
    print(f"       prepare + blocking keys in Python {prepare_s:.1f} s")
    print(f"peak RSS: {rss:.2f} GB (includes the generated set)")
    print(f"target 1M ≤ {TARGET_S_PER_MILLION:.0f} s: {verdict(scaled <= TARGET_S_PER_MILLION)};")
    print(f"memory < {TARGET_RSS_GB:.0f} GB: {verdict(rss < TARGET_RSS_GB)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
