"""The identitovigilance cell's HTTP API (JSON), over ``ReviewService``.

    GET  /identity/candidates?status=&flag=&min_probability=&patient=&limit=&after=
    GET  /identity/candidates/{id}             both identities side by side
    POST /identity/candidates/{id}/decision    {"decision": "link" | "never", "reason"}
    POST /identity/links                       {"patient", "territorial", "reason"}
    POST /identity/unlinks                     {"patient", "reason"}
    POST /identity/merges                      {"survivor", "merged", "reason"} → 201
    POST /identity/merges/{id}/unmerge         {"reason"}
    GET  /identity/territorial/{id}            golden record, trait sources, sources
    GET  /identity/history?patient=|territorial=

Errors are OperationOutcomes with the status of the one translation
(``fhir/http/outcomes.py``), like the FHIR API's.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from maillage.errors import InvalidRequest
from maillage.fhir.http.requests import context_of, json_body
from maillage.fhir.http.routes import fhir_endpoint
from maillage.mpi.candidates import CandidateRow
from maillage.mpi.review import ReviewService

MAX_BODY = 64 * 1024


def review_routes(service: ReviewService, prefix: str = "/identity") -> list[Route]:
    api = _ReviewApi(service)
    return [
        Route(f"{prefix}/candidates", fhir_endpoint(api.list_candidates), methods=["GET"]),
        Route(f"{prefix}/candidates/{{id:int}}", fhir_endpoint(api.show), methods=["GET"]),
        Route(
            f"{prefix}/candidates/{{id:int}}/decision",
            fhir_endpoint(api.decide),
            methods=["POST"],
        ),
        Route(f"{prefix}/links", fhir_endpoint(api.link), methods=["POST"]),
        Route(f"{prefix}/unlinks", fhir_endpoint(api.unlink), methods=["POST"]),
        Route(f"{prefix}/merges", fhir_endpoint(api.merge), methods=["POST"]),
        Route(f"{prefix}/merges/{{id:int}}/unmerge", fhir_endpoint(api.unmerge), methods=["POST"]),
        Route(f"{prefix}/territorial/{{id}}", fhir_endpoint(api.territorial), methods=["GET"]),
        Route(f"{prefix}/history", fhir_endpoint(api.history), methods=["GET"]),
    ]


class _ReviewApi:
    def __init__(self, service: ReviewService) -> None:
        self.service = service

    async def list_candidates(self, request: Request) -> Response:
        query = request.query_params
        items = await self.service.candidates(
            context_of(request),
            status=query.get("status", "open") or None,
            flag=query.get("flag"),
            min_probability=_float(query.get("min_probability"), "min_probability"),
            patient_id=query.get("patient"),
            limit=_int(query.get("limit"), "limit") or 50,
            after=_int(query.get("after"), "after"),
        )
        return _json({"items": [_candidate(item) for item in items]})

    async def show(self, request: Request) -> Response:
        view = await self.service.candidate(context_of(request), request.path_params["id"])
        return _json(
            {
                **_candidate(view.candidate),
                "patient": view.patient,
                "matched": view.matched,
                "territorial": view.territorial,
            }
        )

    async def decide(self, request: Request) -> Response:
        body = await _body(request)
        decided = await self.service.decide(
            context_of(request),
            request.path_params["id"],
            _text(body, "decision"),
            _text(body, "reason"),
        )
        return _json(_candidate(decided))

    async def link(self, request: Request) -> Response:
        body = await _body(request)
        await self.service.link(
            context_of(request),
            _text(body, "patient"),
            _text(body, "territorial"),
            _text(body, "reason"),
        )
        return _json({"patient": body["patient"], "territorial": body["territorial"]})

    async def unlink(self, request: Request) -> Response:
        body = await _body(request)
        territorial = await self.service.unlink(
            context_of(request), _text(body, "patient"), _text(body, "reason")
        )
        return _json({"patient": body["patient"], "territorial": territorial})

    async def merge(self, request: Request) -> Response:
        body = await _body(request)
        merge_id = await self.service.merge(
            context_of(request),
            _text(body, "survivor"),
            _text(body, "merged"),
            _text(body, "reason"),
        )
        return _json({"merge": merge_id}, status_code=201)

    async def unmerge(self, request: Request) -> Response:
        body = await _body(request)
        merge_id = request.path_params["id"]
        await self.service.unmerge(context_of(request), merge_id, _text(body, "reason"))
        return _json({"merge": merge_id, "unmerged": True})

    async def territorial(self, request: Request) -> Response:
        return _json(await self.service.territorial(context_of(request), request.path_params["id"]))

    async def history(self, request: Request) -> Response:
        events = await self.service.history(
            context_of(request),
            patient_id=request.query_params.get("patient"),
            territorial_id=request.query_params.get("territorial"),
        )
        return _json({"items": [_plain(dataclasses.asdict(event)) for event in events]})


async def _body(request: Request) -> dict[str, Any]:
    body = await json_body(request, MAX_BODY)
    if not isinstance(body, dict):
        raise InvalidRequest("the body must be a JSON object")
    return body


def _text(body: dict[str, Any], name: str) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not value.strip():
        raise InvalidRequest(f"the body needs {name!r} (a non-empty string)")
    return value


def _int(value: str | None, name: str) -> int | None:
    if value is None or value == "":
        return None
    try:
        return int(value)
    except ValueError:
        raise InvalidRequest(f"{name} must be an integer") from None


def _float(value: str | None, name: str) -> float | None:
    if value is None or value == "":
        return None
    try:
        return float(value)
    except ValueError:
        raise InvalidRequest(f"{name} must be a number") from None


def _candidate(row: CandidateRow) -> dict[str, Any]:
    return _plain(dataclasses.asdict(row))


def _plain(data: dict[str, Any]) -> dict[str, Any]:
    return {
        key: value.isoformat() if isinstance(value, datetime) else value
        for key, value in data.items()
    }


def _json(content: dict[str, Any], status_code: int = 200) -> Response:
    return JSONResponse(content, status_code=status_code)
