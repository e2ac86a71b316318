"""The gateway on a real port (its own event loop in a thread), a real MLLP client, and
the message store read back with plain SQL."""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from typing import Any, Self

import hl7
import psycopg
import pytest

from maillage.demo.senders import demo_senders
from maillage.fhir.repository import FhirStore
from maillage.hl7v2.processing import HandlerRegistry
from maillage.hl7v2.service import Gateway, build_gateway
from maillage.hl7v2.sites import SiteConfig, SiteRegistry
from maillage.settings import Settings
from maillage.storage import Database

SB, EB, CR = b"\x0b", b"\x1c", b"\r"


def gateway_settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "hl7_port": 0,
        "hl7_poll_interval_s": 0.05,
        "hl7_retry_base_s": 0.05,
        "hl7_retry_max_s": 0.2,
        "hl7_max_attempts": 3,
        "hl7_store_timeout_s": 10.0,  # a slow disk on a loaded runner is not an outage
        "hl7_partial_timeout_s": 1.0,
        "hl7_workers": 2,
        **overrides,
    }
    return Settings(**values)


class RunningGateway:
    """A Gateway listening on a free port, run by an event loop in a thread."""

    def __init__(
        self,
        conninfo: str,
        *,
        settings: Settings | None = None,
        handlers: HandlerRegistry | None = None,
        sites: tuple[SiteConfig, ...] | None = None,
        open_wait: bool = True,
    ) -> None:
        self.conninfo = conninfo
        self.settings = settings or gateway_settings()
        self.handlers = handlers
        self.sites = SiteRegistry(sites if sites is not None else demo_senders())
        self.open_wait = open_wait
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.gateway: Gateway | None = None
        self.database: Database | None = None

    def call(self, coroutine: Any, timeout: float = 30) -> Any:
        future: Future[Any] = asyncio.run_coroutine_threadsafe(coroutine, self.loop)
        return future.result(timeout)

    def start(self) -> Self:
        self.thread.start()

        async def start() -> None:
            self.database = Database(self.conninfo, min_size=1, max_size=6)
            if self.open_wait:
                await self.database.open()
            else:  # a dead database: the pool keeps trying in the background
                await self.database.pool.open(wait=False)
            self.gateway = build_gateway(
                self.settings,
                self.database,
                self.sites,
                self.handlers,
                fhir=self.fhir_store(self.database),
            )
            await self.gateway.start()

        self.call(start())
        return self

    def fhir_store(self, database: Database) -> FhirStore | None:
        """The FHIR store the conversions write through (none here: the default handlers
        only); a test's gateway with conversions gives its own, over the gateway's pool."""
        return None

    @property
    def port(self) -> int:
        assert self.gateway is not None and self.gateway.server is not None
        return self.gateway.server.main_port

    def stop(self) -> None:
        async def stop() -> None:
            if self.gateway is not None:
                await self.gateway.stop()
            if self.database is not None:
                await self.database.close()

        try:
            self.call(stop())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(timeout=10)
            self.loop.close()


class MllpConnection:
    """A blocking MLLP client that reads whole ACK frames (python-hl7's MLLPClient reads
    one recv() and may return half an ACK)."""

    def __init__(self, port: int, *, tls: ssl.SSLContext | None = None) -> None:
        raw = socket.create_connection(("127.0.0.1", port), timeout=15)
        self.sock = tls.wrap_socket(raw, server_hostname="localhost") if tls else raw
        self.buffer = b""

    def send_frame(self, payload: bytes) -> None:
        self.sock.sendall(SB + payload + EB + CR)

    def send_bytes(self, data: bytes) -> None:
        self.sock.sendall(data)

    def read_ack(self) -> bytes:
        while EB + CR not in self.buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("connection closed before an ACK")
            self.buffer += chunk
        frame, _, self.buffer = self.buffer.partition(EB + CR)
        assert frame.startswith(SB), frame
        return frame[1:]

    def exchange(self, payload: bytes) -> bytes:
        self.send_frame(payload)
        return self.read_ack()

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> MllpConnection:
        return self

    def __exit__(self, *args: object) -> None:
        self.close()


def ack_code(ack: bytes) -> str:
    return str(parse_ack(ack).extract_field("MSA", 1, 1))


def parse_ack(ack: bytes) -> hl7.Message:
    return hl7.parse(ack.decode("latin-1"))


def refused_at_receipt(port: int, conninfo: str, payload: bytes, control_id: str) -> str:
    """Send ``payload``, which must be answered AE with an ERR (a field processing would
    refuse), kept with its error (status ``error``) and never processed: the stored error."""
    with MllpConnection(port) as client:
        ack = parse_ack(client.exchange(payload))
    assert str(ack.extract_field("MSA", 1, 1)) == "AE"
    assert str(ack.extract_field("ERR", 1, 3, 1, 1)) in ("100", "101", "102", "103")
    query = "SELECT status, error, attempts FROM hl7_message WHERE control_id = %s"
    [(status, error, attempts)] = rows(conninfo, query, (control_id,))
    assert (status, attempts) == ("error", 0)
    assert isinstance(error, str)
    return error


def rows(conninfo: str, sql: str = "", params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with psycopg.connect(conninfo, autocommit=True) as conn:
        return conn.execute(
            sql or "SELECT id, status, control_id, error, note FROM hl7_message ORDER BY id",
            params,
        ).fetchall()


def wait_for(predicate: Callable[[], bool], timeout: float = 15.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what or predicate}")


@pytest.fixture
def hl7_database(database_url: str) -> str:
    """The session database with an empty message store."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("TRUNCATE hl7_message RESTART IDENTITY")
    return database_url


@pytest.fixture
def gateway(hl7_database: str) -> Iterator[RunningGateway]:
    running = RunningGateway(hl7_database).start()
    try:
        yield running
    finally:
        running.stop()


# -- grouped processing: the processor runs no task of its own (``hl7_workers=0``), the
# messages are stored first, then one batch is claimed -----------------------------------
GroupCalls = list[tuple[int, int]]  # (messages given, messages processed) per call


def watch_groups(
    running: RunningGateway,
    message_type: str,
    triggers: tuple[str, ...],
    calls: GroupCalls,
    *,
    after: Callable[[list[Any]], Any] | None = None,
) -> None:
    """Count the calls of the group handler of ``triggers`` (one handler for them all);
    ``after`` (a coroutine function) runs in the group's transaction once it has written,
    and may fail the group."""
    assert running.gateway is not None
    handlers = running.gateway.processor.handlers
    real = handlers.resolve(message_type, triggers[0]).many
    assert real is not None, f"{message_type}^{triggers[0]} has a group handler"
    assert all(handlers.resolve(message_type, t).many == real for t in triggers)

    async def watched(contexts: list[Any]) -> dict[int, Any]:
        assert real is not None
        outcomes = await real(contexts)
        calls.append((len(contexts), len(outcomes)))
        if after is not None:
            await after(contexts)
        return outcomes

    for trigger in triggers:
        handler = handlers.resolve(message_type, trigger).handler
        handlers.register(message_type, trigger, handler, many=watched)


def store_messages(running: RunningGateway, payloads: list[bytes]) -> None:
    """Each payload sent and answered AA (stored, not processed yet)."""
    with MllpConnection(running.port) as client:
        for payload in payloads:
            assert ack_code(client.exchange(payload)) == "AA"


def one_batch(running: RunningGateway, size: int = 50) -> int:
    """Claim and process one batch of at most ``size``: how many messages it held."""
    assert running.gateway is not None
    running.gateway.processor.batch = size
    return int(running.call(running.gateway.processor.run_once()))
