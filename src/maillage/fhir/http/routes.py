"""The FHIR R4 REST interactions under ``/fhir`` (R4 http.html)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import wraps
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from maillage.errors import (
    InvalidRequest,
    MaillageError,
    MethodNotAllowed,
    NotFound,
    UnsupportedMediaType,
)
from maillage.fhir import bundling, operations
from maillage.fhir.bundles import BundleProcessor
from maillage.fhir.capability import capability_statement
from maillage.fhir.http import requests as req
from maillage.fhir.http.auditing import record_exchange
from maillage.fhir.http.negotiation import check_format
from maillage.fhir.http.outcomes import information, outcome_for
from maillage.fhir.http.paths import ID, TYPE
from maillage.fhir.http.responses import (
    error_response,
    fhir_response,
    raw_resource_response,
    write_response,
)
from maillage.fhir.model import WriteOutcome
from maillage.fhir.repository import FhirStore, Repository
from maillage.security import RequestContext

Handler = Callable[[Request], Awaitable[Response]]


# Starlette answers HEAD on every GET route: HEAD must read, never fall through to a write.
_READS = ("GET", "HEAD")


def _require_delete(request: Request) -> None:
    if request.method != "DELETE":
        raise MethodNotAllowed(f"{request.method} is not allowed on {request.url.path}")


def _pretty(request: Request) -> bool:
    return request.query_params.get("_pretty") == "true"


def fhir_endpoint(handler: Handler) -> Handler:
    """Negotiate the format first and translate any domain error, in one place."""

    @wraps(handler)
    async def endpoint(request: Request) -> Response:
        try:
            check_format(request.query_params.get("_format"), request.headers.get("accept"))
            response = await handler(request)
        except MaillageError as error:
            response = error_response(error, pretty=_pretty(request))
        # every exchange, success or failure, into the audit trail (when one is set)
        await record_exchange(request, response, _context_or_none(request))
        return response

    return endpoint


def _context_or_none(request: Request) -> RequestContext | None:
    try:
        return req.context_of(request)
    except MaillageError:
        return None


class FhirApi:
    def __init__(self, store: FhirStore, *, base_url: str | None, max_body_bytes: int) -> None:
        self.store = store
        self.configured_base = base_url.rstrip("/") if base_url else None
        self.max_body = max_body_bytes

    def base_url(self, request: Request) -> str:
        if self.configured_base:
            return self.configured_base
        return f"{request.url.scheme}://{request.url.netloc}/fhir"

    def repo(self, request: Request) -> Repository:
        return self.store.repository(req.context_of(request))

    def routes(self, prefix: str = "/fhir") -> list[Route]:
        e = fhir_endpoint
        table: list[tuple[str, Handler, list[str]]] = [
            ("/metadata", self.metadata, ["GET"]),
            ("", self.system, ["GET", "POST"]),
            ("/", self.system, ["GET", "POST"]),
            ("/_history", self.system_history, ["GET"]),
            ("/_search", self.search_post, ["POST"]),
            (f"/{TYPE}", self.type_level, ["GET", "POST", "PUT", "DELETE"]),
            (f"/{TYPE}/_search", self.search_post, ["POST"]),
            (f"/{TYPE}/_history", self.type_history, ["GET"]),
            (f"/{TYPE}/{ID}", self.instance, ["GET", "PUT", "PATCH", "DELETE"]),
            (f"/{TYPE}/{ID}/_history", self.instance_history, ["GET"]),
            (f"/{TYPE}/{ID}/_history/{{vid}}", self.vread, ["GET"]),
            (f"/{TYPE}/{ID}/${{operation}}", self.instance_operation, ["GET", "POST"]),
            (f"/{TYPE}/{ID}/{{compartment:fhir_type}}", self.compartment_search, ["GET"]),
        ]
        return [
            Route(prefix + path, e(handler), methods=methods) for path, handler, methods in table
        ]

    # -- capability and system level ---------------------------------------------------
    async def metadata(self, request: Request) -> Response:
        return fhir_response(capability_statement(self.base_url(request)), pretty=_pretty(request))

    async def system(self, request: Request) -> Response:
        if request.method in _READS:
            return await self._search(request, None, req.query_params(request))
        bundle = await req.json_body(request, self.max_body)
        processor = BundleProcessor(
            self.repo(request),
            base_url=self.base_url(request),
            return_pref=req.preferences(request).return_,
            render_error=outcome_for,
        )
        return fhir_response(await processor.process(bundle), pretty=_pretty(request))

    # -- type level -----------------------------------------------------------------
    async def type_level(self, request: Request) -> Response:
        resource_type = request.path_params["type"]
        if request.method in _READS:
            return await self._search(request, resource_type, req.query_params(request))
        if request.method == "POST":
            return await self.create(request, resource_type)
        criteria = [(k, v) for k, v in req.query_params(request) if k not in ("_format", "_pretty")]
        if request.method == "PUT":
            body = await req.json_body(request, self.max_body)
            outcome = await self.repo(request).conditional_update(resource_type, criteria, body)
            return self._written(request, outcome)
        _require_delete(request)
        deleted = await self.repo(request).conditional_delete(resource_type, criteria)
        return self._deleted(request, deleted is not None)

    async def create(self, request: Request, resource_type: str) -> Response:
        stray = [name for name in request.query_params if name not in ("_format", "_pretty")]
        if stray:
            # Some clients send conditional-create criteria as a query string; creating
            # anyway would make the duplicate they meant to avoid.
            raise InvalidRequest(
                f"POST /{resource_type} takes no search parameters ({', '.join(stray)}); "
                "for a conditional create send them in the If-None-Exist header"
            )
        body = await req.json_body(request, self.max_body)
        if isinstance(body, dict) and body.get("resourceType") != resource_type:
            raise InvalidRequest(
                f"resourceType {body.get('resourceType')!r} does not match the URL type "
                f"{resource_type!r}"
            )
        if_none_exist = request.headers.get("if-none-exist")
        criteria = (
            parse_qsl(if_none_exist.lstrip("?"), keep_blank_values=True) if if_none_exist else None
        )
        outcome = await self.repo(request).create(body, if_none_exist=criteria)
        return self._written(request, outcome)

    async def search_post(self, request: Request) -> Response:
        body = await req.read_body(request, self.max_body)
        kind = (request.headers.get("content-type") or "").split(";")[0].strip()
        if body and kind != "application/x-www-form-urlencoded":
            raise UnsupportedMediaType("POST _search takes application/x-www-form-urlencoded")
        params = req.query_params(request) + parse_qsl(body.decode(), keep_blank_values=True)
        return await self._search(request, request.path_params.get("type"), params)

    async def compartment_search(self, request: Request) -> Response:
        p = request.path_params
        return await self._search(
            request,
            p["compartment"],
            req.query_params(request),
            compartment=(p["type"], p["id"]),
        )

    async def _search(
        self,
        request: Request,
        resource_type: str | None,
        params: list[tuple[str, str]],
        *,
        compartment: tuple[str, str] | None = None,
    ) -> Response:
        strict = req.preferences(request).handling == "strict"
        page = await self.repo(request).search(
            resource_type, params, strict=strict, compartment=compartment
        )
        base = self.base_url(request)
        path = "/".join([*(compartment or ()), resource_type or ""]).rstrip("/")
        self_url = f"{base}/{path}" if path else base
        bundle = bundling.searchset(page, base_url=base, self_url=self_url)
        return fhir_response(bundle, pretty=_pretty(request))

    async def instance_operation(self, request: Request) -> Response:
        """``[type]/[id]/$[name]``, GET or POST (a Parameters body): see ``operations``."""
        p = request.path_params
        operation = operations.find(p["operation"], "instance", p["type"])
        pairs = req.query_params(request)
        if request.method == "POST":
            pairs = pairs + operations.from_parameters(await req.json_body(request, self.max_body))
        strict = req.preferences(request).handling == "strict"
        args = operations.parse_arguments(operation, pairs, strict=strict)
        if operation.handler is None:
            raise NotFound(f"${operation.name} is served with Prefer: respond-async only")
        page = await operation.handler(self.repo(request), p["id"], args)
        base = self.base_url(request)
        self_url = f"{base}/{p['type']}/{p['id']}/${operation.name}"
        bundle = bundling.searchset(page, base_url=base, self_url=self_url)
        return fhir_response(bundle, pretty=_pretty(request))

    # -- instance level ----------------------------------------------------------------
    async def instance(self, request: Request) -> Response:
        resource_type, resource_id = request.path_params["type"], request.path_params["id"]
        repo = self.repo(request)
        if request.method in _READS:
            stored = await repo.read(resource_type, resource_id)
            return raw_resource_response(stored, pretty=_pretty(request))
        if request.method == "PUT":
            body = await req.json_body(request, self.max_body)
            if isinstance(body, dict) and body.get("resourceType") != resource_type:
                raise InvalidRequest("resourceType in the body does not match the URL")
            outcome = await repo.update(
                resource_type, resource_id, body, if_match=req.if_match_version(request)
            )
            return self._written(request, outcome)
        if request.method == "PATCH":
            body = await req.json_body(request, self.max_body, patch=True)
            outcome = await repo.patch(
                resource_type, resource_id, body, if_match=req.if_match_version(request)
            )
            return self._written(request, outcome)
        _require_delete(request)
        deleted = await repo.delete(resource_type, resource_id)
        return self._deleted(request, deleted is not None)

    async def vread(self, request: Request) -> Response:
        p = request.path_params
        stored = await self.repo(request).vread(p["type"], p["id"], p["vid"])
        return raw_resource_response(stored, pretty=_pretty(request))

    # -- history ---------------------------------------------------------------------
    async def system_history(self, request: Request) -> Response:
        return await self._history(request, None, None)

    async def type_history(self, request: Request) -> Response:
        return await self._history(request, request.path_params["type"], None)

    async def instance_history(self, request: Request) -> Response:
        p = request.path_params
        repo = self.repo(request)
        try:
            await repo.read(p["type"], p["id"])
        except MaillageError as error:
            if error.code != "deleted":
                raise
        return await self._history(request, p["type"], p["id"])

    async def _history(
        self, request: Request, resource_type: str | None, resource_id: str | None
    ) -> Response:
        since = req.since_param(request)
        count = req.count_param(request)
        offset = req.offset_param(request)
        page = await self.repo(request).history(
            resource_type, resource_id, since=since, count=count, offset=offset
        )
        base = self.base_url(request)
        path = "/".join(part for part in (resource_type, resource_id) if part)
        self_url = f"{base}/{path}/_history" if path else f"{base}/_history"
        return fhir_response(
            bundling.history(page, base_url=base, self_url=self_url), pretty=_pretty(request)
        )

    # -- shared ----------------------------------------------------------------------
    def _written(self, request: Request, outcome: WriteOutcome) -> Response:
        stored = outcome.resource
        location = f"{self.base_url(request)}/{stored.versioned_reference}"
        status = 201 if outcome.created else 200
        message = (
            "created"
            if outcome.created
            else ("updated" if outcome.changed else "unchanged: an identical resource exists")
        )
        return write_response(
            stored,
            status=status,
            location=location,
            prefer_return=req.preferences(request).return_,
            pretty=_pretty(request),
            message=message,
        )

    def _deleted(self, request: Request, deleted: bool) -> Response:
        if req.preferences(request).return_ == "OperationOutcome":
            text = "deleted" if deleted else "nothing to delete"
            return fhir_response(information(text), status=200, pretty=_pretty(request))
        return Response(status_code=204)
