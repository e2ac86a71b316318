"""Bulk Data ``$export`` over HTTP: kick-off, status polling, cancel, file download.

Kick-off (``GET [base]/$export``, ``[base]/Patient/$export``, ``[base]/Group/[id]/$export``)
needs ``Prefer: respond-async`` and answers 202 with the status URL in
``Content-Location``. The status URL answers 202 with ``X-Progress`` while the job runs,
200 with the manifest when it is done, a 500 OperationOutcome when it failed; ``DELETE``
on it cancels. Files are served as ``application/fhir+ndjson``.
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route

from maillage.errors import InvalidRequest, Issue, MaillageError
from maillage.fhir import operations
from maillage.fhir.export import NDJSON, ExportService, manifest, progress_text
from maillage.fhir.http import requests as req
from maillage.fhir.http.outcomes import information, operation_outcome
from maillage.fhir.http.paths import ID
from maillage.fhir.http.responses import error_response, fhir_response
from maillage.fhir.http.routes import Handler, fhir_endpoint
from maillage.jobs import JobStatus

_RETRY_AFTER_S = "1"


def _errors_only(handler: Handler) -> Handler:
    """Error translation without format negotiation: files are NDJSON, not FHIR JSON."""

    async def endpoint(request: Request) -> Response:
        try:
            return await handler(request)
        except MaillageError as error:
            return error_response(error)

    return endpoint


class ExportApi:
    def __init__(self, exports: ExportService, base_url: Callable[[Request], str]) -> None:
        self.exports = exports
        self.base_url = base_url

    def routes(self, prefix: str = "/fhir") -> list[Route]:
        """Routes to put before the generic FHIR ones (``/Patient/$export`` would be taken
        for a read by id otherwise)."""
        e = fhir_endpoint
        return [
            Route(f"{prefix}/$export", e(self.kickoff), methods=["GET"]),
            Route(f"{prefix}/Patient/$export", e(self.kickoff), methods=["GET"]),
            Route(f"{prefix}/Group/{ID}/$export", e(self.kickoff), methods=["GET"]),
            Route(f"{prefix}/$export-status/{{job}}", e(self.status), methods=["GET", "DELETE"]),
            Route(
                f"{prefix}/$export-file/{{job}}/{{name}}",
                _errors_only(self.download),
                methods=["GET"],
            ),
        ]

    async def kickoff(self, request: Request) -> Response:
        group_id = request.path_params.get("id")
        if group_id is not None:
            level, resource_type, op_level = "group", "Group", "instance"
        elif request.url.path.endswith("/Patient/$export"):
            level, resource_type, op_level = "patient", "Patient", "type"
        else:
            level, resource_type, op_level = "system", None, "system"
        preferences = req.preferences(request)
        if not preferences.respond_async:
            raise InvalidRequest("$export is asynchronous: send Prefer: respond-async")
        operation = operations.find("export", op_level, resource_type)
        strict = preferences.handling == "strict"
        args = operations.parse_arguments(operation, req.query_params(request), strict=strict)
        job = await self.exports.kickoff(
            req.context_of(request),
            level=level,
            group_id=group_id,
            args=args,
            request_url=str(request.url),
        )
        status_url = f"{self.base_url(request)}/$export-status/{job.id}"
        return fhir_response(
            information(f"export {job.id} accepted; poll {status_url}"),
            status=202,
            headers={"Content-Location": status_url},
        )

    async def status(self, request: Request) -> Response:
        ctx = req.context_of(request)
        job_id = request.path_params["job"]
        if request.method == "DELETE":
            await self.exports.cancel(ctx, job_id)
            return fhir_response(information(f"export {job_id} cancelled"), status=202)
        job = await self.exports.job_of(ctx, job_id)
        if job.status in (JobStatus.QUEUED, JobStatus.RUNNING):
            return Response(
                status_code=202,
                headers={"X-Progress": progress_text(job), "Retry-After": _RETRY_AFTER_S},
            )
        if job.status == JobStatus.FAILED:
            message = f"export {job_id} failed: {job.error or 'unknown error'}"
            return fhir_response(operation_outcome([Issue(message, code="exception")]), status=500)
        return JSONResponse(manifest(job, self.base_url(request)))

    async def download(self, request: Request) -> Response:
        p = request.path_params
        path = await self.exports.file_of(req.context_of(request), p["job"], p["name"])
        return FileResponse(path, media_type=NDJSON)
