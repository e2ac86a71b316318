"""No patient data in the logs at info level: names, birth dates, identifiers stay out."""

from __future__ import annotations

import logging

import httpx
import pytest

FHIR_JSON = {"Content-Type": "application/fhir+json"}
NAME, BIRTH_DATE, IPP = "Quenouille", "1961-07-14", "IPP-77341"


def test_writes_searches_and_errors_log_no_patient_data(
    indexed_http: httpx.Client, caplog: pytest.LogCaptureFixture
) -> None:
    # the hub as it ships: the patient index matches (and logs) every Patient write
    http = indexed_http
    caplog.set_level(logging.INFO)
    patient = {
        "resourceType": "Patient",
        "name": [{"family": NAME}],
        "birthDate": BIRTH_DATE,
        "identifier": [{"system": "urn:oid:2.999.250.1.1", "value": IPP}],
    }
    created = http.post("/Patient", json=patient, headers=FHIR_JSON)
    assert created.status_code == 201
    # the source identity and its territorial identity (golden record)
    assert http.get("/Patient", params={"family": NAME}).json()["total"] == 2
    invalid = http.post("/Patient", json={**patient, "birthDate": f"{NAME}"}, headers=FHIR_JSON)
    assert invalid.status_code == 422
    # the client is told what is wrong ...
    assert NAME in invalid.text
    conflict = http.post(
        "/Patient", json=patient, headers={**FHIR_JSON, "If-None-Exist": f"identifier={IPP}"}
    )
    assert conflict.status_code == 200
    # ... but the log never says it
    # the test's own HTTP client logs its request URLs: only the hub's side counts
    hub_records = [r for r in caplog.records if not r.name.startswith(("httpx", "httpcore"))]
    logged = "\n".join(record.getMessage() for record in hub_records)
    assert hub_records, "the hub logged nothing at all: the check would prove nothing"
    for secret in (NAME, NAME.lower(), BIRTH_DATE, IPP):
        assert secret not in logged
