"""The asyncio MLLP listener: one main port for every configured site, and optionally a
port per site; TLS when a certificate is configured.

Each connection is served in order: a frame is stored and acknowledged before the next
one is read, so a sender's messages keep their order. Whatever is not a well-formed
frame is answered AR (when the connection can still carry an answer) and kept.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import ssl
from collections.abc import Awaitable, Callable
from pathlib import Path

from maillage.errors import ConfigurationError
from maillage.hl7v2.framing import Event, FrameDecoder, frame

log = logging.getLogger(__name__)

# (event, the site owning the port or None) -> the ACK bytes to frame, or None.
Receiver = Callable[[Event, str | None], Awaitable[bytes | None]]
_READ_BYTES = 64 * 1024


def tls_context(
    cert: Path | None, key: Path | None, client_ca: Path | None
) -> ssl.SSLContext | None:
    """A server TLS context from the settings' paths; with ``client_ca``, senders must
    present a certificate it signed (mutual TLS)."""
    if cert is None and key is None:
        return None
    if cert is None or key is None:
        raise ConfigurationError("MLLP over TLS needs both MAILLAGE_HL7_TLS_CERT and _KEY")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(cert, key)
        if client_ca is not None:
            context.load_verify_locations(client_ca)
            context.verify_mode = ssl.CERT_REQUIRED
    except (OSError, ssl.SSLError) as error:
        raise ConfigurationError(f"cannot load the MLLP TLS certificate: {error}") from error
    return context


class MllpServer:
    def __init__(
        self,
        receive: Receiver,
        *,
        host: str,
        port: int,
        site_ports: dict[int, str] | None = None,
        ssl_context: ssl.SSLContext | None = None,
        max_message_bytes: int = 16 * 1024 * 1024,
        partial_timeout_s: float = 30.0,
    ) -> None:
        self.receive = receive
        self.host = host
        self.port = port
        self.site_ports = dict(site_ports or {})
        self.ssl_context = ssl_context
        self.max_message_bytes = max_message_bytes
        self.partial_timeout_s = partial_timeout_s
        self._servers: list[asyncio.Server] = []
        self._connections: set[asyncio.Task[None]] = set()
        # port actually bound -> site code (None: the main port)
        self.bound: dict[int, str | None] = {}

    async def start(self) -> None:
        listeners: list[tuple[int, str | None]] = [(self.port, None), *self.site_ports.items()]
        try:
            for port, site in listeners:
                server = await asyncio.start_server(
                    functools.partial(self._accept, site=site),
                    self.host,
                    port,
                    ssl=self.ssl_context,
                    reuse_address=True,
                )
                self._servers.append(server)
                bound = server.sockets[0].getsockname()[1]
                self.bound[int(bound)] = site
                log.info(
                    "MLLP listening on %s:%d%s%s",
                    self.host,
                    bound,
                    f" (site {site})" if site else "",
                    " with TLS" if self.ssl_context else "",
                )
        except OSError as error:
            await self.stop()
            raise ConfigurationError(
                f"cannot listen for MLLP on {self.host}:{port}: {error.strerror or error}"
            ) from error

    @property
    def main_port(self) -> int:
        return next(port for port, site in self.bound.items() if site is None)

    async def stop(self) -> None:
        for server in self._servers:
            server.close()
        for task in list(self._connections):
            task.cancel()
        for task in list(self._connections):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for server in self._servers:
            with contextlib.suppress(Exception):
                await server.wait_closed()
        self._servers = []
        self.bound = {}

    async def _accept(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, site: str | None
    ) -> None:
        task = asyncio.current_task()
        if task is not None:
            # Tracked so that stop() can end open connections.
            self._connections.add(task)
            task.add_done_callback(self._connections.discard)
        await self._serve(reader, writer, site)

    async def _serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, site: str | None
    ) -> None:
        decoder = FrameDecoder(self.max_message_bytes)
        try:
            while True:
                timeout = self.partial_timeout_s if decoder.pending else None
                try:
                    data = await asyncio.wait_for(reader.read(_READ_BYTES), timeout)
                except TimeoutError:
                    # A frame started and stalled: answer it, then listen afresh.
                    await self._answer(
                        writer, decoder.flush(f"no end block within {timeout:.0f} s"), site
                    )
                    continue
                if not data:
                    for event in decoder.flush("connection closed"):
                        await self.receive(event, site)  # kept; nobody to answer
                    return
                await self._answer(writer, decoder.feed(data), site)
        except (ConnectionError, ssl.SSLError, asyncio.IncompleteReadError) as error:
            log.info("MLLP connection ended: %s", type(error).__name__)
            for event in decoder.flush("connection lost"):
                await self.receive(event, site)
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _answer(
        self, writer: asyncio.StreamWriter, events: list[Event], site: str | None
    ) -> None:
        for event in events:
            ack = await self.receive(event, site)
            if ack is not None:
                writer.write(frame(ack))
        if events:
            await writer.drain()
