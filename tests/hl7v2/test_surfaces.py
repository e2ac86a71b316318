"""The surfaces: `maillage serve` (one MLLP listener whatever the number of HTTP workers),
`maillage gateway`, `maillage hl7 messages|replay`, and the per-site counters in /metrics."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psycopg
from typer.testing import CliRunner

from maillage.cli.main import app
from tests.conftest import RunningHub, free_port
from tests.hl7v2.conftest import MllpConnection, ack_code, rows, wait_for
from tests.hl7v2.messages import FAMILY, GIVEN, message


def _environment(database: str, hl7_port: int) -> dict[str, str]:
    return {
        **os.environ,
        "MAILLAGE_DATABASE_URL": database,
        "MAILLAGE_HL7_PORT": str(hl7_port),
        "MAILLAGE_HL7_POLL_INTERVAL_S": "0.1",
        "MAILLAGE_LOG_LEVEL": "INFO",
    }


def _wait_listening(port: int, process: subprocess.Popen[bytes], seconds: float = 90) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert process.poll() is None, f"exited early with {process.returncode}"
        try:
            with MllpConnection(port):
                return
        except OSError:
            time.sleep(0.2)
    raise AssertionError("the MLLP port never opened")


def _stop(process: subprocess.Popen[bytes]) -> int:
    process.send_signal(signal.SIGTERM)
    return process.wait(timeout=60)


def test_serve_with_three_workers_runs_one_listener_and_two_processors(
    hl7_database: str, tmp_path: Path
) -> None:
    http_port, hl7_port = free_port(), free_port()
    while hl7_port == http_port:
        hl7_port = free_port()
    errors = (tmp_path / "stderr.log").open("wb")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "maillage",
            "serve",
            "--no-demo",
            "--workers",
            "3",
            "--port",
            str(http_port),
        ],
        env=_environment(hl7_database, hl7_port),
        stdout=subprocess.DEVNULL,
        stderr=errors,
    )

    def log() -> str:
        return (tmp_path / "stderr.log").read_text(errors="replace")

    try:
        _wait_listening(hl7_port, process)
        with MllpConnection(hl7_port) as client:
            assert ack_code(client.exchange(message(control_id="SERVE-1"))) == "AA"
        # an A28: the identity feed writes the Patient (through the patient index)
        wait_for(lambda: rows(hl7_database)[0][1] == "processed", timeout=30, what="processed")
        # a second listener on the same port would have failed its worker, and the
        # supervisor would have stopped the hub
        time.sleep(1.0)
        assert process.poll() is None
        wait_for(lambda: _healthy(http_port), timeout=60, what="HTTP")
        metrics = httpx.get(f"http://127.0.0.1:{http_port}/metrics", timeout=10).text
        assert 'maillage_hl7_received_messages{site="CHM"} 1.0' in metrics
        # the workers that do not listen convert: each with its tasks (one may start
        # after the message was processed by the other)
        started = "hl7 processor: 2 tasks converting stored messages"
        wait_for(lambda: log().count(started) == 2, timeout=60, what="both processors")
    finally:
        code = _stop(process)
        errors.close()
    written = log()
    assert code == 0 or code == 128 + signal.SIGTERM, written
    for secret in (FAMILY, GIVEN, "IPP1001"):
        assert secret not in written
    assert written.count("MLLP listening on") == 1, written


def _healthy(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def test_gateway_runs_alone(hl7_database: str) -> None:
    hl7_port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "maillage", "gateway"],
        env=_environment(hl7_database, hl7_port),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_listening(hl7_port, process)
        with MllpConnection(hl7_port) as client:
            assert ack_code(client.exchange(message("adt_a08", control_id="ALONE-1"))) == "AA"
        wait_for(lambda: rows(hl7_database)[0][1] == "ignored", timeout=30, what="processed")
    finally:
        assert _stop(process) == 0


def _children(pid: int) -> set[int]:
    found: set[int] = set()
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/children") as listing:
            found.update(int(child) for child in listing.read().split())
    return found


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _processors(process: subprocess.Popen[bytes], count: int) -> set[int]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        children = {pid for pid in _children(process.pid) if _alive(pid)}
        # the processors are spawned (spawn_main); spawn's resource tracker is a child
        # too, and a child just forked still shows its parent's command line
        processors = set()
        for pid in children:
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
                    if b"spawn_main" in cmdline.read():
                        processors.add(pid)
            except FileNotFoundError:  # ended meanwhile
                continue
        if len(processors) >= count:
            return processors
        time.sleep(0.2)
    raise AssertionError(f"{count} processor processes never started")


def test_gateway_with_two_processes_shares_the_work_and_supervises(hl7_database: str) -> None:
    hl7_port = free_port()
    command = [sys.executable, "-m", "maillage", "gateway", "--processes", "2"]
    process = subprocess.Popen(
        command,
        env=_environment(hl7_database, hl7_port),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        _wait_listening(hl7_port, process)
        (helper,) = _processors(process, 1)
        with MllpConnection(hl7_port) as client:
            for number in range(40):
                control = f"PAIR-{number}"
                payload = message("adt_a08", control_id=control, ipp=f"IPP{number:04d}")
                assert ack_code(client.exchange(payload)) == "AA"
        wait_for(
            lambda: [row[1] for row in rows(hl7_database)] == ["ignored"] * 40,
            timeout=60,
            what="40 messages processed once each",
        )
        # a processor that dies stops the gateway, with exit code 1
        os.kill(helper, signal.SIGKILL)
        assert process.wait(timeout=30) == 1
        log = process.stderr.read().decode() if process.stderr else ""
        assert "stopping the gateway" in log, log
    finally:
        if process.poll() is None:
            _stop(process)


def test_a_processor_whose_gateway_was_killed_stops_by_itself(hl7_database: str) -> None:
    hl7_port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "maillage", "gateway", "--processes", "2"],
        env=_environment(hl7_database, hl7_port),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    _wait_listening(hl7_port, process)
    (helper,) = _processors(process, 1)
    process.kill()
    process.wait(timeout=30)
    deadline = time.monotonic() + 30
    while _alive(helper) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _alive(helper), "the orphaned processor kept running"


def test_hl7_messages_and_replay(hl7_database: str) -> None:
    with psycopg.connect(hl7_database, autocommit=True) as conn:
        for control, status, error in (
            ("LIST-1", "processed", None),
            ("LIST-2", "dead", "dead after 5 attempts; last error: boom"),
            ("LIST-3", "dead", "dead after 5 attempts; last error: boom"),
        ):
            conn.execute(
                "INSERT INTO hl7_message (site, sender, control_id, idempotency_key,"
                " message_type, trigger_event, patient_key, charset, raw, status, error,"
                " attempts) VALUES ('CHM', 'GAM^CH_MAILLEBOURG', %s, %s, 'ADT', 'A28',"
                " 'CHM:IPP1001', 'iso-8859-15', %s, %s, %s, 5)",
                (control, f"k-{control}", message(control_id=control), status, error),
            )
    env = {"MAILLAGE_DATABASE_URL": hl7_database}
    runner = CliRunner()
    listed = runner.invoke(app, ["hl7", "messages", "--site", "CHM"], env=env)
    assert listed.exit_code == 0, listed.output
    assert "LIST-1" in listed.output and "ADT^A28" in listed.output and "boom" in listed.output
    for secret in (FAMILY, GIVEN, "IPP1001", "19610714"):
        assert secret not in listed.output
    dead = runner.invoke(app, ["hl7", "messages", "--status", "dead", "--limit", "1"], env=env)
    assert dead.output.count("LIST-") == 1 and "LIST-3" in dead.output
    assert runner.invoke(app, ["hl7", "messages", "--status", "bogus"], env=env).exit_code == 2
    assert runner.invoke(app, ["hl7", "replay"], env=env).exit_code == 2

    replayed = runner.invoke(app, ["hl7", "replay", "--id", "2"], env=env)
    assert replayed.exit_code == 0 and "requeued 1" in replayed.output, replayed.output
    replayed = runner.invoke(app, ["hl7", "replay", "--site", "CHM", "--status", "dead"], env=env)
    assert "requeued 1" in replayed.output
    assert [row[1] for row in rows(hl7_database)] == ["processed", "received", "received"]


def test_metrics_export_per_site_counters(hub: RunningHub, hl7_database: str) -> None:
    with psycopg.connect(hl7_database, autocommit=True) as conn:
        for number, (site, status) in enumerate(
            [("CHM", "processed"), ("CHM", "received"), ("CHA", "dead"), (None, "error")]
        ):
            conn.execute(
                "INSERT INTO hl7_message (site, control_id, raw, status, received_at)"
                " VALUES (%s, %s, 'x', %s, now() - interval '42 seconds')",
                (site, f"M-{number}", status),
            )
    time.sleep(1.1)  # past the counters' cache
    text = httpx.get(f"{hub.base_url}/metrics", timeout=10).text
    assert 'maillage_hl7_received_messages{site="CHM"} 2.0' in text
    assert 'maillage_hl7_processed_messages{site="CHM"} 1.0' in text
    assert 'maillage_hl7_waiting_messages{site="CHM"} 1.0' in text
    assert 'maillage_hl7_errored_messages{site="CHA"} 1.0' in text
    assert 'maillage_hl7_errored_messages{site="unknown"} 1.0' in text
    lag = next(
        line
        for line in text.splitlines()
        if line.startswith('maillage_hl7_lag_seconds{site="CHM"}')
    )
    assert 41 < float(lag.split()[-1]) < 120
