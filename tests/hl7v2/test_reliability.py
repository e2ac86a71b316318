"""SIGKILL during a burst of 10,000 messages, then a restart: every message ACKed is
stored once and processed exactly once (its effects, its status and its attempt count
commit together): one Patient per identity message, none lost, none doubled."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter

from tests.conftest import free_port
from tests.hl7v2.conftest import MllpConnection, ack_code, rows, wait_for
from tests.hl7v2.messages import message

TOTAL = 10_000
SENDERS = 4
# One message in IDENTITY_EVERY creates an identity (ADT^A28, its own IPP); the others are
# A08s (acknowledged and recorded as ignored): the burst stays fast, the A28s show effects.
IDENTITY_EVERY = 5
_LETTERS = "bcdfghjklmnprstvz"


def _family(number: int) -> str:
    """A distinct synthetic family name per number (letters only, as names are)."""
    letters = []
    while True:
        number, digit = divmod(number, len(_LETTERS))
        letters.append(_LETTERS[digit] + "aeiou"[digit % 5])
        if number == 0:
            return "Qu" + "".join(letters)


def _raw(number: int) -> bytes:
    control_id = f"K{number:05d}"
    if number % IDENTITY_EVERY:
        return message("adt_a08", control_id=control_id, ipp=f"IPP{number % 40}")
    raw = message("adt_a28", control_id=control_id, ipp=f"KIPP{number:05d}", family=_family(number))
    # distinct birth dates too: no two of these identities are homonyms
    birth = f"19{40 + number % 60:02d}{1 + number % 12:02d}{1 + number % 28:02d}"
    return raw.replace(b"|19610714|", f"|{birth}|".encode())


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
                if ack_code(client.exchange(_raw(number))) == "AA":
                    acked.add(number)
    except (ConnectionError, OSError):
        pass  # killed under us: the messages not ACKed are resent after the restart


def test_sigkill_during_a_burst_loses_and_doubles_nothing(
    clean_database: str, hl7_database: str
) -> None:
    port = free_port()
    acked: set[int] = set()
    process = _start(hl7_database, port)
    senders = [
        threading.Thread(target=_send, args=(port, list(range(n, TOTAL, SENDERS)), acked))
        for n in range(SENDERS)
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
            timeout=240,
            what="processing after the restart",
        )
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
    stored = rows(hl7_database, "SELECT control_id, status, attempts FROM hl7_message")
    assert len(stored) == TOTAL, "a message was stored twice or lost"
    assert {row[0] for row in stored} == {f"K{n:05d}" for n in range(TOTAL)}
    statuses = {row[0]: row[1] for row in stored}
    assert {statuses[f"K{n:05d}"] for n in range(0, TOTAL, IDENTITY_EVERY)} == {"processed"}
    assert {s for c, s in statuses.items() if int(c[1:]) % IDENTITY_EVERY} == {"ignored"}
    assert {row[2] for row in stored} == {1}, "a message was processed more than once"
    # The effects: each identity message made exactly one source Patient with its IPP.
    ipps = rows(
        hl7_database,
        "SELECT i->>'value' FROM resource r, jsonb_array_elements(r.content->'identifier') i"
        " WHERE r.resource_type = 'Patient' AND NOT r.deleted AND i->>'value' LIKE 'KIPP%%'",
    )
    made = Counter(row[0] for row in ipps)
    assert set(made) == {f"KIPP{n:05d}" for n in range(0, TOTAL, IDENTITY_EVERY)}
    assert set(made.values()) == {1}, "an identity was created twice"
