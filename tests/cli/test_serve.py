"""`maillage serve` as the IT team runs it: embedded PostgreSQL, health, clean stop."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psutil

from tests.conftest import free_port


def _wait_healthy(url: str, process: subprocess.Popen[bytes], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"maillage serve exited early with {process.returncode}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError("maillage serve did not become healthy in time")


def _postmasters_in(folder: Path) -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter(["name", "cmdline"]):
        cmdline = " ".join(process.info["cmdline"] or [])
        if process.info["name"] == "postgres" and str(folder) in cmdline:
            found.append(process)
    return found


def test_serve_starts_embedded_postgres_and_stops_it_on_sigterm() -> None:
    data_dir = Path(tempfile.mkdtemp(prefix="ms-", dir="/tmp"))
    port = free_port()
    env = {key: value for key, value in os.environ.items() if key != "MAILLAGE_DATABASE_URL"}
    # serve starts the MLLP listener too: on a free port, not 2575 (maybe taken here)
    env["MAILLAGE_HL7_PORT"] = str(free_port())
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "maillage",
            "serve",
            "--no-demo",
            "--port",
            str(port),
            "--data-dir",
            str(data_dir),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_healthy(f"http://127.0.0.1:{port}/health", process, 60)
        metadata = httpx.get(f"http://127.0.0.1:{port}/fhir/metadata")
        assert metadata.json()["fhirVersion"] == "4.0.1"
        assert (data_dir / "pg" / "PG_VERSION").exists()
        assert _postmasters_in(data_dir)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
    deadline = time.monotonic() + 15
    while _postmasters_in(data_dir) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _postmasters_in(data_dir), "the embedded PostgreSQL outlived the hub"
