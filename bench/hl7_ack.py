"""HL7 v2 ACK rate (store-then-ACK) beside its floor.

The hub runs as deployed by default, `maillage serve --workers 2` (the MLLP listener in
worker 0, the processor in worker 1), or `maillage gateway` (listener and processor in
one process) with `--mode gateway`, on 127.0.0.1. 4 concurrent MLLP connections send
ADT^A28 messages (synthetic identities), each sending the next one as soon as the ACK
of the previous one arrives. Each AA means the message was committed to PostgreSQL
first. The floor: the same INSERTs of the same raw messages in plain SQL through
psycopg 3, 4 connections, in the same run.

    .venv/bin/python -m bench.hl7_ack [--duration 15] [--mode serve|gateway] [--no-processing]
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
    parser.add_argument("--mode", choices=["serve", "gateway"], default="serve")
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


def _measure(args: argparse.Namespace, database: str, processing: bool) -> dict[str, Any]:
    """One hub process (serve or gateway), warm-up, one measured run; truncates first."""
    with psycopg.connect(database, autocommit=True) as conn:
        conn.execute("TRUNCATE hl7_message RESTART IDENTITY")
        conn.execute("VACUUM ANALYZE hl7_message")
    port = free_port()
    env = {
        **os.environ,
        "MAILLAGE_DATABASE_URL": database,
        "MAILLAGE_HL7_PORT": str(port),
        "MAILLAGE_LOG_LEVEL": "WARNING",
        "MAILLAGE_HL7_WORKERS": "2" if processing else "0",
        "MAILLAGE_HL7_ENABLED": "true",
    }
    log_path = OUT_DIR / "logs" / f"hl7-{args.mode}-{port}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    command = [str(VENV_BIN / "maillage"), "gateway"]
    if args.mode == "serve":
        command = [str(VENV_BIN / "maillage"), "serve", "--no-demo", "--workers", "2"]
        command += ["--port", str(free_port())]
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    label = f"MLLP store-then-ACK, processor {'on' if processing else 'off'}"
    try:
        _wait_port(port, process, log_path)
        _run_loop(_mllp_load(port, args.connections, args.warmup, 10**8, "warm-up"))
        busy = wait_until_quiet()
        before = _count(database)
        cpu_before = _tree_cpu_s(process.pid)
        first = (3 if processing else 5) * 10**8
        result, codes = _run_loop(_mllp_load(port, args.connections, args.duration, first, label))
        hub_cpu_s = _tree_cpu_s(process.pid) - cpu_before
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
    return {
        "result": result,
        "codes": codes,
        "stored": stored,
        "waiting": waiting,
        "hub_cpu_us": 1e6 * hub_cpu_s / max(1, stored),
        "background_cpu": busy,
        "ok": result.rate >= TARGET_RATE
        and result.p99_ms < TARGET_P99_MS
        and codes.get("AA", 0) == stored,
    }


def run(args: argparse.Namespace) -> int:
    where = (
        "`maillage serve --workers 2` (MLLP listener in worker 0, processor in worker 1)"
        if args.mode == "serve"
        else "`maillage gateway` (listener and processor in one process)"
    )
    print(f"== hl7_ack: {args.connections} MLLP connections, {args.duration:.0f} s, {where}")
    runs: list[dict[str, Any]] = []
    with postgres_server() as server, fresh_database(server, "hl7ack") as database:
        machine = machine_description(database)
        wait_until_quiet()
        floor = _run_loop(_floor(database, args.connections, args.duration))
        print("  " + floor.line())
        for processing in (False,) if args.no_processing else (True, False):
            runs.append(_measure(args, database, processing))
    lines = [
        "# HL7 v2 ACK rate (store-then-ACK)",
        "",
        f"{where} on 127.0.0.1; {args.connections} concurrent MLLP connections, each "
        "sending the next ADT^A28 (synthetic identity, 8859/15) when the previous ACK arrives; "
        f"{args.duration:.0f} s measured after a {args.warmup:.0f} s warm-up. An AA is sent "
        "only after the message's row is committed. With the processor on, the messages are "
        "also processed meanwhile (today: ignored, as no ADT conversion is registered yet); "
        "off, the ACK path alone.",
        "",
        "| run | messages/s | p50 ms | p90 ms | p99 ms | max ms | hub CPU µs/msg "
        "| waiting 2 s after | verdict |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for measured in runs:
        result = measured["result"]
        lines.append(
            f"| {result.label} | {result.rate:,.0f} | {result.p50_ms:.2f} | "
            f"{result.p90_ms:.2f} | {result.p99_ms:.2f} | {result.max_ms:.2f} | "
            f"{measured['hub_cpu_us']:.0f} | {measured['waiting']} | "
            f"{verdict(measured['ok'])} |"
        )
    lines += [
        f"| floor: plain SQL INSERT (psycopg, {args.connections} connections) | "
        f"{floor.rate:,.0f} | {floor.p50_ms:.2f} | {floor.p90_ms:.2f} | {floor.p99_ms:.2f} | "
        f"{floor.max_ms:.2f} | | | |",
        "",
        f"Targets: ≥ {TARGET_RATE:,.0f} msg/s and p99 < {TARGET_P99_MS:.0f} ms, every AA with "
        "its row.",
        "",
        *[
            f"- {m['result'].label}: ratio to the floor {ratio(m['result'].rate, floor.rate):.0%}; "
            f"ACK codes {m['codes']}; rows stored {m['stored']}; other processes' CPU share "
            f"before the run {m['background_cpu']:.0%}"
            for m in runs
        ],
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
            "mode": args.mode,
            "floor": floor.as_dict(),
            "runs": [
                {**{k: v for k, v in m.items() if k != "result"}, "result": m["result"].as_dict()}
                for m in runs
            ],
        },
        "\n".join(lines),
    )
    print(f"  target {verdict(any(m['ok'] for m in runs))}")
    return 0


def _tree_cpu_s(root: int) -> float:
    """CPU seconds (user + system) used so far by ``root`` and its descendants."""
    from pathlib import Path

    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    tree = {root}
    grew = True
    while grew:
        children = {pid for pid, parent in parents.items() if parent in tree} - tree
        tree |= children
        grew = bool(children)
    ticks = 0
    for pid in tree:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def _wait_port(port: int, process: subprocess.Popen[bytes], log_path: Any) -> None:
    import socket

    deadline = time.monotonic() + 120
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
