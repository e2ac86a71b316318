"""Reading what a FHIR HTTP request asks for: body, preferences, versions, context."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from starlette.requests import Request

from maillage.errors import InvalidRequest, PayloadTooLarge, Unauthenticated
from maillage.fhir.http.negotiation import check_content_type, parse_json
from maillage.fhir.indexing.normalize import date_range
from maillage.security import RequestContext
from maillage.security.http import authenticated_context
from maillage.security.tokens import for_site


@dataclass(frozen=True)
class Preferences:
    return_: str = "representation"
    handling: str = "lenient"
    respond_async: bool = False


def preferences(request: Request) -> Preferences:
    values: dict[str, str] = {}
    respond_async = False
    # RFC 7240: preferences are separated by commas (or sent in several headers);
    # ";" introduces parameters, which FHIR clients also use as a separator.
    for header in request.headers.getlist("prefer"):
        for part in header.replace(",", ";").split(";"):
            name, _, value = part.strip().partition("=")
            if name.strip() == "respond-async":
                respond_async = True
            elif value:
                values[name.strip()] = value.strip().strip('"')
    wanted_return = values.get("return", "representation")
    if wanted_return not in ("minimal", "representation", "OperationOutcome"):
        wanted_return = "representation"
    return Preferences(wanted_return, values.get("handling", "lenient"), respond_async)


async def read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"the body is {declared} bytes; the limit is {limit}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"the body is over the {limit}-byte limit")
        chunks.append(chunk)
    return b"".join(chunks)


async def json_body(request: Request, limit: int, *, patch: bool = False) -> Any:
    check_content_type(request.headers.get("content-type"), patch=patch)
    body = await read_body(request, limit)
    if not body:
        raise InvalidRequest("the request has no body")
    return parse_json(body)


def if_match_version(request: Request) -> int | None:
    etag = request.headers.get("if-match")
    if etag is None:
        return None
    digits = etag.strip().removeprefix("W/").strip('"')
    if not digits.isdigit():
        raise InvalidRequest(f'If-Match {etag!r} is not a version ETag like W/"3"')
    return int(digits)


def since_param(request: Request) -> datetime | None:
    """``_since`` as an instant. A ``+`` of a zone offset sent unescaped arrives as a space
    (form decoding), so a space before ``hh:mm`` is read back as ``+``."""
    raw = request.query_params.get("_since")
    if raw is None:
        return None
    value = raw.strip()
    if len(value) > 6 and value[-6] == " " and value[-5:-3].isdigit():
        value = f"{value[:-6]}+{value[-5:]}"
    bounds = date_range(value)
    if bounds is None:
        raise InvalidRequest(f"_since={raw!r} is not an instant like 2024-01-31T10:00:00Z")
    return bounds[0]


def count_param(request: Request) -> int | None:
    raw = request.query_params.get("_count")
    if raw is None:
        return None
    if not raw.isdigit():
        raise InvalidRequest(f"_count must be a non-negative integer, not {raw!r}")
    return int(raw)


def offset_param(request: Request) -> int:
    raw = request.query_params.get("_offset", "0")
    if not raw.isdigit():
        raise InvalidRequest(f"_offset must be a non-negative integer, not {raw!r}")
    return int(raw)


def query_params(request: Request) -> list[tuple[str, str]]:
    return [(name, value) for name, value in request.query_params.multi_items()]


def context_of(request: Request) -> RequestContext:
    """Who asks: the signed-in user (access token checked by the authentication
    middleware), acting for one of her sites (``X-Maillage-Site``) with a purpose
    (``X-Maillage-Purpose``). With sign-in off (trials, tests), the caller states who,
    where and in which roles in headers (``X-Maillage-User``, ``-Site``, ``-Roles``)."""
    headers = request.headers
    signed_in = authenticated_context(request.state)
    if signed_in is not None:
        ctx = for_site(signed_in, headers.get("x-maillage-site"))
        purpose = headers.get("x-maillage-purpose")
        return dataclasses.replace(ctx, purpose=purpose) if purpose else ctx
    if getattr(request.app.state, "auth_enabled", False):
        raise Unauthenticated("sign in: the request carries no access token", error=None)
    roles = headers.get("x-maillage-roles", "")
    return RequestContext(
        who=headers.get("x-maillage-user", "anonymous"),
        site=headers.get("x-maillage-site"),
        purpose=headers.get("x-maillage-purpose", "TREAT"),
        roles=frozenset(role.strip() for role in roles.split(",") if role.strip()),
    )
