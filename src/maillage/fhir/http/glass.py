"""HTTP side of break-the-glass:

POST /fhir/Patient/{id}/$break-the-glass   Parameters {reason} → Parameters {until}
GET  /security/break-glass?since=          the accesses, for review (JSON)
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from maillage.errors import InvalidRequest
from maillage.fhir.http.requests import context_of, json_body
from maillage.fhir.http.routes import fhir_endpoint
from maillage.security.glass import BreakGlass

MAX_BODY = 16 * 1024


def glass_routes(service: BreakGlass) -> list[Route]:
    async def open_glass(request: Request) -> Response:
        body = await json_body(request, MAX_BODY)
        reason = _reason(body)
        access = await service.open(context_of(request), request.path_params["id"], reason)
        until = access.until.isoformat() if access.until else None
        return JSONResponse(
            {
                "resourceType": "Parameters",
                "parameter": [
                    {"name": "until", "valueInstant": until},
                    {
                        "name": "patient",
                        "valueReference": {"reference": f"Patient/{access.patient_id}"},
                    },
                ],
            },
            media_type="application/fhir+json",
        )

    async def listing(request: Request) -> Response:
        since_text = request.query_params.get("since")
        try:
            since = dt.datetime.fromisoformat(since_text) if since_text else None
        except ValueError:
            raise InvalidRequest("since must be an ISO 8601 date-time") from None
        items = await service.list(context_of(request), since)
        return JSONResponse({"items": [_plain(dataclasses.asdict(item)) for item in items]})

    return [
        Route("/fhir/Patient/{id}/$break-the-glass", fhir_endpoint(open_glass), methods=["POST"]),
        Route("/security/break-glass", fhir_endpoint(listing), methods=["GET"]),
    ]


def _reason(body: Any) -> str:
    if isinstance(body, dict) and body.get("resourceType") == "Parameters":
        for parameter in body.get("parameter") or []:
            if isinstance(parameter, dict) and parameter.get("name") == "reason":
                value = parameter.get("valueString")
                if isinstance(value, str):
                    return value
    raise InvalidRequest("the body must be a Parameters resource with a 'reason' (valueString)")


def _plain(data: dict[str, Any]) -> dict[str, Any]:
    return {k: v.isoformat() if isinstance(v, dt.datetime) else v for k, v in data.items()}
