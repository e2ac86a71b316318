"""What security costs on the read benchmark (issue 6): read by id with it off
(``allow-all``, no audit) and on (``care``: the role matrix and a care relationship
checked inside the read's SQL, every read recorded in the hash-chained audit, and
sign-in on: each request carries a bearer token from the hub's built-in issuer, checked
on every request), same run, same data, same client. ``--no-sign-in``: the caller is
named in headers instead (sign-in off, as the hub allows for trials).

    python -m bench.security_cost [--patients 2000] [--duration 10] [--concurrency 32]
                                  [--no-audit] [--no-sign-in]

The client is Python (httpx, asyncio): wrk is not on this machine. It costs CPU on the
same two cores, so both rates are lower than wrk's; the ratio between them is the figure.
Each configuration runs twice, alternated (off, on, off, on), and the better of each pair
is kept, to spread the machine's noise. The floor is the same reads in plain SQL.

Target: with the rules on, at most 20 % slower than off.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import time
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
    sql_floor,
    verdict,
    write_results,
)
from maillage.security.accounts import AccountService
from maillage.security.accounts_store import AccountStore
from maillage.storage import Database

READER = "Practitioner/bench-reader"
TARGET_RATIO = 0.8


def grant_care(conninfo: str, ids: list[str]) -> None:
    """The reader takes part in every seeded patient's care (one grant each)."""
    with (
        psycopg.connect(conninfo) as conn,
        conn.cursor().copy(
            "COPY care_access (patient_id, principal, source_type, source_id) FROM STDIN"
        ) as copy,
    ):
        for number, patient_id in enumerate(ids):
            copy.write_row((patient_id, READER, "Encounter", f"bench-{number}"))


async def _load(
    base_url: str, ids: list[str], headers: dict[str, str], duration_s: float, concurrency: int
) -> dict[str, Any]:
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + duration_s

    async def client(seed: int) -> None:
        nonlocal errors
        rng = random.Random(seed)
        limits = httpx.Limits(max_connections=1)
        async with httpx.AsyncClient(
            base_url=base_url, headers=headers, limits=limits, timeout=30
        ) as http:
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                response = await http.get(f"/fhir/Patient/{rng.choice(ids)}")
                latencies.append(time.perf_counter() - started)
                errors += response.status_code != 200

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


READER_LOGIN = "bench-reader"
READER_PASSWORD = "bench-reader-password-1234"  # a throwaway account of a bench database


def add_reader_account(conninfo: str) -> None:
    """The reader as a local account of the built-in issuer (physician at CHA)."""

    async def add() -> None:
        database = Database(conninfo, min_size=1, max_size=2)
        await database.open()
        try:
            await AccountService(AccountStore(database)).add_user(
                READER_LOGIN, READER_PASSWORD, role="physician", sites=["CHA"],
                practitioner=READER,
            )  # fmt: skip
        finally:
            await database.close()

    asyncio.run(add())


def reader_token(base_url: str) -> str:
    answer = httpx.post(
        f"{base_url}/auth/token",
        data={"grant_type": "password", "username": READER_LOGIN, "password": READER_PASSWORD},
        timeout=30,
    )
    if answer.status_code != 200:
        raise BenchError(f"no token for the reader: {answer.status_code} {answer.text[:300]}")
    return str(answer.json()["access_token"])


def run(conninfo: str, policy: str, ids: list[str], args: argparse.Namespace) -> dict[str, Any]:
    os.environ["MAILLAGE_ACCESS_POLICY"] = policy
    # security off: no rules, no audit; on: the rules and every read audited
    os.environ["MAILLAGE_AUDIT_ENABLED"] = "true" if policy == "care" and args.audit else "false"
    signed_in = policy == "care" and args.sign_in
    os.environ["MAILLAGE_AUTH_ENABLED"] = "true" if signed_in else "false"
    headers = (
        {"X-Maillage-User": READER, "X-Maillage-Site": "CHA", "X-Maillage-Roles": "physician"}
        if policy == "care" and not signed_in
        else {}
    )
    try:
        with running_hub(conninfo, args.workers, log_dir=OUT_DIR / "logs") as hub:
            if signed_in:
                headers = {"Authorization": f"Bearer {reader_token(hub.base_url)}"}
            asyncio.run(_load(hub.base_url, ids, headers, 2.0, args.concurrency))  # warm-up
            result = asyncio.run(_load(hub.base_url, ids, headers, args.duration, args.concurrency))
    finally:
        os.environ.pop("MAILLAGE_ACCESS_POLICY", None)
        os.environ.pop("MAILLAGE_AUDIT_ENABLED", None)
        os.environ.pop("MAILLAGE_AUTH_ENABLED", None)
    if result["errors"]:
        raise BenchError(f"{policy}: {result['errors']} reads did not answer 200")
    print(
        f"  {policy:<9} {result['rate']:7.0f}/s  p50 {result['p50_ms']:.1f} ms  "
        f"p99 {result['p99_ms']:.1f} ms",
        flush=True,
    )
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--patients", type=int, default=2000)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument(
        "--no-audit", dest="audit", action="store_false", help="the rules alone, no audit"
    )
    parser.add_argument(
        "--no-sign-in", dest="sign_in", action="store_false",
        help="the caller named in headers, no token to check",
    )  # fmt: skip
    args = parser.parse_args(argv)
    try:
        with postgres_server() as server, fresh_database(server, "security_cost") as db:
            ids_file = OUT_DIR / "security_cost_ids.txt"
            ids = seed_patients(db, args.patients, ids_file)
            grant_care(db, ids)
            if args.sign_in:
                add_reader_account(db)
            runs: dict[str, list[dict[str, Any]]] = {"allow-all": [], "care": []}
            for _ in range(2):
                for policy in ("allow-all", "care"):
                    runs[policy].append(run(db, policy, ids, args))
            floor = sql_floor(
                "plain SQL read by id",
                db,
                "select_by_id",
                tasks=args.concurrency,
                duration_s=args.duration,
                data_file=ids_file,
            )
            machine = machine_description(db)
    except BenchError as error:
        return fail(error)
    off = max(runs["allow-all"], key=lambda r: r["rate"])
    on = max(runs["care"], key=lambda r: r["rate"])
    ratio = on["rate"] / off["rate"] if off["rate"] else 0.0
    ok = ratio >= TARGET_RATIO
    on_label = ", ".join(
        ["care rules in the SQL"]
        + (["every read audited"] if args.audit else [])
        + (["bearer token checked on each request"] if args.sign_in else [])
    )
    markdown = (
        "\n".join(
            [
                f"Read by id, {args.patients:,} Patients, {args.concurrency} Python clients, "
                f"{args.workers} hub worker(s), {args.duration:.0f} s per run, best of two "
                "alternated runs each.",
                "",
                "| access rules | reads/s | p50 | p99 |",
                "|---|---|---|---|",
                f"| off (allow-all) | {off['rate']:,.0f} | {off['p50_ms']:.1f} ms | "
                f"{off['p99_ms']:.1f} ms |",
                f"| on ({on_label}) | {on['rate']:,.0f} | "
                f"{on['p50_ms']:.1f} ms | {on['p99_ms']:.1f} ms |",
                f"| floor: plain SQL, same ids | {floor.rate:,.0f} | {floor.p50_ms:.1f} ms | "
                f"{floor.p99_ms:.1f} ms |",
                "",
                f"On / off: {ratio:.2f} (target ≥ {TARGET_RATIO}: {verdict(ok)}).",
            ]
        )
        + "\n"
    )
    print(markdown)
    write_results(
        "security_cost",
        {
            "machine": machine,
            "off": runs["allow-all"],
            "on": runs["care"],
            "floor": floor.as_dict(),
            "ratio": ratio,
            "args": vars(args),
        },
        markdown,
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
