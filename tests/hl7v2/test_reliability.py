"""SIGKILL during a burst, then a restart: every message ACKed is stored once and
processed exactly once (its status and its attempt count commit together)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

from tests.conftest import free_port
from tests.hl7v2.conftest import MllpConnection, ack_code, rows, wait_for
from tests.hl7v2.messages import message

TOTAL = 1500


def _start(database: str, port: int) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "MAILLAGE_DATABASE_URL": database,
        "MAILLAGE_HL7_PORT": str(port),
        "MAILLAGE_HL7_POLL_INTERVAL_S": "0.05",
        "MAILLAGE_LOG_LEVEL": "WARNING",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "maillage", "gateway"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert process.poll() is None, "the gateway exited"
        try:
            with MllpConnection(port):
                return process
        except OSError:
            time.sleep(0.1)
    raise AssertionError("the gateway did not listen")


def _send(port: int, numbers: list[int], acked: set[int]) -> None:
    try:
        with MllpConnection(port) as client:
            for number in numbers:
                # A08s (acknowledged, recorded as ignored): what is tested is the store
                # and its ACKs under a kill, not a conversion's speed
                raw = message("adt_a08", control_id=f"K{number:05d}", ipp=f"IPP{number % 40}")
                if ack_code(client.exchange(raw)) == "AA":
                    acked.add(number)
    except (ConnectionError, OSError):
        pass  # killed under us: the messages not ACKed are resent after the restart


def test_sigkill_during_a_burst_loses_and_doubles_nothing(hl7_database: str) -> None:
    port = free_port()
    acked: set[int] = set()
    process = _start(hl7_database, port)
    senders = [
        threading.Thread(target=_send, args=(port, list(range(n, TOTAL, 2)), acked))
        for n in range(2)
    ]
    for sender in senders:
        sender.start()
    wait_for(lambda: len(acked) >= TOTAL // 3, timeout=60, what="a third ACKed")
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=10)
    for sender in senders:
        sender.join(timeout=30)
    assert TOTAL // 3 <= len(acked) < TOTAL
    stored_before = {row[2] for row in rows(hl7_database)}
    assert {f"K{n:05d}" for n in acked} <= stored_before, "an ACKed message was not stored"

    process = _start(hl7_database, port)
    try:
        # the senders resend what was not ACKed (the one in flight may have been stored)
        missing = sorted(set(range(TOTAL)) - acked)
        _send(port, missing, acked)
        assert len(acked) == TOTAL
        wait_for(
            lambda: not rows(hl7_database, "SELECT 1 FROM hl7_message WHERE status = 'received'"),
            timeout=60,
            what="processing after the restart",
        )
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
    stored = rows(hl7_database, "SELECT control_id, status, attempts FROM hl7_message")
    assert len(stored) == TOTAL, "a message was stored twice or lost"
    assert {row[0] for row in stored} == {f"K{n:05d}" for n in range(TOTAL)}
    assert {row[1] for row in stored} == {"ignored"}
    assert {row[2] for row in stored} == {1}, "a message was processed more than once"
