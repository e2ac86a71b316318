"""Values at the edges of what PostgreSQL indexes: stored and searchable, never a 500."""

from __future__ import annotations

import httpx

FHIR_JSON = {"Content-Type": "application/fhir+json"}


def test_a_period_ending_in_year_9999_is_stored_and_found(http: httpx.Client) -> None:
    encounter = {
        "resourceType": "Encounter",
        "status": "planned",
        "class": {"code": "AMB"},
        "period": {"start": "2024-01-01", "end": "9999-12-31"},
    }
    created = http.post("/Encounter", json=encounter, headers=FHIR_JSON)
    assert created.status_code == 201, created.text
    found = http.get("/Encounter", params={"date": "le9999-12-31T23:59:59Z"})
    assert found.status_code == 200
    assert [e["resource"]["id"] for e in found.json()["entry"]] == [created.json()["id"]]


def test_a_very_long_name_is_stored_and_found_by_its_start(http: httpx.Client) -> None:
    patient = {"resourceType": "Patient", "name": [{"text": "Zacharie " * 5000}]}
    created = http.post("/Patient", json=patient, headers=FHIR_JSON)
    assert created.status_code == 201, created.text
    found = http.get("/Patient", params={"name": "zacharie zach"})
    assert found.json()["total"] == 1


def test_post_with_search_parameters_is_refused_rather_than_duplicating(
    http: httpx.Client,
) -> None:
    patient = {"resourceType": "Patient", "identifier": [{"system": "urn:x", "value": "1"}]}
    refused = http.post(
        "/Patient", params={"identifier": "urn:x|1"}, json=patient, headers=FHIR_JSON
    )
    assert refused.status_code == 400
    assert "If-None-Exist" in refused.json()["issue"][0]["diagnostics"]
    assert http.get("/Patient").json()["total"] == 0
