"""Building FHIR HTTP responses: headers from stored versions, errors as OperationOutcome."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from starlette.responses import Response

from maillage.errors import MaillageError, Unauthenticated
from maillage.fhir.bundling import embedded
from maillage.fhir.http.negotiation import FHIR_JSON, render
from maillage.fhir.http.outcomes import information, outcome_for
from maillage.fhir.model import StoredResource

log = logging.getLogger(__name__)


def fhir_response(
    content: Any, *, status: int = 200, pretty: bool = False, headers: dict[str, str] | None = None
) -> Response:
    return Response(
        render(content, pretty=pretty), status_code=status, headers=headers, media_type=FHIR_JSON
    )


def raw_resource_response(
    stored: StoredResource,
    *,
    status: int = 200,
    pretty: bool = False,
    headers: dict[str, str] | None = None,
) -> Response:
    """A stored body served as is (re-rendered only when _pretty asks)."""
    assert stored.body is not None
    body = render(embedded(stored), pretty=True) if pretty else stored.body.encode()
    return Response(
        body,
        status_code=status,
        media_type=FHIR_JSON,
        headers={**version_headers(stored), **(headers or {})},
    )


_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def http_date(moment: datetime) -> str:
    """RFC 9110 IMF-fixdate, as ``email.utils.format_datetime(usegmt=True)`` writes it,
    at a fifth of the cost (it is on every read)."""
    t = moment.astimezone(UTC)
    return (
        f"{_DAYS[t.weekday()]}, {t.day:02d} {_MONTHS[t.month - 1]} {t.year:04d} "
        f"{t.hour:02d}:{t.minute:02d}:{t.second:02d} GMT"
    )


def version_headers(stored: StoredResource) -> dict[str, str]:
    return {"ETag": stored.etag, "Last-Modified": http_date(stored.last_updated)}


def error_response(error: MaillageError, *, pretty: bool = False) -> Response:
    status, outcome = outcome_for(error)
    log.info("FHIR request refused: %s (%s)", status, error.code)
    response = fhir_response(outcome, status=status, pretty=pretty)
    if isinstance(error, Unauthenticated):
        response.headers["WWW-Authenticate"] = error.www_authenticate()
    return response


def write_response(
    stored: StoredResource,
    *,
    status: int,
    location: str,
    prefer_return: str,
    pretty: bool,
    message: str,
) -> Response:
    headers = {**version_headers(stored), "Location": location}
    if prefer_return == "minimal":
        return Response(status_code=status, headers=headers)
    if prefer_return == "OperationOutcome":
        return fhir_response(information(message), status=status, pretty=pretty, headers=headers)
    return raw_resource_response(
        stored, status=status, pretty=pretty, headers={"Location": location}
    )
