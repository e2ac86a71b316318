"""The plain-ASGI plumbing of the sign-in endpoints (the security layer does not import
the web framework): a request with its body read, an answer (JSON, or raw bytes for a
page or a redirect), and ``Endpoint``, the ASGI app around a handler."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from dataclasses import dataclass, field
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

FORM = "application/x-www-form-urlencoded"


def header_values(scope: Scope, name: bytes) -> list[str]:
    return [value.decode("latin-1") for key, value in scope.get("headers", ()) if key == name]


async def send_json(
    send: Send,
    status: int,
    body: dict[str, Any],
    *,
    content_type: str = "application/json",
    headers: Iterable[tuple[str, str]] = (),
) -> None:
    await send_bytes(send, status, json.dumps(body).encode(), content_type, headers)


async def send_bytes(
    send: Send,
    status: int,
    payload: bytes,
    content_type: str,
    headers: Iterable[tuple[str, str]] = (),
) -> None:
    raw = [
        (b"content-type", content_type.encode()),
        (b"content-length", str(len(payload)).encode()),
        (b"cache-control", b"no-store"),
        *((name.encode(), value.encode("latin-1")) for name, value in headers),
    ]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": payload})


@dataclass
class Request:
    scope: Scope
    body: bytes

    def header(self, name: str) -> str | None:
        values = header_values(self.scope, name.lower().encode())
        return values[0] if values else None


@dataclass
class Answer:
    """A JSON ``body``, or with ``page`` these bytes as ``content_type`` (a sign-in page,
    an empty redirect)."""

    status: int
    body: dict[str, Any]
    headers: list[tuple[str, str]] = field(default_factory=list)
    page: bytes | None = None
    content_type: str = "application/json"


class Endpoint:
    """An ASGI app around ``handler``: an instance, so that Starlette's ``Route`` mounts
    it as an app (it wraps plain functions as request/response endpoints)."""

    def __init__(self, handler: Callable[[Request], Awaitable[Answer]], max_body: int) -> None:
        self.handler = handler
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                await send_json(
                    send, 413, {"error": "invalid_request", "error_description": "too large"}
                )
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        answer = await self.handler(Request(scope, b"".join(chunks)))
        headers = [*answer.headers, ("pragma", "no-cache")]
        if answer.page is not None:
            await send_bytes(send, answer.status, answer.page, answer.content_type, headers)
        else:
            await send_json(send, answer.status, answer.body, headers=headers)


def oauth_error(status: int, error: str, description: str, **headers: str) -> Answer:
    return Answer(status, {"error": error, "error_description": description}, list(headers.items()))
