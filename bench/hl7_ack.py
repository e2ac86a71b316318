"""HL7 v2 ACK rate (store-then-ACK) beside its floor.

`maillage gateway` (MLLP listener + processor) runs as its own process on 127.0.0.1; 4
concurrent MLLP connections send ADT^A28 messages (synthetic identities), each sending
the next one as soon as the ACK of the previous one arrives. Each AA means the message
was committed to PostgreSQL first. The floor: the same INSERTs of the same raw messages
in plain SQL through psycopg 3, 4 connections, in the same run.

    .venv/bin/python -m bench.hl7_ack [--duration 15] [--connections 4] [--no-processing]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import time
from typing import Any

import psycopg

from bench.http_common import (
    OUT_DIR,
    VENV_BIN,
    BenchError,
    LoadResult,
    fail,
    free_port,
    fresh_database,
    machine_description,
    postgres_server,
    ratio,
    summarize,
    verdict,
    wait_until_quiet,
    write_results,
)

TARGET_RATE = 2_000.0
TARGET_P99_MS = 20.0
SB, EB, CR = b"\x0b", b"\x1c", b"\r"
_FAMILIES = ["Martin", "Bernard", "Dubois", "Moreau", "Lefèvre", "Girard", "Bonnet", "Fontaine"]
_GIVEN = ["Léa", "Chloé", "Hugo", "Raphaël", "Inès", "Jules", "Émile", "Zoé"]


def adt_a28(number: int) -> bytes:
    """A synthetic ADT^A28 of the demo site CHM (8859/15), unique MSH-10."""
    family, given = _FAMILIES[number % 8], _GIVEN[number // 8 % 8]
    segments = [
        "MSH|^~\\&|GAM|CH_MAILLEBOURG|MAILLAGE|GHT_VAL_DE_MAILLE|20260115093000||"
        f"ADT^A28^ADT_A05|B{number:012d}|P|2.5^FRA^2.11|||||FRA|8859/15|FR||"
        "2.11^IHE_FRANCE-2.11-PAM",
        "EVN||20260115093000",
        f"PID|1||B{number % 50_000:07d}^^^CH_MAILLEBOURG&2.999.250.1.1&ISO^PI||"
        f"{family}^{given}^^^^^D~{family}^{given}^^^^^L||{1930 + number % 90}0714|"
        f"{'F' if number % 2 else 'M'}|||{number % 200} rue des Essais^^Maillebourg^^99100^FRA^H"
        "|||||||||||||||||||||PROV",
        "PV1|1|N",
    ]
    return ("\r".join(segments) + "\r").encode("iso-8859-15")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--duration", type=float, default=15.0, help="seconds per measured run")
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument(
        "--no-processing",
        action="store_true",
        help="run the gateway without its processor (the ACK path alone)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return run(args)
    except BenchError as error:
        return fail(error)


# -- the floor ----------------------------------------------------------------------------
_FLOOR_INSERT = (
    "INSERT INTO hl7_message (site, sender, control_id, idempotency_key, message_type,"
    " trigger_event, patient_key, charset, raw, status, error)"
    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
    " ON CONFLICT (idempotency_key) DO NOTHING RETURNING id"
)


async def _floor(conninfo: str, connections: int, duration_s: float) -> LoadResult:
    latencies: list[float] = []
    counter = iter(range(10**9))

    async def one(conn: psycopg.AsyncConnection, deadline: float, record: bool) -> None:
        while time.perf_counter() < deadline:
            number = next(counter)
            raw = adt_a28(number)
            started = time.perf_counter()
            cursor = await conn.execute(
                _FLOOR_INSERT,
                (
                    "CHM",
                    "GAM^CH_MAILLEBOURG",
                    f"B{number:012d}",
                    f"18:GAM^CH_MAILLEBOURG:F{number:012d}",
                    "ADT",
                    "A28",
                    f"CHM:B{number % 50_000:07d}",
                    "iso-8859-15",
                    raw,
                    "received",
                    None,
                ),
            )
            await cursor.fetchone()
            if record:
                latencies.append(time.perf_counter() - started)

    conns = [
        await psycopg.AsyncConnection.connect(conninfo, autocommit=True) for _ in range(connections)
    ]
    try:
        warm = time.perf_counter() + 1.0
        await asyncio.gather(*(one(conn, warm, False) for conn in conns))
        started = time.perf_counter()
        deadline = started + duration_s
        await asyncio.gather(*(one(conn, deadline, True) for conn in conns))
        elapsed = time.perf_counter() - started
    finally:
        for conn in conns:
            await conn.close()
    return summarize(f"plain SQL INSERT, {connections} connections", latencies, elapsed)


# -- the gateway --------------------------------------------------------------------------
async def _mllp_load(
    port: int, connections: int, duration_s: float, first_number: int, label: str
) -> tuple[LoadResult, dict[str, int]]:
    latencies: list[float] = []
    codes: dict[str, int] = {}
    counter = iter(range(first_number, first_number + 10**9))

    async def client(deadline: float) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while time.perf_counter() < deadline:
                payload = SB + adt_a28(next(counter)) + EB + CR
                started = time.perf_counter()
                writer.write(payload)
                ack = await asyncio.wait_for(reader.readuntil(EB + CR), 10)
                latencies.append(time.perf_counter() - started)
                code = ack.split(b"\rMSA|", 1)[1][:2].decode() if b"\rMSA|" in ack else "??"
                codes[code] = codes.get(code, 0) + 1
        finally:
            writer.close()

    started = time.perf_counter()
    deadline = started + duration_s
    await asyncio.gather(*(client(deadline) for _ in range(connections)))
    elapsed = time.perf_counter() - started
    return summarize(label, latencies, elapsed, codes=codes), codes


def _run_loop(coroutine: Any) -> Any:
    try:
        import uvloop

        return uvloop.run(coroutine)
    except ImportError:
        return asyncio.run(coroutine)


def _count(conninfo: str, where: str = "") -> int:
    with psycopg.connect(conninfo) as conn:
        row = conn.execute(f"SELECT count(*) FROM hl7_message {where}").fetchone()
        return int(row[0]) if row else 0


def run(args: argparse.Namespace) -> int:
    mode = "ACK path alone" if args.no_processing else "with the processor running"
    print(f"== hl7_ack: {args.connections} MLLP connections, {args.duration:.0f} s, {mode}")
    with postgres_server() as server, fresh_database(server, "hl7ack") as database:
        machine = machine_description(database)
        wait_until_quiet()
        floor = _run_loop(_floor(database, args.connections, args.duration))
        print("  " + floor.line())
        with psycopg.connect(database, autocommit=True) as conn:
            conn.execute("TRUNCATE hl7_message RESTART IDENTITY")
            conn.execute("VACUUM ANALYZE hl7_message")
        port = free_port()
        env = {
            **os.environ,
            "MAILLAGE_DATABASE_URL": database,
            "MAILLAGE_HL7_PORT": str(port),
            "MAILLAGE_LOG_LEVEL": "WARNING",
            "MAILLAGE_HL7_WORKERS": "0" if args.no_processing else "2",
        }
        OUT_DIR.mkdir(parents=True, exist_ok=True)
        log_path = OUT_DIR / "logs" / f"gateway-{port}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [str(VENV_BIN / "maillage"), "gateway"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            _wait_port(port, process, log_path)
            _run_loop(_mllp_load(port, args.connections, args.warmup, 10**8, "warm-up"))
            busy = wait_until_quiet()
            before = _count(database)
            result, codes = _run_loop(
                _mllp_load(
                    port,
                    args.connections,
                    args.duration,
                    2 * 10**8,
                    f"MLLP store-then-ACK, {args.connections} connections",
                )
            )
            result.notes["background_cpu"] = busy
            stored = _count(database) - before
            print("  " + result.line())
            time.sleep(2.0)
            waiting = _count(database, "WHERE status = 'received'")
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
    aa = codes.get("AA", 0)
    rate_ok = result.rate >= TARGET_RATE
    p99_ok = result.p99_ms < TARGET_P99_MS
    ok = rate_ok and p99_ok and aa == stored
    lines = [
        "# HL7 v2 ACK rate (store-then-ACK)",
        "",
        f"`maillage gateway` on 127.0.0.1, {args.connections} concurrent MLLP connections, each "
        "sending the next ADT^A28 (synthetic identity, 8859/15) when the previous ACK arrives; "
        f"{args.duration:.0f} s measured after a {args.warmup:.0f} s warm-up; {mode}. "
        "An AA is sent only after the message's row is committed.",
        "",
        "| run | messages/s | p50 ms | p90 ms | p99 ms | max ms |",
        "|---|---|---|---|---|---|",
        f"| MLLP store-then-ACK | {result.rate:,.0f} | {result.p50_ms:.2f} | {result.p90_ms:.2f} "
        f"| {result.p99_ms:.2f} | {result.max_ms:.2f} |",
        f"| floor: plain SQL INSERT (psycopg, {args.connections} connections) | {floor.rate:,.0f} "
        f"| {floor.p50_ms:.2f} | {floor.p90_ms:.2f} | {floor.p99_ms:.2f} | {floor.max_ms:.2f} |",
        "",
        f"- ratio to the floor: {ratio(result.rate, floor.rate):.0%}",
        f"- target ≥ {TARGET_RATE:,.0f} msg/s: {verdict(rate_ok)}; "
        f"p99 < {TARGET_P99_MS:.0f} ms: {verdict(p99_ok)}",
        f"- ACK codes: {codes}; rows stored during the run: {stored} "
        f"({'every AA has its row' if aa == stored else 'MISMATCH'})",
        f"- still waiting for the processor 2 s after the run: {waiting}",
        f"- other processes' CPU share before the run: {result.notes['background_cpu']:.0%}",
        "",
        "## Machine",
        "",
        *[f"- {key}: {value}" for key, value in machine.items()],
        "",
    ]
    write_results(
        "hl7_ack",
        {
            "machine": machine,
            "result": result.as_dict(),
            "floor": floor.as_dict(),
            "stored": stored,
            "waiting_after_2s": waiting,
            "processing": not args.no_processing,
        },
        "\n".join(lines),
    )
    print(f"  target {verdict(ok)}")
    return 0


def _wait_port(port: int, process: subprocess.Popen[bytes], log_path: Any) -> None:
    import socket

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise BenchError(f"maillage gateway exited with {process.returncode}; see {log_path}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise BenchError(f"maillage gateway did not listen within 60 s; see {log_path}")


if __name__ == "__main__":
    raise SystemExit(main())
