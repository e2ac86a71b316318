"""``GET /fhir/AuditEvent`` through a real server: a small Starlette app with the audit
route on uvicorn, a trail on the test database."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from maillage.audit import AuditTrail
from maillage.audit.http import audit_routes
from maillage.security import RequestContext
from maillage.storage import Database

from ..conftest import free_port
from .conftest import DOCTOR, run


def _context_of(request: Request) -> RequestContext:
    roles = request.headers.get("x-maillage-roles", "")
    return RequestContext(
        who=request.headers.get("x-maillage-user", "anonymous"),
        roles=frozenset(role for role in roles.split(",") if role),
    )


async def _health(_request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


@pytest.fixture(scope="module")
def served(database_url: str) -> Iterator[str]:
    database = Database(database_url, min_size=1, max_size=4)
    trail = AuditTrail(database)

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        await database.open()
        yield
        await trail.close()
        await database.close()

    app = Starlette(
        routes=[*audit_routes(trail, context_of=_context_of), Route("/health", _health)],
        lifespan=lifespan,
    )
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            time.sleep(0.05)
    else:
        raise RuntimeError("the audit test server did not start")
    try:
        yield base
    finally:
        server.should_exit = True
        thread.join(timeout=10)


DIM = {"x-maillage-user": "Practitioner/dim-1", "x-maillage-roles": "dim"}


@pytest.fixture
def http(served: str, clean_database: str) -> Iterator[httpx.Client]:
    async def accesses(trail: AuditTrail) -> None:
        for number in range(5):
            await trail.record(DOCTOR, "read", "Observation", [f"o{number}"], ["p1"])
            await asyncio.sleep(0.002)
        await trail.record(DOCTOR, "read", "Patient", ["p2"], ["p2"])

    run(clean_database, accesses)
    with httpx.Client(base_url=served, timeout=30) as client:
        yield client


def test_searchset_of_a_patients_audit(http: httpx.Client) -> None:
    answer = http.get("/fhir/AuditEvent", params={"patient": "Patient/p1"}, headers=DIM)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("application/fhir+json")
    bundle = answer.json()
    assert (bundle["resourceType"], bundle["type"]) == ("Bundle", "searchset")
    events = [entry["resource"] for entry in bundle["entry"]]
    assert len(events) == 5
    assert [event["entity"][1]["what"]["reference"] for event in events] == [
        f"Observation/o{number}" for number in (4, 3, 2, 1, 0)
    ]
    assert all(event["entity"][0]["what"] == {"reference": "Patient/p1"} for event in events)
    assert bundle["entry"][0]["fullUrl"].endswith(f"/fhir/AuditEvent/{events[0]['id']}")


def test_paging_and_dates(http: httpx.Client) -> None:
    first = http.get("/fhir/AuditEvent?patient=p1&_count=2", headers=DIM).json()
    assert len(first["entry"]) == 2
    seen = [entry["resource"]["id"] for entry in first["entry"]]
    following = next(link["url"] for link in first["link"] if link["relation"] == "next")
    while following:
        page = http.get(following, headers=DIM).json()
        seen += [entry["resource"]["id"] for entry in page["entry"]]
        following = next((x["url"] for x in page["link"] if x["relation"] == "next"), None)
    assert len(seen) == len(set(seen)) == 5
    none = http.get("/fhir/AuditEvent?patient=p1&date=ge2999-01-01", headers=DIM).json()
    assert none["entry"] == []
    today = http.get(
        "/fhir/AuditEvent", params=[("patient", "p1"), ("date", "ge2000-01-01"),
                                    ("date", "lt2999-01-01")], headers=DIM,
    ).json()  # fmt: skip
    assert len(today["entry"]) >= 5  # the searches above are audited too


def test_refusals_and_errors(http: httpx.Client) -> None:
    doctor = {"x-maillage-user": "Practitioner/dr-martin", "x-maillage-roles": "physician"}
    refused = http.get("/fhir/AuditEvent?patient=p1", headers=doctor)
    assert refused.status_code == 403
    assert refused.json()["resourceType"] == "OperationOutcome"
    assert http.get("/fhir/AuditEvent", headers=DIM).status_code == 400
    assert http.get("/fhir/AuditEvent?patient=p1&agent=x", headers=DIM).status_code == 400
    assert http.get("/fhir/AuditEvent?patient=p1&date=ge-soon", headers=DIM).status_code == 400
    assert http.get("/fhir/AuditEvent?patient=p1&_count=0", headers=DIM).status_code == 400
