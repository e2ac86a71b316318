"""``$reindex`` over HTTP: kick-off and status polling, as ``$export`` does.

``POST [base]/$reindex`` (optional ``_type``, in the query or a ``Parameters`` body)
enqueues a reindex of every search parameter of those types (all types by default) and
answers 202 with the status URL in ``Content-Location``. The status URL answers 202 with
``X-Progress`` while the job waits or runs, 200 with an OperationOutcome saying what was
rewritten once done, 500 when it failed.
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from maillage.errors import Issue
from maillage.fhir import operations
from maillage.fhir.http import requests as req
from maillage.fhir.http.outcomes import information, operation_outcome
from maillage.fhir.http.responses import fhir_response
from maillage.fhir.http.routes import fhir_endpoint
from maillage.fhir.reindex import ReindexService, progress_text
from maillage.jobs import JobStatus

_RETRY_AFTER_S = "1"


class ReindexApi:
    def __init__(
        self, reindex: ReindexService, base_url: Callable[[Request], str], max_body: int
    ) -> None:
        self.reindex = reindex
        self.base_url = base_url
        self.max_body = max_body

    def routes(self, prefix: str = "/fhir") -> list[Route]:
        e = fhir_endpoint
        return [
            Route(f"{prefix}/$reindex", e(self.kickoff), methods=["POST"]),
            Route(f"{prefix}/$reindex-status/{{job}}", e(self.status), methods=["GET"]),
        ]

    async def kickoff(self, request: Request) -> Response:
        operation = operations.find("reindex", "system", None)
        pairs = req.query_params(request)
        headers = request.headers
        if headers.get("content-length", "0") != "0" or "transfer-encoding" in headers:
            pairs = pairs + operations.from_parameters(await req.json_body(request, self.max_body))
        strict = req.preferences(request).handling == "strict"
        args = operations.parse_arguments(operation, pairs, strict=strict)
        job = await self.reindex.kickoff(req.context_of(request), args.get("_type"))
        status_url = f"{self.base_url(request)}/$reindex-status/{job.id}"
        return fhir_response(
            information(f"reindex {job.id} accepted; poll {status_url}"),
            status=202,
            headers={"Content-Location": status_url},
        )

    async def status(self, request: Request) -> Response:
        job = await self.reindex.job_of(request.path_params["job"])
        if job.status in (JobStatus.QUEUED, JobStatus.RUNNING):
            text = progress_text(job)
            return fhir_response(
                information(f"reindex {job.id} {job.status}: {text}"),
                status=202,
                headers={"X-Progress": text, "Retry-After": _RETRY_AFTER_S},
            )
        if job.status == JobStatus.DONE:
            result = job.result or {}
            message = (
                f"reindex {job.id} done: {result.get('done', 0)} resources of"
                f" {', '.join(result.get('types') or [])} rewritten"
            )
            return fhir_response(information(message))
        message = f"reindex {job.id} {job.status}: {job.error or 'cancelled'}"
        return fhir_response(operation_outcome([Issue(message, code="exception")]), status=500)
