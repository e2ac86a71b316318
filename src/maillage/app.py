"""create_app(): the ASGI application: FHIR surface, health, metrics, error translation."""

from __future__ import annotations

import contextlib
import gc
import logging
import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from maillage.audit.anchoring import AnchorPublisher
from maillage.audit.http import audit_routes
from maillage.audit.journal import AuditJournal, PendingSealer
from maillage.audit.service import AuditTrail
from maillage.demo.insi import DemoRegisterInsi
from maillage.demo.senders import apply_site_configuration
from maillage.errors import ConfigurationError, Issue
from maillage.fhir import validation
from maillage.fhir.definitions import REGISTRY, compartment_reference_params, search_params
from maillage.fhir.export import EXPORT_KIND, ExportService
from maillage.fhir.http.auditing import configure as configure_audit
from maillage.fhir.http.export import ExportApi
from maillage.fhir.http.glass import glass_routes
from maillage.fhir.http.outcomes import operation_outcome
from maillage.fhir.http.paths import LogicalIdSegment, ResourceTypeSegment
from maillage.fhir.http.reindex import ReindexApi
from maillage.fhir.http.requests import context_of
from maillage.fhir.http.responses import fhir_response
from maillage.fhir.http.routes import FhirApi, Handler, fhir_endpoint
from maillage.fhir.reindex import REINDEX_KIND, ReindexService
from maillage.fhir.repository import FhirStore
from maillage.fhir.search.engine import SearchEngine
from maillage.fhir.search_definitions import SearchDefinitions
from maillage.fhir.write_hooks import WriteHook
from maillage.hl7v2.metrics import GatewayMetrics
from maillage.hl7v2.service import build_gateway
from maillage.hl7v2.sites import SiteRegistry
from maillage.hl7v2.store import MessageStore
from maillage.jobs import JobService, Worker
from maillage.mpi import PatientIndex, build_patient_index
from maillage.mpi.access import same_person
from maillage.mpi.http import lookup_routes
from maillage.mpi.insi_http import insi_routes
from maillage.mpi.review import ReviewService
from maillage.mpi.review_http import review_routes
from maillage.national.insi import InsiTeleservice
from maillage.national.insi_simulator import InsiSimulator
from maillage.security import AccessPolicy, AllowAll
from maillage.security.care_hooks import care_hooks
from maillage.security.care_policy import CarePolicy
from maillage.security.glass import BreakGlass
from maillage.security.http import AuthenticationMiddleware, build_authentication
from maillage.security.matrix import load_matrix
from maillage.settings import Settings
from maillage.storage import Database

log = logging.getLogger(__name__)

REQUESTS = Counter("maillage_http_requests_total", "HTTP requests", ["method", "status"])
LATENCY = Histogram("maillage_http_request_seconds", "HTTP request latency", ["method"])
_REQUEST_COUNTERS: dict[tuple[str, int], Counter] = {}
_LATENCY_HISTOGRAMS: dict[str, Histogram] = {}


class MetricsMiddleware:
    """Counts requests and their latency by method and status (no ids, no patient data)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status_holder = {"status": 500}

        async def send_wrapper(message: Any) -> None:
            if message["type"] == "http.response.start":
                status_holder["status"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            method = scope["method"]
            status = status_holder["status"]
            # labels() takes a lock and builds a key on every call: keep the children.
            counter = _REQUEST_COUNTERS.get((method, status))
            if counter is None:
                counter = _REQUEST_COUNTERS[method, status] = REQUESTS.labels(method, str(status))
            counter.inc()
            histogram = _LATENCY_HISTOGRAMS.get(method)
            if histogram is None:
                histogram = _LATENCY_HISTOGRAMS[method] = LATENCY.labels(method)
            histogram.observe(time.perf_counter() - started)


class ReadByIdFastPath:
    """``GET [base]/{type}/{id}``, the hottest interaction, goes straight to its endpoint.

    It skips the router (ten route patterns tried in turn) and the exception middleware,
    neither of which that endpoint needs: it negotiates the format and renders its own
    errors (``fhir_endpoint``), the store still authorizes the read, and an unexpected
    error still reaches the server-error handler, which sits outside this middleware. The
    path must match the same segment patterns as the route; anything else (HEAD, other
    shapes, a root path) goes through the router as before.
    """

    def __init__(self, app: ASGIApp, endpoint: Handler, prefix: str) -> None:
        self.app = app
        self.endpoint = endpoint
        self.pattern = re.compile(
            f"{re.escape(prefix)}/({ResourceTypeSegment.regex})/({LogicalIdSegment.regex})"
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET" and not scope.get("root_path"):
            match = self.pattern.fullmatch(scope["path"])
            # ``Patient/$export`` is an operation, not a read.
            if match is not None and not match[2].startswith("$"):
                scope["path_params"] = {"type": match[1], "id": match[2]}
                request = Request(scope, receive, send)
                response = await self.endpoint(request)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


async def _http_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, HTTPException)
    code = {404: "not-found", 405: "not-supported"}.get(error.status_code, "exception")
    message = {
        404: f"no FHIR endpoint at {request.url.path}",
        405: f"{request.method} is not allowed on {request.url.path}",
    }.get(error.status_code, str(error.detail))
    # A 405 carries the Allow header Starlette computed from the route's methods.
    return fhir_response(
        operation_outcome([Issue(message, code=code)]),
        status=error.status_code,
        headers=dict(error.headers) if error.headers else None,
    )


async def _unexpected_error(request: Request, error: Exception) -> Response:
    log.exception("unexpected error on %s %s", request.method, request.url.path)
    return fhir_response(
        operation_outcome(
            [Issue("internal error; the hub's log has the details", code="exception")]
        ),
        status=500,
    )


def write_hooks(settings: Settings, patient_index: PatientIndex | None) -> dict[str, WriteHook]:
    """The domains that see every write of their types, in its transaction: the care
    relationships (kept whatever the access policy, so that turning the rules on finds
    them) and the patient index. Every process that writes FHIR builds its store with
    them (the hub, `maillage gateway`)."""
    hooks: dict[str, WriteHook] = {**care_hooks(settings.care_recent_days)}
    if patient_index is not None:
        hooks["Patient"] = patient_index
    return hooks


def access_policy(settings: Settings, sites: SiteRegistry) -> AccessPolicy:
    """The access decision point the settings ask for."""
    chosen = settings.access_policy
    if chosen == "auto":  # the rules follow sign-in: without it, nobody is known
        chosen = "care" if settings.auth_enabled else "allow-all"
    if chosen == "allow-all":
        return AllowAll()
    if chosen != "care":
        raise ConfigurationError(
            f"MAILLAGE_ACCESS_POLICY={settings.access_policy!r}: use 'auto', 'allow-all' or 'care'"
        )
    compartment = compartment_reference_params()
    return CarePolicy(
        load_matrix(compartment),
        compartment,
        site_organizations={
            site.code: site.organization_id for site in sites.sites if site.organization_id
        },
        same_person=same_person,
        is_token_param=is_token_param,
    )


def is_token_param(resource_type: str, code: str) -> bool:
    """Whether ``code`` is an indexed token search parameter of the type (official or
    custom, as currently defined): what a scope's ``?restriction`` can be."""
    param = REGISTRY.current().by_type.get(resource_type, {}).get(code)
    return param is not None and param.type == "token" and param.indexed


def create_app(settings: Settings, conninfo: str, *, gateway: bool = False) -> Starlette:
    """The app; with ``gateway``, its lifespan also runs the HL7 v2 gateway (MLLP listener
    and processor): one process of the hub only (``maillage serve`` picks it)."""
    # Compile the official search parameters and the validation schemas now, not on the
    # first request.
    search_params()
    validation.warm_up()
    # The sites (HL7 senders, and the IPP systems a Patient written here may carry).
    sites = apply_site_configuration(settings.hl7_sites_file)
    database = Database(conninfo, min_size=settings.db_pool_min, max_size=settings.db_pool_max)
    engine = SearchEngine(
        default_count=settings.default_page_size,
        max_count=settings.max_page_size,
        timeout_ms=settings.search_timeout_ms,
    )
    jobs = JobService(database, max_attempts=settings.job_max_attempts)
    definitions = SearchDefinitions(database, jobs, refresh_s=settings.search_definitions_refresh_s)
    policy = access_policy(settings, sites)
    # Every FHIR exchange into the hash-chained audit (fhir/http/auditing.py).
    trail = AuditTrail(database)
    # Each change's event staged in its own transaction, chained by the sealer or before
    # the HTTP answer (audit/journal.py).
    journal = AuditJournal(trail) if settings.audit_enabled else None
    sealer = PendingSealer(trail) if settings.audit_enabled else None
    configure_audit(trail if settings.audit_enabled else None, journaled=journal is not None)
    anchors = (
        AnchorPublisher(trail, settings.audit_anchor_file, settings.audit_anchor_interval_s)
        if settings.audit_enabled and settings.audit_anchor_interval_s > 0
        else None
    )
    auth = (
        build_authentication(settings, database, known_sites=[site.code for site in sites.sites])
        if settings.auth_enabled
        else None
    )
    auth_routes = (
        [
            Route(path, endpoint, methods=list(methods))
            for path, methods, endpoint in auth.endpoints.routes()
        ]
        if auth is not None
        else []
    )
    patient_index = build_patient_index(settings)
    # No client of the national INSi here: the simulator, over the configured register
    # or the demo territory's.
    insi: InsiTeleservice = (
        InsiSimulator.from_ndjson(settings.insi_register_file)
        if settings.insi_register_file is not None
        else DemoRegisterInsi()
    )
    store = FhirStore(
        database,
        policy,
        engine,
        definitions=definitions,
        write_hooks=write_hooks(settings, patient_index),
        journal=journal,
    )
    api = FhirApi(store, base_url=settings.base_url, max_body_bytes=settings.max_body_bytes)
    exports = ExportService(store, jobs, settings.exports_path)
    reindex = ReindexService(
        database, jobs, definitions, policy, batch_rows=settings.reindex_batch_rows
    )
    worker = Worker(
        jobs,
        {EXPORT_KIND: exports.run, REINDEX_KIND: reindex.run},
        poll_interval_s=settings.job_poll_interval_s,
        heartbeat_s=settings.job_heartbeat_s,
        stale_after_s=settings.job_stale_after_s,
    )
    hl7 = build_gateway(settings, database, sites, fhir=store) if gateway else None
    # Every process exports the gateway's per-site counters (read from the store).
    hl7_metrics = hl7.metrics if hl7 is not None else GatewayMetrics(MessageStore(database))

    async def health(request: Request) -> Response:
        ready = await database.is_ready()
        return JSONResponse(
            {
                "status": "ok" if ready else "starting",
                "database": "ready" if ready else "unavailable",
            },
            status_code=200 if ready else 503,
        )

    async def metrics(request: Request) -> Response:
        await hl7_metrics.refresh()
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await database.open()
        # What is loaded by now (validation models, definitions: ~300,000 objects) lives as
        # long as the process. Frozen, it is left out of the cyclic collector's full passes,
        # each of which took ~190 ms and stalled every request in flight (the p99).
        gc.collect()
        gc.freeze()
        # The custom search parameters before the first request, then followed.
        await definitions.refresh()
        definitions.start()
        if settings.jobs_enabled:
            worker.start()
        if anchors is not None:
            anchors.start()
        if sealer is not None:
            sealer.start()
        try:
            if hl7 is not None:
                await hl7.start()
            log.info("hub ready, FHIR base /fhir")
            yield
        finally:
            if hl7 is not None:
                await hl7.stop()
            await worker.stop()
            await definitions.stop()
            if sealer is not None:
                await sealer.stop()
                with contextlib.suppress(Exception):  # what this process staged last
                    await trail.seal()
            await trail.close()
            if anchors is not None:
                await anchors.stop()
                with contextlib.suppress(Exception):  # the last head, for the next start
                    await anchors.publish()
            await database.close()

    app = Starlette(
        routes=[
            Route("/health", health),
            Route("/metrics", metrics),
            *auth_routes,
            # before the generic routes: ``/fhir/Patient/$export`` would match a read by id
            *ExportApi(exports, api.base_url).routes("/fhir"),
            *ReindexApi(reindex, api.base_url, settings.max_body_bytes).routes("/fhir"),
            *insi_routes(insi, max_body_bytes=settings.max_body_bytes),
            *lookup_routes(store, patient_index, api.base_url, settings.max_body_bytes),
            # the identitovigilance cell's review queue, decisions, merges, history
            *(review_routes(ReviewService(store, patient_index)) if patient_index else []),
            *glass_routes(BreakGlass(database, hours=settings.break_glass_hours)),
            *audit_routes(trail, context_of=context_of, wrap=fhir_endpoint),
            *api.routes("/fhir"),
        ],
        exception_handlers={HTTPException: _http_error, Exception: _unexpected_error},
        lifespan=lifespan,
    )
    # Added first, so it runs inside the metrics middleware.
    app.add_middleware(ReadByIdFastPath, endpoint=fhir_endpoint(api.instance), prefix="/fhir")
    if auth is not None:
        # added after the fast path so that it runs before it: no read without a token
        app.add_middleware(
            AuthenticationMiddleware,
            validator=auth.validator,
            protect_metrics=settings.auth_protect_metrics,
        )
    app.add_middleware(MetricsMiddleware)
    app.state.auth_enabled = auth is not None
    app.state.store = store
    app.state.jobs = jobs
    app.state.definitions = definitions
    app.state.reindex = reindex
    return app


def create_app_from_env() -> Starlette:
    """Factory for uvicorn workers: the parent process has set MAILLAGE_DATABASE_URL."""
    from maillage.settings import load_settings

    settings = load_settings()
    if not settings.database_url:
        raise RuntimeError("MAILLAGE_DATABASE_URL must be set for worker processes")
    return create_app(settings, settings.database_url, gateway=settings.hl7_enabled)
