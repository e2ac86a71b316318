"""HTTP side of the audit: ``GET /fhir/AuditEvent?patient=...&date=ge...`` answered from
the audit table as a searchset Bundle (newest first; ``_count``; the ``next`` link pages
with ``_cursor``). The only audit module that imports the web framework.

Mounted before the generic FHIR routes (so that ``AuditEvent`` searches never reach the
resource store)::

    routes = [*audit_routes(trail, context_of=context_of, wrap=fhir_endpoint), ...]
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlencode

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from maillage.audit.service import AuditTrail
from maillage.errors import Forbidden, InvalidRequest, MaillageError, Unauthenticated
from maillage.security.context import RequestContext

Handler = Callable[[Request], Awaitable[Response]]
FHIR_JSON = "application/fhir+json"
DEFAULT_COUNT = 100
MAX_COUNT = 1000
_KNOWN = frozenset({"patient", "date", "_count", "_cursor", "_format", "_pretty"})
_STATUS = ((InvalidRequest, 400), (Unauthenticated, 401), (Forbidden, 403))


def _fhir(body: dict[str, Any], status: int = 200) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type=FHIR_JSON)


def _own_wrap(handler: Handler) -> Handler:
    """Error translation when the app's (``fhir_endpoint``) is not given."""

    async def endpoint(request: Request) -> Response:
        try:
            return await handler(request)
        except MaillageError as error:
            status = next((code for kind, code in _STATUS if isinstance(error, kind)), 500)
            issue = {"severity": "error", "code": error.code, "diagnostics": error.message}
            return _fhir({"resourceType": "OperationOutcome", "issue": [issue]}, status)

    return endpoint


def _parse_date(text: str) -> tuple[dt.datetime | None, dt.datetime | None]:
    """A ``date`` value with its prefix → ``[since, until)``."""
    prefix, value = (text[:2], text[2:]) if text[:2].isalpha() else ("eq", text)
    try:
        if len(value) == 10:
            day = dt.date.fromisoformat(value)
            low = dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)
            high = low + dt.timedelta(days=1)
        else:
            low = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
            if low.tzinfo is None:
                low = low.replace(tzinfo=dt.UTC)
            high = low + dt.timedelta(microseconds=1)
    except ValueError:
        raise InvalidRequest(f"date {text!r}: expected [prefix]YYYY-MM-DD or an instant") from None
    bounds = {"ge": (low, None), "gt": (high, None), "lt": (None, low), "le": (None, high)}
    if prefix == "eq":
        return low, high
    if prefix not in bounds:
        raise InvalidRequest(f"date {text!r}: the prefixes served are eq, ge, gt, le, lt")
    return bounds[prefix]


def _count(text: str | None) -> int:
    if text is None:
        return DEFAULT_COUNT
    if not text.isdigit() or not 0 < int(text) <= MAX_COUNT:
        raise InvalidRequest(f"_count must be between 1 and {MAX_COUNT}")
    return int(text)


def audit_routes(
    trail: AuditTrail,
    *,
    context_of: Callable[[Request], RequestContext],
    wrap: Callable[[Handler], Handler] | None = None,
    base_url: str | None = None,
) -> list[Route]:
    """The ``AuditEvent`` search route. ``context_of``: the request's context (the app's);
    ``wrap``: the app's endpoint wrapper (format negotiation, error translation)."""

    async def search(request: Request) -> Response:
        params = request.query_params
        unknown = sorted(set(params) - _KNOWN)
        if unknown:
            raise InvalidRequest(
                f"AuditEvent search parameters served here: patient, date, _count; not "
                f"{', '.join(unknown)}"
            )
        patients = params.getlist("patient")
        if len(patients) != 1 or not patients[0]:
            raise InvalidRequest("AuditEvent searches need exactly one patient=")
        patient = patients[0].removeprefix("Patient/")
        since: dt.datetime | None = None
        until: dt.datetime | None = None
        for text in params.getlist("date"):
            low, high = _parse_date(text)
            if low is not None:
                since = low if since is None else max(since, low)
            if high is not None:
                until = high if until is None else min(until, high)
        count = _count(params.get("_count"))
        cursor = params.get("_cursor")
        if cursor is not None and not cursor.isdigit():
            raise InvalidRequest("_cursor is the value of a next link")
        found = await trail.search(
            context_of(request),
            patient,
            since,
            until,
            limit=count + 1,
            before_seq=int(cursor) if cursor else None,
            query=str(request.url.query),
        )
        base = base_url or f"{request.url.scheme}://{request.url.netloc}/fhir"
        kept = [(key, value) for key, value in params.multi_items() if key != "_cursor"]
        links = [{"relation": "self", "url": f"{base}/AuditEvent?{request.url.query}"}]
        if len(found) > count:
            found = found[:count]
            following = urlencode([*kept, ("_cursor", str(found[-1][0]))])
            links.append({"relation": "next", "url": f"{base}/AuditEvent?{following}"})
        bundle = {
            "resourceType": "Bundle",
            "type": "searchset",
            "link": links,
            "entry": [
                {
                    "fullUrl": f"{base}/AuditEvent/{event['id']}",
                    "resource": event,
                    "search": {"mode": "match"},
                }
                for _, event in found
            ],
        }
        return _fhir(bundle)

    endpoint = (wrap or _own_wrap)(search)
    return [Route("/fhir/AuditEvent", endpoint, methods=["GET"])]
