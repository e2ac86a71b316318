"""Bulk load benchmark: `maillage load` on >= 100,000 resources, beside plain COPY.

    .venv/bin/python -m bench.bulk_load [--resources 100000] [--profile]
        [--index-build after] [--targets-last]

1. Builds the data set: ../shared/data/synthea/10-patients replicated with new ids
   (every id, and every ``Type/id`` reference to it, gets a ``-cN`` suffix per copy; so
   do identifier values and the conditional references naming them, which the loader
   resolves at the end of the load),
   written as NDJSON files (one per type) in a temp folder.
2. Floor: plain COPY of the same JSON lines into a bare ``(id text, content jsonb)`` table
   (one process reading the files, taking the id out of each line, streaming COPY).
3. The real loader, as users run it: ``python -m maillage load FOLDER`` in a subprocess
   against a fresh database, its RSS (process + worker processes) sampled every 50 ms.
4. The same load again: everything unchanged, no new version (idempotent reload).

The database is an embedded PostgreSQL in a temp folder, or MAILLAGE_BENCH_DATABASE_URL.
Figures land in bench/out/bulk_load.md (and .json).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import orjson
import psutil
import psycopg

from bench.http_common import (
    OUT_DIR,
    ROOT,
    BenchError,
    fail,
    fresh_database,
    machine_description,
    postgres_server,
    profile_summary,
    py_spy,
)

SOURCE = ROOT.parent / "shared" / "data" / "synthea" / "10-patients"
TARGET_RATE = 3000.0
TARGET_RSS_MB = 500.0
_SUMMARY = re.compile(
    r"loaded: (?P<loaded>\d+).*unchanged: (?P<unchanged>\d+)\s+rejected: (?P<rejected>\d+)"
    r"\s+time: (?P<seconds>[\d.]+) s \(writing (?P<writing>[\d.]+) s, waiting for validation"
    r" and indexing (?P<preparing>[\d.]+) s\)"
)


_RESOLVED = re.compile(
    r"conditional references resolved: (?P<count>[\d,]+) \((?P<after>[\d,]+) after the"
    r" load, in [\d,]+ resources, (?P<seconds>[\d.]+) s"
)


# -- data set -----------------------------------------------------------------------------
def _suffix_references(node: Any, suffix: str) -> Any:
    if isinstance(node, list):
        return [_suffix_references(item, suffix) for item in node]
    if not isinstance(node, dict):
        return node
    result: dict[str, Any] = {}
    for key, value in node.items():
        if key == "reference" and isinstance(value, str) and _is_relative(value):
            result[key] = value + suffix
        elif key == "reference" and isinstance(value, str) and "?identifier=" in value:
            result[key] = value + suffix  # names the copy's own identifier value
        elif key == "identifier" and isinstance(value, list):
            result[key] = [
                {**item, "value": item["value"] + suffix}
                if isinstance(item, dict) and isinstance(item.get("value"), str)
                else item
                for item in value
            ]
        else:
            result[key] = _suffix_references(value, suffix)
    return result


def _is_relative(reference: str) -> bool:
    parts = reference.split("/")
    return len(parts) == 2 and parts[0][:1].isupper() and "?" not in reference


def build_dataset(folder: Path, target: int) -> tuple[int, int]:
    """Replicate the 10-patient export until ``target`` resources: (resources, copies)."""
    if not SOURCE.is_dir():
        raise BenchError(f"{SOURCE} not found: the shared data folder must sit beside the repo")
    files = sorted(SOURCE.glob("*.ndjson"))
    per_copy = sum(1 for path in files for line in path.open("rb") if line.strip())
    copies = -(-target // per_copy)
    written = 0
    for path in files:
        with (folder / path.name).open("wb") as out:
            for copy in range(copies):
                suffix = f"-c{copy}"
                with path.open("rb") as lines:
                    for line in lines:
                        if not line.strip():
                            continue
                        resource = _suffix_references(orjson.loads(line), suffix)
                        resource["id"] = resource["id"] + suffix
                        out.write(orjson.dumps(resource) + b"\n")
                        written += 1
    return written, copies


# -- floor: plain COPY --------------------------------------------------------------------
def copy_floor(conninfo: str, folder: Path) -> tuple[int, float]:
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS bench_bare")
        conn.execute("CREATE TABLE bench_bare (id text, content jsonb)")
        started = time.perf_counter()
        count = 0
        with (
            conn.transaction(),
            conn.cursor() as cursor,
            cursor.copy("COPY bench_bare (id, content) FROM STDIN") as copy,
        ):
            for path in sorted(folder.glob("*.ndjson")):
                with path.open("rb") as lines:
                    for line in lines:
                        line = line.rstrip(b"\n")
                        if not line:
                            continue
                        resource_id = orjson.loads(line)["id"].encode()
                        copy.write(resource_id + b"\t" + line.replace(b"\\", b"\\\\") + b"\n")
                        count += 1
        elapsed = time.perf_counter() - started
        conn.execute("DROP TABLE bench_bare")
    return count, elapsed


# -- the loader ---------------------------------------------------------------------------
def postmaster_pid(conninfo: str) -> int | None:
    """The PostgreSQL server's main process, when it runs on this machine and we may ask."""
    try:
        with psycopg.connect(conninfo) as conn:
            row = conn.execute("SHOW data_directory").fetchone()
        pid_file = Path(str(row[0]) if row else "") / "postmaster.pid"
        return int(pid_file.read_text().splitlines()[0])
    except (psycopg.Error, OSError, ValueError, IndexError):
        return None


def _cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


# Reading a process's smaps (for PSS) is not free: sampled every 50 ms, the sampler used a
# third of a core during a load, on a machine the load already saturates.
SAMPLE_INTERVAL_S = 0.5


class Sampler:
    """Every SAMPLE_INTERVAL_S: RSS (and PSS, which counts pages shared by forked workers
    once) of the loader and its children, and the CPU time of the PostgreSQL server's processes."""

    def __init__(self, pid: int, postmaster: int | None) -> None:
        self.root = psutil.Process(pid)
        self.peak_rss = 0
        self.peak_pss = 0
        self.peak_processes = 0
        self._postmaster = psutil.Process(postmaster) if postmaster else None
        self._pg_start: dict[int, float] = {}
        self._pg_last: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @property
    def postgres_cpu(self) -> float | None:
        if self._postmaster is None:
            return None
        return sum(last - self._pg_start.get(pid, 0.0) for pid, last in self._pg_last.items())

    def __enter__(self) -> Sampler:
        for process in self._postgres():
            try:
                self._pg_start[process.pid] = _cpu_seconds(process)
            except psutil.Error:
                continue  # a backend that ended meanwhile
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._sample_postgres()

    def _postgres(self) -> list[psutil.Process]:
        if self._postmaster is None:
            return []
        try:
            return [self._postmaster, *self._postmaster.children()]
        except psutil.Error:
            return []

    def _sample_postgres(self) -> None:
        for process in self._postgres():
            try:
                self._pg_last[process.pid] = _cpu_seconds(process)
            except psutil.Error:
                continue

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                processes = [self.root, *self.root.children(recursive=True)]
            except psutil.Error:
                return
            rss = pss = 0
            for process in processes:
                try:
                    info = process.memory_full_info()
                except psutil.Error:
                    continue
                rss += info.rss
                pss += getattr(info, "pss", info.rss)
            self.peak_rss = max(self.peak_rss, rss)
            self.peak_pss = max(self.peak_pss, pss)
            self.peak_processes = max(self.peak_processes, len(processes))
            self._sample_postgres()
            self._stop.wait(SAMPLE_INTERVAL_S)


# The types the data set's conditional references name (``--targets-last``).
TARGETS = ("Organization", "Location", "Practitioner", "PractitionerRole")


def _paths(folder: Path, targets_last: bool) -> list[str]:
    """The folder (the loader reads the named types first), or its files given one by one
    with the named types last: their references are then resolved after the load."""
    if not targets_last:
        return [str(folder)]
    files = sorted(folder.glob("*.ndjson"), key=lambda path: path.name.split(".")[0] in TARGETS)
    return [str(path) for path in files]


def run_loader(
    conninfo: str,
    folder: Path,
    profile_to: Path | None,
    extra_args: list[str] | None = None,
    *,
    targets_last: bool = False,
) -> dict[str, Any]:
    env = {**os.environ, "MAILLAGE_DATABASE_URL": conninfo}
    paths = _paths(folder, targets_last)
    command = [sys.executable, "-m", "maillage", "load", *(extra_args or []), *paths]
    if profile_to is not None:
        tool = py_spy()
        if tool is None:
            raise BenchError("--profile needs py-spy: `.venv/bin/pip install py-spy`")
        command = [tool, "record", "--subprocesses", "--format", "raw", "--rate", "200",
                   "-o", str(profile_to), "--", *command]  # fmt: skip
    postmaster = postmaster_pid(conninfo)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT
    )
    with Sampler(process.pid, postmaster) as memory:
        stdout, stderr = process.communicate(timeout=3600)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    loader_cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    text = stdout.decode()
    if process.returncode != 0:
        raise BenchError(f"maillage load exited {process.returncode}: {stderr.decode()[-2000:]}")
    match = _SUMMARY.search(text)
    if match is None:
        raise BenchError(f"no summary in the loader's output: {text[-2000:]}")
    resolved = _RESOLVED.search(text)
    return {
        "loaded": int(match["loaded"]),
        "unchanged": int(match["unchanged"]),
        "rejected": int(match["rejected"]),
        "load_seconds": float(match["seconds"]),
        "writing_seconds": float(match["writing"]),
        "preparing_seconds": float(match["preparing"]),
        "wall_seconds": wall,
        "peak_rss_mb": memory.peak_rss / 1024 / 1024,
        "peak_pss_mb": memory.peak_pss / 1024 / 1024,
        "processes": memory.peak_processes,
        "loader_cpu_seconds": loader_cpu,
        "postgres_cpu_seconds": memory.postgres_cpu,
        "summary": text.strip().splitlines()[-1],
        "references_resolved": int(resolved["count"].replace(",", "")) if resolved else 0,
        "references_seconds": float(resolved["seconds"]) if resolved else 0.0,
        "references_after": int(resolved["after"].replace(",", "")) if resolved else 0,
    }


def table_counts(conninfo: str) -> dict[str, int]:
    with psycopg.connect(conninfo) as conn:
        counts = {}
        for table in ("resource", "resource_version", "sp_token", "sp_reference", "sp_date"):
            row = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
            counts[table] = int(row[0]) if row else 0
        return counts


# -- report -------------------------------------------------------------------------------
def _free_h() -> str:
    try:
        return subprocess.run(["free", "-h"], capture_output=True, text=True, timeout=10).stdout
    except OSError:
        return "(free not available)"


def _cpu_line(label: str, run: dict[str, Any]) -> str:
    if "cpu_bound_rate" not in run:
        return f"- {label}: loader + workers {run['loader_cpu_us']:.0f} µs CPU per resource."
    return (
        f"- {label}: loader + workers {run['loader_cpu_us']:.0f} µs CPU per resource, "
        f"PostgreSQL {run['postgres_cpu_us']:.0f} µs: CPU-bound ceiling "
        f"{run['cpu_bound_rate']:,.0f}/s on this machine's cores if nothing else ran."
    )


def _bound(run: dict[str, Any]) -> str:
    writing, preparing = run["writing_seconds"], run["preparing_seconds"]
    share = writing / run["load_seconds"] * 100
    side = (
        "PostgreSQL (COPY of the resources and their index rows, merge) is the bound: the "
        "workers were ahead"
        if writing >= preparing
        else "validation and indexing in the workers is the bound: the writer waited for them"
    )
    return (
        f"the writer spent {writing:.1f} s writing chunks ({share:.0f}% of the load; COPY and "
        f"merge statements, PostgreSQL's time) and {preparing:.1f} s waiting for prepared "
        f"chunks: {side}"
    )


def _markdown(results: dict[str, Any]) -> str:
    first, again, floor = results["first"], results["reload"], results["floor"]
    machine = results["machine"]
    met_rate = first["rate_load"] >= TARGET_RATE
    met_rss = first["peak_rss_mb"] < TARGET_RSS_MB
    rows = [
        ("plain COPY into (id text, content jsonb) — floor", floor["rate"], "—", "—"),
        ("`maillage load`, fresh database (validate + index)", first["rate_load"],
         f"{first['rate_wall']:,.0f}", f"{first['peak_rss_mb']:.0f} / {first['peak_pss_mb']:.0f}"),
        ("`maillage load` again, all unchanged", again["rate_load"],
         f"{again['rate_wall']:,.0f}", f"{again['peak_rss_mb']:.0f} / {again['peak_pss_mb']:.0f}"),
    ]  # fmt: skip
    table = "\n".join(
        f"| {label} | {rate:,.0f} | {wall} | {memory} |" for label, rate, wall, memory in rows
    )
    load = ", ".join(f"{value:.2f}" for value in results["load_average_before"])
    counts = ", ".join(f"{table} {count:,}" for table, count in results["counts"].items())
    load_after = ", ".join(f"{value:.2f}" for value in results["load_average_after"])
    profile = (
        f"\npy-spy of the first load (loader and its workers, all samples together):\n\n"
        f"```\n{results['profile']}\n```\n"
        if results.get("profile")
        else ""
    )
    command = (
        f".venv/bin/python -m bench.bulk_load --resources {results['target']}"
        f" --index-build {results['index_build']}"
        + (" --targets-last" if results["targets_last"] else "")
    )
    return f"""## Bulk load (`maillage load`)

Command: `{command}`
({results["resources"]:,} resources: the Synthea 10-patient export replicated
{results["copies"]}× with new ids; NDJSON, one file per type).

| run | resources/s | resources/s incl. start-up | peak RSS / PSS MB (loader + workers) |
|---|---:|---:|---:|
{table}

- Loader / floor: **{first["rate_load"] / floor["rate"]:.2f}** of plain COPY's rate
  ({floor["rate"] / first["rate_load"]:.1f}× slower). Target ≥ {TARGET_RATE:,.0f}/s:
  **{"MET" if met_rate else "MISSED"}**; peak RSS < {TARGET_RSS_MB:.0f} MB:
  **{"MET" if met_rss else "MISSED"}** (RSS summed over processes counts the pages
  forked workers share; PSS counts them once).
- "resources/s" is the loader's own clock (from reading the first line to the last
  commit); "incl. start-up" adds Python start, imports and loading the FHIR definitions
  ({first["wall_seconds"] - first["load_seconds"]:.1f} s).
{_cpu_line("Load", first)}
{_cpu_line("Reload", again)}
- What bounds the load: {_bound(first)}.
- What bounds the reload: {_bound(again)}.
- Conditional references (`Type?identifier=…`, each copy naming its own practitioners,
  organisations and locations) resolved by the loader: {first["references_resolved"]:,};
  {first["references_after"]:,} of them after the chunks were written
  ({first["references_seconds"]:.1f} s, in the load's time), the others as their chunk was
  prepared (their targets, read first, were stored by then).
- Load average before the run: {load}; after: {load_after} (other work on the machine
  takes CPU from the loader and PostgreSQL: rates vary with it, CPU per resource much less).
- Rows written: {counts}. Reload: {again["unchanged"]:,} unchanged,
  {again["loaded"]} new versions.

How a load spends its time (profiled while tuning: py-spy on the loader and its
workers, CPU time of the PostgreSQL backend per phase; µs of CPU per resource):

- Workers (forked after the definitions and validation rules are loaded, so they share
  those pages): parse ≈ 7, validation ≈ 25 (`maillage.fhir.validation`), index
  extraction ≈ 50 (it was ≈ 156: per-type parameter plan that skips parameters whose
  first path element is absent, cached per set of top-level keys; FHIRPath steps
  compiled to closures; cached token hashes, date ranges and normalised strings), COPY
  text ≈ 14, content hash + meta stamping ≈ 10.
- PostgreSQL session ≈ 100 (the floor's COPY costs ≈ 25): first loads skip the staging
  table (rows COPYed straight into `resource` with rids drawn from its identity
  sequence) — resource rows ≈ 25, `sp_reference` ≈ 25, `sp_token` ≈ 17, `sp_date` ≈ 12,
  the rest ≈ 20; checkpoints, WAL writer and autovacuum add the rest of the PostgreSQL
  figure above. Reloads go through the staging table and the merge; the staging tables
  are ANALYZEd per chunk, otherwise the planner hashes the whole `resource` table for
  every chunk (103 ms instead of 5 ms per chunk at 100,000 resources: quadratic).
- The single writing session is the serial part, so workers run at nice 5 and chunks
  commit with `synchronous_commit = off` (one synchronous commit at the end makes the
  whole load durable before the summary is printed).

Machine: nproc {machine.get("nproc")}, {machine.get("cpu")}, Python {machine.get("python")},
PostgreSQL {machine.get("postgresql")} (same machine), run {machine.get("date")}.

```
$ nproc
{machine.get("nproc")}
$ free -h
{results["free"].rstrip()}
```
{profile}"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--resources", type=int, default=100_000)
    parser.add_argument("--profile", action="store_true", help="py-spy the first load")
    parser.add_argument(
        "--index-build",
        choices=("auto", "during", "after"),
        default="auto",
        help="passed to `maillage load` (after: the big first load's path, indexes set aside)",
    )
    parser.add_argument(
        "--targets-last",
        action="store_true",
        help="give the files one by one, the referenced types last (references resolved "
        "after the load)",
    )
    args = parser.parse_args(argv)
    if not 1_000 <= args.resources <= 2_000_000:
        print("--resources must be between 1,000 and 2,000,000", file=sys.stderr)
        return 2
    folder = Path(tempfile.mkdtemp(prefix="bulk-", dir="/tmp"))
    try:
        print(f"building {args.resources:,} resources in {folder} ...")
        started = time.perf_counter()
        count, copies = build_dataset(folder, args.resources)
        print(f"  {count:,} resources in {time.perf_counter() - started:.1f} s")
        load_before = os.getloadavg()
        with postgres_server() as server, fresh_database(server, "bulk") as conninfo:
            machine = machine_description(conninfo)
            copied, elapsed = copy_floor(conninfo, folder)
            floor = {"resources": copied, "seconds": elapsed, "rate": copied / elapsed}
            print(f"floor: plain COPY {floor['rate']:,.0f} resources/s ({elapsed:.1f} s)")
            profile_to = OUT_DIR / "profile-bulk-load.txt" if args.profile else None
            first = run_loader(
                conninfo,
                folder,
                profile_to,
                ["--index-build", args.index_build],
                targets_last=args.targets_last,
            )
            counts = table_counts(conninfo)
            again = run_loader(conninfo, folder, None)
        for run in (first, again):
            done = run["loaded"] + run["unchanged"]
            run["rate_load"] = done / run["load_seconds"]
            run["rate_wall"] = done / run["wall_seconds"]
            run["loader_cpu_us"] = run["loader_cpu_seconds"] / done * 1e6
            if run["postgres_cpu_seconds"] is not None:
                run["postgres_cpu_us"] = run["postgres_cpu_seconds"] / done * 1e6
                cpu_us = run["loader_cpu_us"] + run["postgres_cpu_us"]
                run["cpu_bound_rate"] = (os.cpu_count() or 1) / cpu_us * 1e6
        print(f"loader:  {first['rate_load']:,.0f} resources/s "
              f"({first['rate_wall']:,.0f}/s incl. start-up), ratio to COPY "
              f"{first['rate_load'] / floor['rate']:.2f}, peak RSS {first['peak_rss_mb']:.0f} MB "
              f"(PSS {first['peak_pss_mb']:.0f} MB, {first['processes']} processes)")  # fmt: skip
        print(f"reload:  {again['rate_load']:,.0f} resources/s, {again['unchanged']:,} unchanged, "
              f"{again['loaded']} written")  # fmt: skip
        print(f"  load: {first['references_resolved']:,} conditional references resolved,"
              f" {first['references_after']:,} of them after the load in"
              f" {first['references_seconds']:.1f} s (in the load's time)")  # fmt: skip
        for label, run in (("load", first), ("reload", again)):
            print(f"  {label}: {_bound(run)}")
            if "cpu_bound_rate" in run:
                print(f"  {label} CPU per resource: loader + workers {run['loader_cpu_us']:.0f} us,"
                      f" PostgreSQL {run['postgres_cpu_us']:.0f} us -> CPU-bound ceiling on"
                      f" {os.cpu_count()} idle cores {run['cpu_bound_rate']:,.0f}/s")  # fmt: skip
        if first["loaded"] != count or first["rejected"] or again["loaded"]:
            raise BenchError(f"unexpected counts: first {first}, reload {again}")
        results = {
            "target": args.resources,
            "index_build": args.index_build,
            "targets_last": args.targets_last,
            "resources": count,
            "copies": copies,
            "floor": floor,
            "first": first,
            "reload": again,
            "counts": counts,
            "machine": machine,
            "free": _free_h(),
            "load_average_before": load_before,
            "load_average_after": os.getloadavg(),
            "profile": profile_summary([profile_to], top=20) if profile_to else None,
        }
        OUT_DIR.mkdir(parents=True, exist_ok=True)
        (OUT_DIR / "bulk_load.json").write_text(json.dumps(results, indent=2))
        (OUT_DIR / "bulk_load.md").write_text(_markdown(results))
        print(f"  results -> {OUT_DIR / 'bulk_load.md'}")
        return 0
    except BenchError as error:
        return fail(error)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
