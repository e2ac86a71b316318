"""Assertions and small HTTP helpers shared by the FHIR REST tests."""

from __future__ import annotations

import time
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

FHIR_JSON = "application/fhir+json"


def body(response: httpx.Response) -> Any:
    """The JSON body of a FHIR response, after checking it is served as FHIR JSON."""
    assert response.headers["content-type"].startswith(FHIR_JSON), response.headers
    return response.json()


def assert_outcome(
    response: httpx.Response, status: int, *, code: str | None = None, says: str | None = None
) -> dict[str, Any]:
    """The response has ``status`` and an OperationOutcome (with that issue code / text)."""
    assert response.status_code == status, (response.status_code, response.text)
    outcome = body(response)
    assert outcome["resourceType"] == "OperationOutcome", outcome
    assert outcome["issue"], outcome
    if code is not None:
        assert code in [issue["code"] for issue in outcome["issue"]], outcome
    if says is not None:
        text = " ".join(issue.get("diagnostics", "") for issue in outcome["issue"])
        assert says.lower() in text.lower(), outcome
    return dict(outcome)


def create(http: httpx.Client, resource: dict[str, Any], **headers: str) -> dict[str, Any]:
    """POST a resource and return what the hub stored (201 expected)."""
    response = http.post(f"/{resource['resourceType']}", json=resource, headers=headers)
    assert response.status_code == 201, response.text
    return dict(body(response))


def put(http: httpx.Client, resource: dict[str, Any], **headers: str) -> httpx.Response:
    return http.put(f"/{resource['resourceType']}/{resource['id']}", json=resource, headers=headers)


def search_ids(http: httpx.Client, path: str, **params: Any) -> list[str]:
    response = http.get(path, params=params)
    assert response.status_code == 200, response.text
    return [item["resource"]["id"] for item in body(response).get("entry", [])]


def last_modified(response: httpx.Response) -> datetime:
    return parsedate_to_datetime(response.headers["last-modified"])


def instant(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def next_millisecond() -> None:
    """Let the clock pass a millisecond: ``meta.lastUpdated`` is stamped at the millisecond,
    so two writes a test tells apart by it must not fall within the same one."""
    time.sleep(0.002)
