"""A lean HTTP/1.1 client for write benchmarks: one keep-alive connection, requests
written as prepared bytes, responses read by their Content-Length.

The benchmarks run the client on the hub's own two cores; httpx spends about 1.3 ms of
CPU per request (measured by ``bench/identity_online.py``), time the hub then lacks.
This client sends the same requests for a fraction of that, so a rate measures the hub.
It speaks only what the hub answers: no chunked bodies, no redirects, no TLS.
"""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit


class RawHttpError(RuntimeError):
    pass


class RawConnection:
    def __init__(self, base_url: str) -> None:
        parts = urlsplit(base_url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        self.prefix = parts.path.rstrip("/")
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def __aenter__(self) -> RawConnection:
        self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._writer is not None:
            self._writer.close()
            await self._writer.wait_closed()

    def post_bytes(self, path: str, body: bytes, content_type: str) -> bytes:
        """A POST request, ready to send (prepare them before timing)."""
        head = (
            f"POST {self.prefix}{path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            f"Content-Type: {content_type}\r\nAccept: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        return head.encode("ascii") + body

    async def send(self, request: bytes) -> tuple[int, bytes]:
        """(status, body) of one request on the connection."""
        assert self._reader is not None and self._writer is not None, "use async with"
        self._writer.write(request)
        status_line = await self._reader.readline()
        if not status_line:
            raise RawHttpError("the server closed the connection")
        status = int(status_line.split(b" ", 2)[1])
        length = None
        while True:
            line = await self._reader.readline()
            if line in (b"\r\n", b""):
                break
            name, _, value = line.partition(b":")
            lowered = name.strip().lower()
            if lowered == b"content-length":
                length = int(value.strip())
            elif lowered == b"transfer-encoding":
                raise RawHttpError("chunked responses are not read by this client")
        body = await self._reader.readexactly(length) if length else b""
        return status, body
