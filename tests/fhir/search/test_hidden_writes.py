"""Writes apply the policy's row filter too: a row hidden from a user is not writable by them,
and deleting it looks, to them, like deleting a resource that does not exist."""

from __future__ import annotations

import httpx

from tests.fhir.search.conftest import NURSE, HidingPolicy, hidden

FHIR_JSON = {"Content-Type": "application/fhir+json"}


def _create_hidden_patient(http: httpx.Client) -> str:
    created = http.post(
        "/Patient", json=hidden({"resourceType": "Patient", "active": True}), headers=FHIR_JSON
    )
    assert created.status_code == 201
    return str(created.json()["id"])


def test_a_hidden_row_cannot_be_updated_by_who_cannot_see_it(
    http: httpx.Client, hiding: HidingPolicy
) -> None:
    patient_id = _create_hidden_patient(http)
    body = {"resourceType": "Patient", "id": patient_id, "active": False}
    refused = http.put(f"/Patient/{patient_id}", json=body, headers={**FHIR_JSON, **NURSE})
    assert refused.status_code == 403
    assert refused.json()["resourceType"] == "OperationOutcome"
    assert http.get(f"/Patient/{patient_id}").json()["active"] is True
    assert http.put(f"/Patient/{patient_id}", json=body, headers=FHIR_JSON).status_code == 200


def test_a_hidden_row_is_not_deleted_by_who_cannot_see_it(
    http: httpx.Client, hiding: HidingPolicy
) -> None:
    patient_id = _create_hidden_patient(http)
    answer = http.delete(f"/Patient/{patient_id}", headers=NURSE)
    assert answer.status_code == 204  # as for any resource that does not exist
    still_there = http.get(f"/Patient/{patient_id}")
    assert still_there.status_code == 200
    assert still_there.json()["meta"]["versionId"] == "1"


def test_a_hidden_row_cannot_be_patched_by_who_cannot_see_it(
    http: httpx.Client, hiding: HidingPolicy
) -> None:
    patient_id = _create_hidden_patient(http)
    patch = [{"op": "replace", "path": "/active", "value": False}]
    refused = http.patch(
        f"/Patient/{patient_id}",
        json=patch,
        headers={"Content-Type": "application/json-patch+json", **NURSE},
    )
    assert refused.status_code == 404
    assert http.get(f"/Patient/{patient_id}").json()["active"] is True
