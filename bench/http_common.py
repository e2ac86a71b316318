"""Shared helpers for the HTTP benchmarks: a bench database, the hub as a subprocess, wrk,
and the plain-SQL floors every HTTP figure is printed beside.

Everything runs on 127.0.0.1 and every loop is bounded in count and in time.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool

ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = ROOT / "bench"
LUA_DIR = BENCH_DIR / "lua"
OUT_DIR = BENCH_DIR / "out"
VENV_BIN = ROOT / ".venv" / "bin"


def _hub_pool_size() -> int:
    from maillage.settings import Settings

    return Settings().db_pool_max


# The hub's pool size per worker (Settings.db_pool_max): the floors use the same per process.
POOL_SIZE = _hub_pool_size()
WRK_INSTALL_HINT = (
    "wrk is not installed. On Debian/Ubuntu: `sudo apt-get update && sudo apt-get install -y "
    "wrk`; on macOS: `brew install wrk`. See bench/README.md."
)
# Hard ceilings so that no loop can run away, whatever the arguments say.
MAX_DURATION_S = 120.0
MAX_FLOOR_OPERATIONS = 5_000_000


class BenchError(RuntimeError):
    """A benchmark cannot run (missing tool, hub not healthy...): said plainly."""


# -- environment --------------------------------------------------------------------------
def require_wrk() -> str:
    path = shutil.which("wrk")
    if path is None:
        raise BenchError(WRK_INSTALL_HINT)
    return path


def machine_description(conninfo: str | None = None) -> dict[str, str]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = "unknown"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
                break
    except OSError:
        pass
    described = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": str(os.cpu_count()),
        "cpu": cpu,
        "memory": memory,
        "python": platform.python_version(),
        "kernel": platform.release(),
    }
    wrk = shutil.which("wrk")
    if wrk:
        probe = subprocess.run([wrk, "--version"], capture_output=True, text=True, timeout=10)
        described["wrk"] = (probe.stdout or probe.stderr).splitlines()[0].split(" [")[0]
    if conninfo:
        with psycopg.connect(conninfo) as conn:
            row = conn.execute("SHOW server_version").fetchone()
            described["postgresql"] = str(row[0]) if row else "unknown"
            for setting in ("shared_buffers", "synchronous_commit", "fsync"):
                row = conn.execute(f"SHOW {setting}").fetchone()
                described[f"pg {setting}"] = str(row[0]) if row else "?"
    return described


def _cpu_ticks() -> tuple[int, int]:
    fields = [int(value) for value in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return sum(fields), idle


# PostgreSQL servers the benchmarks use (their postmasters): their CPU is ours, not noise.
_OUR_POSTMASTERS: set[int] = set()


def _parents() -> dict[int, int]:
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    return parents


def _our_processes() -> set[int]:
    """This process, the PostgreSQL servers we use, and all their descendants."""
    parents = _parents()
    ours = {os.getpid(), *_OUR_POSTMASTERS}
    grew = True
    while grew:
        children = {pid for pid, parent in parents.items() if parent in ours} - ours
        ours |= children
        grew = bool(children)
    return ours


def _process_ticks(pids: set[int]) -> dict[int, int]:
    ticks = {}
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ticks[pid] = int(fields[11]) + int(fields[12])
    return ticks


def background_cpu(seconds: float = 1.0) -> float:
    """Share of the machine's CPU that *other* processes (not ours, not our PostgreSQL)
    kept busy over ``seconds`` (0..1)."""
    try:
        ours = _our_processes()
        own0 = _process_ticks(ours)
        total0, idle0 = _cpu_ticks()
        time.sleep(seconds)
        total1, idle1 = _cpu_ticks()
        own1 = _process_ticks(ours)
    except OSError:
        return 0.0
    total = total1 - total0
    own = sum(own1[pid] - own0[pid] for pid in own1 if pid in own0)
    busy = total - (idle1 - idle0) - own
    return max(0.0, busy / total) if total else 0.0


def wait_until_quiet(threshold: float = 0.15, max_wait_s: float | None = None) -> float:
    """Wait (bounded) until other processes leave the CPU mostly idle: every figure here
    assumes the load generator, the hub and its PostgreSQL have the machine to themselves.
    Returns the last background share measured; says so when it stays high.
    MAILLAGE_BENCH_QUIET_WAIT sets the longest wait in seconds (default 90)."""
    if max_wait_s is None:
        max_wait_s = float(os.environ.get("MAILLAGE_BENCH_QUIET_WAIT", "90"))
    deadline = time.monotonic() + max_wait_s
    busy = background_cpu()
    while busy > threshold and time.monotonic() < deadline:
        print(f"  (machine busy: {busy:.0%} CPU used by other processes; waiting)")
        time.sleep(5)
        busy = background_cpu()
    if busy > threshold:
        print(f"  WARNING: {busy:.0%} of the CPU is used by other processes; figures are low")
    return busy


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# -- database -----------------------------------------------------------------------------
def _with_database(url: str, name: str) -> str:
    params = psycopg.conninfo.conninfo_to_dict(url)
    params["dbname"] = name
    return psycopg.conninfo.make_conninfo("", **params)


@contextmanager
def postgres_server() -> Iterator[str]:
    """A PostgreSQL server: MAILLAGE_BENCH_DATABASE_URL, or an embedded one in a temp folder."""
    external = os.environ.get("MAILLAGE_BENCH_DATABASE_URL")
    if external:
        yield external
        return
    from maillage.storage import EmbeddedPostgres

    folder = Path(tempfile.mkdtemp(prefix="mb-", dir="/tmp"))
    os.environ.setdefault("XDG_RUNTIME_DIR", str(folder))
    embedded = EmbeddedPostgres(folder / "pg")
    try:
        url = embedded.start()
        # Scripts started from here (and run_all's children) share this server.
        os.environ["MAILLAGE_BENCH_DATABASE_URL"] = url
        try:
            yield url
        finally:
            os.environ.pop("MAILLAGE_BENCH_DATABASE_URL", None)
    finally:
        embedded.stop()
        shutil.rmtree(folder, ignore_errors=True)


@contextmanager
def fresh_database(server_url: str, label: str) -> Iterator[str]:
    """A new database with the hub's schema, dropped afterwards."""
    from maillage.storage import upgrade

    name = f"maillage_bench_{label}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = _with_database(server_url, name)
    try:
        upgrade(url)
        _remember_postmaster(url)
        yield url
    finally:
        with psycopg.connect(server_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _remember_postmaster(conninfo: str) -> None:
    """A local server's postmaster (the parent of our backend), to tell its CPU from noise."""
    with psycopg.connect(conninfo) as conn:
        row = conn.execute("SELECT pg_backend_pid()").fetchone()
    try:
        stat = Path(f"/proc/{row[0] if row else 0}/stat").read_text()
    except OSError:
        return  # a remote server
    _OUR_POSTMASTERS.add(int(stat.rsplit(")", 1)[1].split()[1]))


def vacuum_analyze(conninfo: str) -> None:
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")


# -- synthetic data -----------------------------------------------------------------------
_FAMILIES = [
    "Martin",
    "Bernard",
    "Thomas",
    "Petit",
    "Robert",
    "Richard",
    "Durand",
    "Dubois",
    "Moreau",
    "Laurent",
    "Simon",
    "Michel",
    "Lefebvre",
    "Leroy",
    "Roux",
    "David",
    "Bertrand",
    "Morel",
    "Fournier",
    "Girard",
    "Bonnet",
    "Dupont",
    "Lambert",
    "Fontaine",
]
_GIVEN = [
    "Camille",
    "Louise",
    "Léa",
    "Emma",
    "Chloé",
    "Manon",
    "Inès",
    "Jade",
    "Lucas",
    "Hugo",
    "Louis",
    "Gabriel",
    "Arthur",
    "Jules",
    "Nathan",
    "Léo",
    "Raphaël",
    "Adam",
    "Paul",
    "Théo",
]
_CITIES = (("Lyon", "69003"), ("Villeurbanne", "69100"), ("Vienne", "38200"), ("Bron", "69500"))


def synthetic_patient(number: int, rng: random.Random | None = None) -> dict[str, Any]:
    """A synthetic Patient (made-up identity, fake identifier system): no real person."""
    pick = rng or random.Random(number)
    city, postal = _CITIES[number % len(_CITIES)]
    return {
        "resourceType": "Patient",
        "identifier": [{"system": "urn:oid:1.2.250.1.999.1.1.1", "value": f"BENCH{number:010d}"}],
        "active": True,
        "name": [
            {
                "use": "official",
                "family": pick.choice(_FAMILIES),
                "given": [pick.choice(_GIVEN)],
            }
        ],
        "telecom": [{"system": "phone", "value": f"06{number % 100_000_000:08d}", "use": "home"}],
        "gender": "female" if number % 2 else "male",
        "birthDate": f"{1930 + number % 90}-{1 + number % 12:02d}-{1 + number % 28:02d}",
        "address": [
            {
                "line": [f"{1 + number % 200} rue des Essais"],
                "city": city,
                "postalCode": postal,
                "country": "FR",
            }
        ],
    }


async def _seed(conninfo: str, count: int) -> list[str]:
    """Write ``count`` Patients with the store's SQL write function (body, meta, index rows)."""
    from maillage.fhir import sql_writes
    from maillage.fhir.indexing.extractor import extract_index
    from maillage.fhir.stamping import content_hash, format_instant, now_instant

    rng = random.Random(20240601)
    ids = [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(count)]
    batch = 500
    async with await psycopg.AsyncConnection.connect(conninfo) as conn:
        for start in range(0, count, batch):
            async with conn.transaction():
                for offset, resource_id in enumerate(ids[start : start + batch]):
                    moment = now_instant()
                    resource = {
                        **synthetic_patient(start + offset),
                        "id": resource_id,
                        "meta": {"versionId": "1", "lastUpdated": format_instant(moment)},
                    }
                    await sql_writes.insert_resource(
                        conn,
                        resource_type="Patient",
                        resource_id=resource_id,
                        version_id=1,
                        last_updated=moment,
                        method="POST",
                        body=json.dumps(resource, separators=(",", ":"), ensure_ascii=False),
                        content_hash=content_hash(resource),
                        rows=extract_index(resource),
                    )
    return ids


def seed_patients(conninfo: str, count: int, ids_file: Path) -> list[str]:
    """Seed ``count`` synthetic Patients (uuid ids), write their ids to ``ids_file``."""
    started = time.perf_counter()
    ids = asyncio.run(_seed(conninfo, count))
    ids_file.parent.mkdir(parents=True, exist_ok=True)
    ids_file.write_text("\n".join(ids) + "\n")
    vacuum_analyze(conninfo)
    print(f"  seeded {count} Patients in {time.perf_counter() - started:.1f} s -> {ids_file}")
    return ids


# -- the hub ------------------------------------------------------------------------------
@dataclass
class Hub:
    base_url: str
    pid: int
    workers: int
    log_file: Path

    def worker_pids(self) -> list[int]:
        """The uvicorn worker processes (children), or the server itself with one worker."""
        children = Path(f"/proc/{self.pid}/task/{self.pid}/children")
        try:
            pids = [int(p) for p in children.read_text().split()]
        except OSError:
            pids = []
        # Not the helper processes (multiprocessing's resource tracker) of the supervisor.
        pids = [pid for pid in pids if b"resource_tracker" not in _cmdline(pid)]
        return pids or [self.pid]


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def _get(url: str, timeout: float = 2.0) -> int:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return int(response.status)
    except OSError:
        return 0


@contextmanager
def running_hub(conninfo: str, workers: int, *, log_dir: Path) -> Iterator[Hub]:
    """``maillage serve --no-demo --workers N`` on a free 127.0.0.1 port, stopped afterwards."""
    port = free_port()
    log_dir.mkdir(parents=True, exist_ok=True)
    log_file = log_dir / f"hub-{workers}w-{port}.log"
    env = {
        **os.environ,
        "MAILLAGE_DATABASE_URL": conninfo,
        "MAILLAGE_LOG_LEVEL": "WARNING",
        "MAILLAGE_HOST": "127.0.0.1",
        # the HTTP benchmarks do not use the MLLP listener (bench/hl7_ack.py measures it)
        "MAILLAGE_HL7_ENABLED": "false",
        # the store's speed: sign-in is measured apart (bench/security_cost.py)
        "MAILLAGE_AUTH_ENABLED": os.environ.get("MAILLAGE_AUTH_ENABLED", "false"),
    }
    command = [
        str(VENV_BIN / "maillage"),
        "serve",
        "--no-demo",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(workers),
    ]
    with log_file.open("wb") as log:
        process = subprocess.Popen(
            command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    hub = Hub(f"http://127.0.0.1:{port}", process.pid, workers, log_file)
    try:
        deadline = time.monotonic() + 60
        while _get(f"{hub.base_url}/health") != 200:
            if process.poll() is not None:
                raise BenchError(f"the hub exited with {process.returncode}; see {log_file}")
            if time.monotonic() > deadline:
                raise BenchError(f"the hub was not healthy within 60 s; see {log_file}")
            time.sleep(0.1)
        # With several workers, wait until each has answered at least once.
        for _ in range(20 * workers):
            _get(f"{hub.base_url}/health")
        yield hub
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)


# -- profiling ----------------------------------------------------------------------------
def py_spy() -> str | None:
    found = VENV_BIN / "py-spy"
    return str(found) if found.exists() else shutil.which("py-spy")


@contextmanager
def profiling(hub: Hub, name: str, duration_s: float) -> Iterator[list[Path]]:
    """py-spy (``pip install py-spy``) samples every hub worker while the block runs;
    collapsed stacks land in bench/out/profile-NAME-PID.txt (see ``profile_summary``)."""
    tool = py_spy()
    outputs: list[Path] = []
    processes: list[subprocess.Popen[bytes]] = []
    if tool is None:
        print("  (py-spy not installed: no profile; `.venv/bin/pip install py-spy`)")
        yield outputs
        return
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    for pid in hub.worker_pids():
        output = OUT_DIR / f"profile-{name}-{pid}.txt"
        outputs.append(output)
        processes.append(
            subprocess.Popen(
                [
                    tool,
                    "record",
                    "--pid",
                    str(pid),
                    "--format",
                    "raw",
                    "--rate",
                    "250",
                    "--duration",
                    str(int(duration_s)),
                    "--nonblocking",
                    "-o",
                    str(output),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
    try:
        yield outputs
    finally:
        for process in processes:
            try:
                process.wait(timeout=duration_s + 30)
            except subprocess.TimeoutExpired:
                process.terminate()
                process.wait(timeout=10)


def profile_summary(outputs: list[Path], top: int = 25) -> str:
    """Self and inclusive sample shares per function, from py-spy's collapsed stacks."""
    own: dict[str, int] = {}
    inclusive: dict[str, int] = {}
    total = 0
    for output in outputs:
        if not output.exists():
            continue
        for line in output.read_text().splitlines():
            stack, _, count_text = line.rpartition(" ")
            if not count_text.isdigit():
                continue
            count = int(count_text)
            # function level: "name (file.py:123)" -> "name (file.py)"
            frames = [re.sub(r":\d+\)$", ")", frame) for frame in stack.split(";") if frame]
            if frames and frames[0].startswith("process "):
                frames = frames[1:]
            if not frames:
                continue
            total += count
            leaf = frames[-1]
            own[leaf] = own.get(leaf, 0) + count
            for frame in set(frames):
                inclusive[frame] = inclusive.get(frame, 0) + count
    if not total:
        return "(no samples)"
    lines = [f"{total} samples", "", "self %  function (file:line)"]
    for frame, count in sorted(own.items(), key=lambda item: -item[1])[:top]:
        lines.append(f"{100 * count / total:5.1f}  {frame}")
    lines += ["", "incl %  function (file:line)"]
    for frame, count in sorted(inclusive.items(), key=lambda item: -item[1])[:top]:
        lines.append(f"{100 * count / total:5.1f}  {frame}")
    return "\n".join(lines)


# -- wrk ----------------------------------------------------------------------------------
@dataclass
class LoadResult:
    """One measured run: a wrk run against the hub, or a plain-SQL floor."""

    label: str
    requests: int
    duration_s: float
    rate: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    errors: int = 0
    notes: dict[str, Any] = field(default_factory=dict)

    def line(self) -> str:
        return (
            f"{self.label:<38} {self.rate:>9,.0f}/s  p50 {self.p50_ms:6.2f} ms  "
            f"p90 {self.p90_ms:6.2f} ms  p99 {self.p99_ms:7.2f} ms  errors {self.errors}"
        )

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def run_wrk(
    label: str,
    url: str,
    script: Path,
    *,
    connections: int,
    duration_s: float,
    threads: int = 2,
    script_args: list[str] | None = None,
) -> LoadResult:
    """Run wrk with a Lua script whose done() prints one ``WRK_JSON {...}`` line."""
    wrk = require_wrk()
    if not url.startswith("http://127.0.0.1:"):
        raise BenchError("load is only ever generated against 127.0.0.1")
    seconds = max(1, int(min(duration_s, MAX_DURATION_S)))
    busy = 0.0 if label == "warm-up" else wait_until_quiet()
    command = [
        wrk,
        f"-t{threads}",
        f"-c{connections}",
        f"-d{seconds}s",
        "--timeout",
        "5s",
        "--latency",
        "-s",
        str(script),
        url,
    ]
    if script_args:
        command += ["--", *script_args]
    completed = subprocess.run(
        command, capture_output=True, text=True, timeout=seconds + 60, check=False
    )
    found = [
        line.removeprefix("WRK_JSON ")
        for line in completed.stdout.splitlines()
        if line.startswith("WRK_JSON ")
    ]
    if completed.returncode != 0 or not found:
        raise BenchError(f"wrk failed ({completed.returncode}): {completed.stderr[-2000:]}")
    data = json.loads(found[-1])
    errors = sum(int(data["errors"][kind]) for kind in data["errors"])
    duration = data["duration_us"] / 1e6
    return LoadResult(
        label=label,
        requests=int(data["requests"]),
        duration_s=duration,
        rate=int(data["requests"]) / duration,
        p50_ms=data["p50_us"] / 1000,
        p90_ms=data["p90_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
        max_ms=data["max_us"] / 1000,
        errors=errors,
        notes={
            "wrk_errors": data["errors"],
            "connections": connections,
            "threads": threads,
            "background_cpu": busy,
        },
    )


# -- plain-SQL floors ---------------------------------------------------------------------
def _percentile(sorted_values: list[float], fraction: float) -> float:
    if not sorted_values:
        return 0.0
    index = min(len(sorted_values) - 1, max(0, round(fraction * len(sorted_values)) - 1))
    return sorted_values[index]


def summarize(label: str, latencies_s: list[float], elapsed_s: float, **notes: Any) -> LoadResult:
    ordered = sorted(latencies_s)
    return LoadResult(
        label=label,
        requests=len(ordered),
        duration_s=elapsed_s,
        rate=len(ordered) / elapsed_s if elapsed_s else 0.0,
        p50_ms=_percentile(ordered, 0.50) * 1000,
        p90_ms=_percentile(ordered, 0.90) * 1000,
        p99_ms=_percentile(ordered, 0.99) * 1000,
        max_ms=(ordered[-1] if ordered else 0.0) * 1000,
        notes=notes,
    )


async def _configure_floor(conn: psycopg.AsyncConnection) -> None:
    # As the hub does: JSONB comes back as text, never parsed.
    conn.adapters.register_loader("jsonb", psycopg.types.string.TextLoader)


Operation = Callable[[psycopg.AsyncConnection, int], Awaitable[None]]


async def _floor_loop(
    conninfo: str, operation_name: str, tasks: int, duration_s: float, seed: int
) -> tuple[list[float], float]:
    operation = FLOOR_OPERATIONS[operation_name]
    pool = AsyncConnectionPool(
        conninfo,
        min_size=POOL_SIZE,
        max_size=POOL_SIZE,
        open=False,
        configure=_configure_floor,
        kwargs={"autocommit": True},
    )
    await pool.open(wait=True, timeout=30)
    latencies: list[float] = []
    limit = MAX_FLOOR_OPERATIONS // max(1, tasks)
    try:
        # warm-up: every connection prepares its statement
        async def warm(n: int) -> None:
            for k in range(20):
                async with pool.connection() as conn:
                    await operation(conn, seed * 1_000_000 + n * 100 + k)

        await asyncio.gather(*(warm(n) for n in range(tasks)))
        deadline = time.perf_counter() + duration_s

        async def worker(n: int) -> None:
            counter = seed * 10_000_000 + n * 100_000
            for _ in range(limit):
                now = time.perf_counter()
                if now >= deadline:
                    return
                async with pool.connection() as conn:
                    await operation(conn, counter)
                latencies.append(time.perf_counter() - now)
                counter += 1

        started = time.perf_counter()
        await asyncio.gather(*(worker(n) for n in range(tasks)))
        elapsed = time.perf_counter() - started
    finally:
        await pool.close()
    return latencies, elapsed


def _floor_process(
    conninfo: str, operation_name: str, tasks: int, duration_s: float, seed: int, data_file: str
) -> tuple[list[float], float]:
    _FLOOR_STATE["lines"] = Path(data_file).read_text().splitlines() if data_file else []
    try:
        import uvloop

        runner: Any = uvloop.run
    except ImportError:  # the hub runs on uvloop when installed; so does its floor
        runner = asyncio.run
    result: tuple[list[float], float] = runner(
        _floor_loop(conninfo, operation_name, tasks, duration_s, seed)
    )
    return result


_FLOOR_STATE: dict[str, Any] = {}


async def _select_by_id(conn: psycopg.AsyncConnection, n: int) -> None:
    ids = _FLOOR_STATE["lines"]
    cursor = await conn.execute(
        "SELECT content FROM resource WHERE resource_type = %s AND id = %s",
        ("Patient", ids[n % len(ids)]),
    )
    row = await cursor.fetchone()
    assert row is not None


async def _insert_one(conn: psycopg.AsyncConnection, n: int) -> None:
    bodies = _FLOOR_STATE["lines"]
    await conn.execute(
        "INSERT INTO resource (resource_type, id, version_id, last_updated, method, content)"
        " VALUES (%s, %s, 1, now(), 'POST', %s::jsonb)",
        ("Patient", str(uuid.uuid4()), bodies[n % len(bodies)]),
    )


FLOOR_OPERATIONS: dict[str, Operation] = {"select_by_id": _select_by_id, "insert": _insert_one}


def sql_floor(
    label: str,
    conninfo: str,
    operation_name: str,
    *,
    tasks: int,
    duration_s: float,
    processes: int = 1,
    data_file: Path | None = None,
) -> LoadResult:
    """``tasks`` asyncio tasks (split over ``processes``, each with a POOL_SIZE pool) doing
    the same operation in plain SQL through psycopg 3, for ``duration_s``. ``data_file``
    holds the ids to read or the JSON bodies to insert, one a line."""
    duration_s = min(duration_s, MAX_DURATION_S)
    per_process = [
        tasks // processes + (1 if i < tasks % processes else 0) for i in range(processes)
    ]
    data = str(data_file) if data_file else ""
    busy = wait_until_quiet()
    if processes == 1:
        outcomes = [_floor_process(conninfo, operation_name, tasks, duration_s, 1, data)]
    else:
        with ProcessPoolExecutor(max_workers=processes) as pool:
            futures = [
                pool.submit(_floor_process, conninfo, operation_name, n, duration_s, i + 1, data)
                for i, n in enumerate(per_process)
            ]
            outcomes = [future.result(timeout=duration_s + 120) for future in futures]
    latencies = [value for values, _ in outcomes for value in values]
    elapsed = max(elapsed for _, elapsed in outcomes)
    return summarize(
        label,
        latencies,
        elapsed,
        tasks=tasks,
        processes=processes,
        pool_size_per_process=POOL_SIZE,
        background_cpu=busy,
    )


# -- reporting ----------------------------------------------------------------------------
def ratio(value: float, floor: float) -> float:
    return value / floor if floor else 0.0


def median(values: list[float]) -> float:
    return statistics.median(values) if values else 0.0


def write_results(name: str, payload: dict[str, Any], markdown: str) -> None:
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    (OUT_DIR / f"{name}.json").write_text(json.dumps(payload, indent=2, ensure_ascii=False))
    (OUT_DIR / f"{name}.md").write_text(markdown)
    print(f"  results -> {OUT_DIR / (name + '.md')}")


def verdict(ok: bool) -> str:
    return "MET" if ok else "MISSED"


def fail(error: BenchError) -> int:
    print(f"error: {error}", file=sys.stderr)
    return 2


def rate_table(rows: list[dict[str, Any]], rate_header: str) -> list[str]:
    """The markdown table of HTTP figures beside their SQL floors, one row per worker count."""
    lines = [
        f"| workers | {rate_header} | p50 ms | p99 ms | errors | SQL floor/s | floor p99 ms "
        "| ratio | verdict |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['workers']} | {row['rate']:,.0f} | {row['p50_ms']:.2f} | "
            f"{row['p99_ms']:.2f} | {row['errors']} | {row['floor_rate']:,.0f} | "
            f"{row['floor_p99_ms']:.2f} | {row['ratio']:.0%} | {row['verdict']} |"
        )
    return lines


def profile_sections(profiles: dict[str, str]) -> list[str]:
    lines: list[str] = []
    for name, summary in profiles.items():
        lines += [f"### Profile {name} (py-spy)", "", "```", summary, "```", ""]
    return lines


def recording_engine(statements: list[str]) -> Any:
    """The hub's search engine, appending the SQL of each statement it runs to
    ``statements`` (the benches show their plans)."""
    from psycopg import sql

    from maillage.fhir.search.engine import SearchEngine

    class RecordingEngine(SearchEngine):
        async def _fetch(
            self, conn: psycopg.AsyncConnection, query: sql.Composed | sql.SQL
        ) -> list[tuple[Any, ...]]:
            statements.append(query.as_string(conn))
            return await super()._fetch(conn, query)

        fetch = _fetch  # $everything calls it by this name

    return RecordingEngine()
