"""Operational endpoints of the running hub."""

from __future__ import annotations

import httpx

from tests.conftest import RunningHub


def test_health_answers_once_the_database_is_ready(hub: RunningHub) -> None:
    response = httpx.get(f"{hub.base_url}/health")
    assert response.status_code == 200
    assert response.json()["database"] == "ready"


def test_metrics_are_prometheus_text_and_count_requests(hub: RunningHub) -> None:
    httpx.get(f"{hub.base_url}/fhir/metadata")
    response = httpx.get(f"{hub.base_url}/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert 'maillage_http_requests_total{method="GET",status="200"}' in response.text


def test_unknown_paths_get_an_operation_outcome(hub: RunningHub) -> None:
    response = httpx.get(f"{hub.base_url}/nowhere")
    assert response.status_code == 404
    assert response.json()["resourceType"] == "OperationOutcome"
