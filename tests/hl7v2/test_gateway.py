"""Store, then ACK, over real MLLP sockets: the row is committed when AA arrives, a
repeated message is AA'd again and processed once, rejections are kept with the reason,
and the answer is never AA when the message could not be stored."""

from __future__ import annotations

import subprocess
import threading
import uuid
from pathlib import Path

import psycopg
import pytest
from hl7.client import MLLPClient

from maillage.hl7v2 import parsing
from maillage.hl7v2.processing import (
    A08_REASON,
    PROCESSED,
    HandlerRegistry,
    MessageContext,
    Outcome,
    default_handlers,
)
from tests.hl7v2.conftest import (
    MllpConnection,
    RunningGateway,
    ack_code,
    gateway_settings,
    parse_ack,
    rows,
    wait_for,
)
from tests.hl7v2.messages import message


def test_aa_comes_after_the_row_is_committed(gateway: RunningGateway) -> None:
    with MllpConnection(gateway.port) as client:
        for number in range(20):
            ack = client.exchange(message(control_id=f"C{number:04d}", ipp=f"IPP{number}"))
            assert ack_code(ack) == "AA"
            assert str(parse_ack(ack).extract_field("MSA", 1, 2)) == f"C{number:04d}"
            # read through another connection: the row is already there
            stored = rows(
                gateway.conninfo,
                "SELECT status FROM hl7_message WHERE control_id = %s",
                (f"C{number:04d}",),
            )
            assert len(stored) == 1


def test_python_hl7_client_gets_an_aa(gateway: RunningGateway) -> None:
    with MLLPClient("127.0.0.1", gateway.port, encoding="iso-8859-15") as client:
        ack = client.send_message(message(control_id="PYHL7-1"))
    assert ack_code(ack.strip(b"\x0b\x1c\r")) == "AA"


def test_a_repeated_message_is_acked_again_and_processed_once(hl7_database: str) -> None:
    seen: list[int] = []

    async def count(context: MessageContext) -> Outcome:
        seen.append(context.id)
        return PROCESSED

    handlers = default_handlers()
    handlers.register("ADT", "A28", count)
    running = RunningGateway(hl7_database, handlers=handlers).start()
    try:
        with MllpConnection(running.port) as client:
            for _ in range(3):
                assert ack_code(client.exchange(message(control_id="DUP-1"))) == "AA"
        # from another connection too
        with MllpConnection(running.port) as client:
            assert ack_code(client.exchange(message(control_id="DUP-1"))) == "AA"
        wait_for(lambda: rows(hl7_database)[0][1] == "processed", what="processing")
        assert len(rows(hl7_database)) == 1
        assert len(seen) == 1
    finally:
        running.stop()


def test_a08_is_acked_and_ignored_with_the_reason(gateway: RunningGateway) -> None:
    with MllpConnection(gateway.port) as client:
        assert ack_code(client.exchange(message("adt_a08", control_id="A08-1"))) == "AA"
        assert ack_code(client.exchange(message("oru_r01", control_id="ORU-1"))) == "AA"
        unknown = message(control_id="Z42-1").replace(b"ADT^A28^ADT_A05", b"ADT^Z42")
        assert ack_code(client.exchange(unknown)) == "AA"
    wait_for(lambda: all(row[1] == "ignored" for row in rows(gateway.conninfo)), what="ignored")
    notes = {row[2]: row[4] for row in rows(gateway.conninfo)}
    assert notes["A08-1"] == A08_REASON == "A08 is not used in France (IHE PAM FR)"
    assert "ADT^Z42 is not handled" in notes["Z42-1"]
    # ORU conversion comes later: today an unhandled type, ignored with its reason
    assert "ORU^R01 is not handled" in notes["ORU-1"]


def test_rejections_are_answered_and_kept_with_the_reason(gateway: RunningGateway) -> None:
    with MllpConnection(gateway.port) as client:
        no_msh = client.exchange(b"PID|1||IPP1001\r")
        unknown_site = client.exchange(
            message().replace(b"CH_MAILLEBOURG|MAILLAGE", b"CH_X|MAILLAGE")
        )
        no_control_id = client.exchange(message(control_id=""))
    assert ack_code(no_msh) == "AR"
    assert ack_code(unknown_site) == "AR"
    assert ack_code(no_control_id) == "AE"
    assert str(parse_ack(no_control_id).extract_field("ERR", 1, 3, 1, 1)) == "101"
    stored = rows(
        gateway.conninfo, "SELECT status, error, length(raw) FROM hl7_message ORDER BY id"
    )
    assert [row[0] for row in stored] == ["error"] * 3
    assert (
        "MSH" in stored[0][1]
        and "not a configured site" in stored[1][1]
        and "MSH-10" in stored[2][1]
    )
    assert all(row[2] > 0 for row in stored)
    # after all that, the connection still works
    with MllpConnection(gateway.port) as client:
        assert ack_code(client.exchange(message(control_id="OK-1"))) == "AA"


def test_charsets_end_to_end(hl7_database: str) -> None:
    families: dict[str, str] = {}

    async def record(context: MessageContext) -> Outcome:
        families[parsing.value(context.message, "MSH", 10)] = parsing.value(
            context.message, "PID", 5, 1
        )
        return PROCESSED

    handlers = HandlerRegistry(fallback=record)
    running = RunningGateway(hl7_database, handlers=handlers).start()
    try:
        with MllpConnection(running.port) as client:
            latin = message(control_id="L-1", charset="8859/15", family="Quenouillé€")
            utf8 = message(control_id="U-1", charset="UNICODE UTF-8", family="Quenouillé€")
            default = message(control_id="D-1", charset="", family="Quenouillé€")
            bad = message(control_id="B-1", charset="UNICODE UTF-8").replace("é".encode(), b"\xe9")
            assert [ack_code(client.exchange(raw)) for raw in (latin, utf8, default, bad)] == [
                "AA",
                "AA",
                "AA",
                "AE",
            ]
        wait_for(lambda: len(families) == 3, what="three processed")
        assert families == {"L-1": "Quenouillé€", "U-1": "Quenouillé€", "D-1": "Quenouillé€"}
    finally:
        running.stop()


def test_a_dead_database_never_gets_an_aa(hl7_database: str) -> None:
    dead = psycopg.conninfo.make_conninfo(hl7_database, port=_free_port(), connect_timeout=1)
    running = RunningGateway(
        dead, settings=gateway_settings(hl7_store_timeout_s=0.5), open_wait=False
    ).start()
    try:
        with MllpConnection(running.port) as client:
            for number in range(3):
                ack = client.exchange(message(control_id=f"DEAD-{number}"))
                assert ack_code(ack) == "AR"
                assert str(parse_ack(ack).extract_field("ERR", 1, 3, 1, 1)) == "207"
    finally:
        running.stop()


def test_database_unavailable_then_back(server_url: str, database_url: str) -> None:
    """A database that refuses connections for a while: AR meanwhile, AA and processing
    afterwards, by themselves."""
    name = f"maillage_hl7_outage_{uuid.uuid4().hex[:8]}"
    admin = psycopg.connect(server_url, autocommit=True)
    admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.execute(f'CREATE DATABASE "{name}"')
    url = psycopg.conninfo.make_conninfo(database_url, dbname=name)
    from maillage.storage import upgrade

    upgrade(url)
    running = RunningGateway(url, settings=gateway_settings(hl7_store_timeout_s=1.0)).start()
    try:
        with MllpConnection(running.port) as client:
            assert ack_code(client.exchange(message(control_id="UP-1"))) == "AA"
            admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
            admin.execute(
                "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity WHERE datname = %s",
                (name,),
            )
            codes = [ack_code(client.exchange(message(control_id=f"DOWN-{n}"))) for n in range(3)]
            assert "AA" not in codes and set(codes) == {"AR"}
            admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
            # the sender resends: once the pool has reconnected, AA
            wait_for(
                lambda: ack_code(client.exchange(message(control_id="DOWN-0"))) == "AA",
                timeout=20,
                what="AA after the outage",
            )
        wait_for(
            lambda: {row[1] for row in rows(url)} == {"ignored"} and len(rows(url)) == 2,
            timeout=20,
            what="processing resumed",
        )
    finally:
        running.stop()
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


def test_tls(hl7_database: str, tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    import ssl

    settings = gateway_settings(hl7_tls_cert=cert, hl7_tls_key=key)
    running = RunningGateway(hl7_database, settings=settings).start()
    try:
        context = ssl.create_default_context(cafile=str(cert))
        with MllpConnection(running.port, tls=context) as client:
            assert ack_code(client.exchange(message(control_id="TLS-1"))) == "AA"
        # plain MLLP on a TLS port gets nothing stored and no AA
        with MllpConnection(running.port) as client:
            client.send_frame(message(control_id="PLAIN-1"))
            with pytest.raises((ConnectionError, OSError)):
                client.read_ack()
        assert [row[2] for row in rows(hl7_database)] == ["TLS-1"]
    finally:
        running.stop()


def test_a_site_with_its_own_port(hl7_database: str) -> None:
    from dataclasses import replace

    from maillage.demo.senders import demo_senders

    own = _free_port()
    sites = tuple(
        replace(site, port=own) if site.code == "CHA" else site for site in demo_senders()
    )
    running = RunningGateway(hl7_database, sites=sites).start()
    try:
        assert running.gateway is not None and running.gateway.server is not None
        assert running.gateway.server.bound[own] == "CHA"
        with MllpConnection(own) as client:
            assert ack_code(client.exchange(message(site="CHA", control_id="P-1"))) == "AA"
            assert ack_code(client.exchange(message(site="CHM", control_id="P-2"))) == "AR"
        with MllpConnection(running.port) as client:  # the main port takes every site
            assert ack_code(client.exchange(message(site="CHA", control_id="P-3"))) == "AA"
    finally:
        running.stop()


def test_a_taken_port_is_a_clear_error(hl7_database: str) -> None:
    from maillage.errors import ConfigurationError

    first = RunningGateway(hl7_database).start()
    try:
        second = RunningGateway(hl7_database, settings=gateway_settings(hl7_port=first.port))
        try:
            with pytest.raises(ConfigurationError, match="cannot listen for MLLP"):
                second.start()
        finally:
            second.stop()
    finally:
        first.stop()


def test_concurrent_connections_each_get_their_own_acks(gateway: RunningGateway) -> None:
    failures: list[str] = []

    def sender(number: int) -> None:
        with MllpConnection(gateway.port) as client:
            for k in range(25):
                control = f"T{number}-{k}"
                ack = client.exchange(message(control_id=control, ipp=f"IPP{number}"))
                if (
                    ack_code(ack) != "AA"
                    or str(parse_ack(ack).extract_field("MSA", 1, 2)) != control
                ):
                    failures.append(control)

    threads = [threading.Thread(target=sender, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not failures
    assert len(rows(gateway.conninfo)) == 100


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
