"""Hundreds of corrupted messages (truncated, wrong separators, bad encoding, fuzzed
bytes; fixed seed): no crash, every one answered AA (stored), AE or AR (kept as an error
row); nothing dropped silently."""

from __future__ import annotations

import random
import socket
import time

from tests.hl7v2.conftest import MllpConnection, RunningGateway, ack_code, parse_ack, rows, wait_for
from tests.hl7v2.messages import message

FRAMING = {0x0B, 0x1C}


def _printable(text: str) -> str:
    return "".join(char for char in text if char >= " ")


def _corrupt(rng: random.Random, number: int) -> bytes:
    base = message(
        rng.choice(["adt_a28", "adt_a08", "oru_r01"]),
        control_id=f"FZ{number:05d}",
        ipp=f"IPP{number % 17}",
        site=rng.choice(["CHM", "CHA", "CHL", "CHB", "EPS"]),
        charset=rng.choice(["8859/15", "UNICODE UTF-8", ""]),
    )
    kind = number % 5
    if kind == 0:  # truncated anywhere
        raw = base[: rng.randrange(1, len(base))]
    elif kind == 1:  # wrong separators
        chars = bytearray(base[3:8])
        chars[rng.randrange(len(chars))] = rng.choice(b"A1 |^~\\&#")
        raw = base[:3] + bytes(chars) + base[8:]
    elif kind == 2:  # bad encoding: high bytes in a UTF-8 message
        raw = base.replace(b"8859/15", b"UNICODE UTF-8").replace(b"Essais", b"Ess\xe9\xff\xfeais")
    elif kind == 3:  # fuzzed bytes
        mutated = bytearray(base)
        for _ in range(rng.randrange(1, 12)):
            mutated[rng.randrange(len(mutated))] = rng.randrange(256)
        raw = bytes(mutated)
    else:  # random bytes, sometimes behind an MSH
        noise = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 400)))
        raw = (b"MSH|^~\\&|" + noise) if rng.random() < 0.5 else noise
    cleaned = bytes(byte for byte in raw if byte not in FRAMING)
    return cleaned or b"X"


def test_hundreds_of_corrupted_messages(gateway: RunningGateway) -> None:
    rng = random.Random(20260115)
    answers: list[tuple[str, str]] = []
    with MllpConnection(gateway.port) as client:
        for number in range(500):
            ack = client.exchange(_corrupt(rng, number))
            code = ack_code(ack)
            answers.append((code, str(parse_ack(ack).extract_field("MSA", 1, 2))))
        # the connection (and the gateway) still serve a good message
        assert ack_code(client.exchange(message(control_id="AFTER-FUZZ"))) == "AA"
    codes = [code for code, _ in answers]
    assert set(codes) <= {"AA", "AE", "AR"}
    assert codes.count("AA") > 10 and codes.count("AR") > 50 and codes.count("AE") > 10
    stored = rows(gateway.conninfo, "SELECT status, control_id, error FROM hl7_message")
    errors = [row for row in stored if row[0] == "error"]
    assert len(errors) == codes.count("AE") + codes.count("AR")
    assert all(row[2] for row in errors), "an error row without its reason"
    accepted = {_printable(row[1] or "") for row in stored if row[0] != "error"}
    missing = [
        control for code, control in answers if code == "AA" and _printable(control) not in accepted
    ]
    assert not missing
    # every accepted one goes through processing (ignored today, or dead if unreadable)
    wait_for(
        lambda: not rows(gateway.conninfo, "SELECT 1 FROM hl7_message WHERE status = 'received'"),
        timeout=60,
        what="processing of the fuzzed messages",
    )


def test_random_bytes_with_framing_characters_do_not_stop_the_listener(
    gateway: RunningGateway,
) -> None:
    rng = random.Random(99)
    noise = bytes(rng.randrange(256) for _ in range(20_000))
    with MllpConnection(gateway.port) as client:
        client.send_bytes(noise)
        client.send_frame(message(control_id="AFTER-NOISE"))
        deadline = time.monotonic() + 20
        while True:
            assert time.monotonic() < deadline
            ack = client.read_ack()
            if str(parse_ack(ack).extract_field("MSA", 1, 2)) == "AFTER-NOISE":
                assert ack_code(ack) == "AA"
                break
    stored = rows(gateway.conninfo, "SELECT status, length(raw) FROM hl7_message")
    assert sum(1 for row in stored if row[0] == "error") >= 1


def test_a_frame_cut_by_the_connection_is_kept(gateway: RunningGateway) -> None:
    with socket.create_connection(("127.0.0.1", gateway.port)) as sock:
        sock.sendall(b"\x0b" + message(control_id="CUT-1")[:60])
    wait_for(lambda: bool(rows(gateway.conninfo)), what="the truncated frame")
    _, status, _, error, _ = rows(gateway.conninfo)[0]
    assert status == "error" and "truncated MLLP frame: connection closed" in error


def test_a_stalled_frame_is_answered_and_kept(gateway: RunningGateway) -> None:
    with MllpConnection(gateway.port) as client:
        client.send_bytes(b"\x0b" + message(control_id="STALL-1")[:80])
        ack = client.read_ack()  # after hl7_partial_timeout_s (1 s in these tests)
        assert ack_code(ack) == "AR"
        assert ack_code(client.exchange(message(control_id="STALL-2"))) == "AA"
    stored = rows(gateway.conninfo)
    assert stored[0][1] == "error" and "no end block within 1 s" in stored[0][3]
    assert stored[1][2] == "STALL-2"
