"""Recomputing the patient index's blocking keys after a change of rules (issue 4).

    python -m bench.identity_rekey [--base 1000000]

An upgrade that changes the blocking rules (migration 0015: session 14's rules) makes the
hub recompute every filed identity's keys at start-up (``mpi.rekey``), before it serves.
This measures how long that start-up takes: the French territorial set's base
(``bench/identity_online.py``'s, same size and seed) filed by COPY with the former keys,
then ``ensure_blocking_keys``. Floors, same run: the keys alone computed in Python from
the stored traits, and a plain-SQL rewrite of every row's keys with the same values (the
table and its GIN index rewritten, nothing computed).
"""

from __future__ import annotations

import argparse
import sys
import time

import psycopg

from bench.http_common import (
    BenchError,
    fail,
    fresh_database,
    machine_description,
    postgres_server,
    vacuum_analyze,
    write_results,
)
from bench.identity_online import PERSONS_PER_RECORD, file_sources, generated_set
from maillage.identity.blocking import DEFAULT_BLOCKING, blocking_keys
from maillage.mpi.rekey import ensure_blocking_keys

FORMER_RULES = ("birth_date", "name_year", "first_last", "ins")


def keys_alone_s(conninfo: str) -> float:
    with psycopg.connect(conninfo) as conn:
        traits = [row[0] for row in conn.execute("SELECT traits FROM mpi_source")]
    started = time.perf_counter()
    for record in traits:
        blocking_keys(record, DEFAULT_BLOCKING)
    return time.perf_counter() - started


def rewrite_alone_s(conninfo: str) -> float:
    started = time.perf_counter()
    with psycopg.connect(conninfo) as conn:
        conn.execute("UPDATE mpi_source SET blocking = blocking || '{}'::text[]")
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--base", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args(argv)
    # the online benchmark's set (4,000 registrations put aside): its cache serves here
    data = generated_set(max(10, round((args.base + 4000) * PERSONS_PER_RECORD)), args.seed)
    base = data.patients[: args.base]
    for number, patient in enumerate(base):
        patient["id"] = f"b{number}"
    try:
        with postgres_server() as server, fresh_database(server, "identity_rekey") as db:
            print(f"filing {len(base):,} identities with the former keys ...", flush=True)
            file_sources(db, base, FORMER_RULES)
            vacuum_analyze(db)
            started = time.perf_counter()
            rekeyed = ensure_blocking_keys(db)
            rekey_s = time.perf_counter() - started
            again_s = time.perf_counter()
            assert ensure_blocking_keys(db) == 0
            again_s = time.perf_counter() - again_s
            keys_s = keys_alone_s(db)
            rewrite_s = rewrite_alone_s(db)
            machine = machine_description(db)
    except BenchError as error:
        return fail(error)
    markdown = (
        f"Rekey of {rekeyed:,} filed identities at start-up: **{rekey_s:.1f} s** (the next"
        f" start: {again_s * 1000:.0f} ms). Floors, same run: the keys alone in Python"
        f" {keys_s:.1f} s; every row's keys rewritten by plain SQL {rewrite_s:.1f} s.\n"
    )
    print(markdown)
    write_results(
        "identity_rekey",
        {
            "machine": machine,
            "rekeyed": rekeyed,
            "rekey_s": rekey_s,
            "again_s": again_s,
            "keys_alone_s": keys_s,
            "rewrite_alone_s": rewrite_s,
        },
        markdown,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
