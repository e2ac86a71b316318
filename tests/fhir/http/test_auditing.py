"""Every FHIR exchange lands in the hash-chained audit: who, what, which patient, outcome."""

from __future__ import annotations

import time
from typing import Any

import httpx
import psycopg

from tests import factories

DOCTOR = {"X-Maillage-User": "Practitioner/dr-audit", "X-Maillage-Site": "CHM"}


def _events(database_url: str, count: int) -> list[tuple[Any, ...]]:
    """The audit rows once ``count`` are there (reads are written by a batching writer)."""
    deadline = time.monotonic() + 10
    while True:
        with psycopg.connect(database_url) as conn:
            rows = conn.execute(
                "SELECT who, action, outcome, patient_id, body->'subtype'->0->>'code'"
                " FROM audit_event ORDER BY seq"
            ).fetchall()
        if len(rows) >= count or time.monotonic() > deadline:
            return [tuple(row) for row in rows]
        time.sleep(0.05)


def test_reads_writes_searches_and_failures_are_audited_by_patient(
    http: httpx.Client, database_url: str
) -> None:
    patient = http.post("/Patient", json=factories.patient(), headers=DOCTOR).json()
    observation = http.post(
        "/Observation",
        json=factories.observation(subject=f"Patient/{patient['id']}"),
        headers=DOCTOR,
    ).json()
    assert http.get(f"/Observation/{observation['id']}", headers=DOCTOR).status_code == 200
    assert (
        http.get(
            "/Observation", params={"subject": f"Patient/{patient['id']}"}, headers=DOCTOR
        ).status_code
        == 200
    )
    assert http.get("/Observation/no-such-id", headers=DOCTOR).status_code == 404
    events = _events(database_url, 5)
    assert ("Practitioner/dr-audit", "C", 0, patient["id"], "create") in events
    assert ("Practitioner/dr-audit", "R", 0, patient["id"], "read") in events
    assert ("Practitioner/dr-audit", "E", 0, patient["id"], "search-type") in events
    failures = [e for e in events if e[2] == 4]
    assert failures and failures[0][1] == "R"


def test_the_patients_access_report_lists_who_looked(http: httpx.Client, database_url: str) -> None:
    patient = http.post("/Patient", json=factories.patient(), headers=DOCTOR).json()
    http.get(f"/Patient/{patient['id']}", headers=DOCTOR)
    _events(database_url, 2)
    report = http.get(
        "/AuditEvent",
        params={"patient": patient["id"]},
        headers={"X-Maillage-User": "Practitioner/dpo", "X-Maillage-Roles": "dim"},
    )
    assert report.status_code == 200, report.text
    whos = {
        agent["who"].get("reference") or agent["who"].get("display")
        for entry in report.json().get("entry", [])
        for agent in entry["resource"]["agent"]
        if agent.get("requestor")
    }
    assert "Practitioner/dr-audit" in whos
    refused = http.get("/AuditEvent", params={"patient": patient["id"]}, headers=DOCTOR)
    assert refused.status_code == 403


def _search_events(database_url: str, count: int) -> dict[str | None, list[str]]:
    """patient id -> the resources named by the search events about that patient."""
    deadline = time.monotonic() + 10
    while True:
        with psycopg.connect(database_url) as conn:
            rows = conn.execute(
                "SELECT patient_id, body FROM audit_event"
                " WHERE body->'subtype'->0->>'code' = 'search-type' ORDER BY seq"
            ).fetchall()
        if len(rows) >= count or time.monotonic() > deadline:
            return {
                patient: sorted(
                    entity["what"]["reference"]
                    for entity in body.get("entity", [])
                    if "what" in entity and entity["role"]["code"] != "1"
                )
                for patient, body in rows
            }
        time.sleep(0.05)


def test_a_search_is_audited_once_per_patient_naming_that_patients_resources(
    http: httpx.Client, clean_database: str
) -> None:
    first, second = (
        http.post("/Patient", json=factories.patient(), headers=DOCTOR).json() for _ in range(2)
    )
    observations = {
        patient["id"]: [
            http.post(
                "/Observation",
                json=factories.observation(subject=f"Patient/{patient['id']}"),
                headers=DOCTOR,
            ).json()["id"]
            for _ in range(2)
        ]
        for patient in (first, second)
    }
    found = http.get("/Observation", params={"_include": "Observation:subject"}, headers=DOCTOR)
    assert found.status_code == 200 and len(found.json()["entry"]) == 6

    events = _search_events(clean_database, 2)

    assert events == {
        patient: sorted(f"Observation/{o}" for o in ids) for patient, ids in observations.items()
    }


def _changes(database_url: str, count: int = 0) -> list[tuple[Any, ...]]:
    """The chained change events (action, interaction, last entity), once ``count`` are
    chained (a write's event is staged with it, then chained by the next seal pass)."""
    deadline = time.monotonic() + 10
    while True:
        with psycopg.connect(database_url) as conn:
            found = [
                tuple(row)
                for row in conn.execute(
                    "SELECT action, body->'subtype'->0->>'code',"
                    " body->'entity'->-1->'what'->>'reference' FROM audit_event"
                    " WHERE action IN ('C', 'U', 'D') ORDER BY seq"
                ).fetchall()
            ]
        if len(found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def _staged(database_url: str) -> int:
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT count(*) FROM audit_pending").fetchone()
        assert row is not None
        return int(row[0])


def test_each_write_is_audited_once_and_chained(http: httpx.Client, clean_database: str) -> None:
    ident = factories.identifier()
    query = {"identifier": f"{ident['system']}|{ident['value']}"}
    created = http.put(
        "/Patient", params=query, json=factories.patient(identifiers=[ident]), headers=DOCTOR
    )
    assert created.status_code == 201
    patient_id = created.json()["id"]
    updated = http.put(
        "/Patient",
        params=query,
        json=factories.patient(identifiers=[ident], gender="other"),
        headers=DOCTOR,
    )
    assert updated.status_code == 200
    assert http.delete(f"/Patient/{patient_id}", headers=DOCTOR).status_code in (200, 204)

    reference = f"Patient/{patient_id}"
    assert _changes(clean_database, 3) == [
        ("C", "create", reference),
        ("U", "update", reference),
        ("D", "delete", reference),
    ]
    assert _staged(clean_database) == 0


def test_a_failed_transaction_leaves_no_change_event(
    http: httpx.Client, clean_database: str
) -> None:
    # the second entry's body id differs from its URL's: the whole transaction fails
    bundle = factories.transaction(
        factories.entry("POST", "Patient", factories.patient()),
        factories.entry("PUT", "Patient/the-url-id", {**factories.patient(), "id": "other"}),
    )
    response = http.post("", json=bundle, headers=DOCTOR)
    assert 400 <= response.status_code < 500
    assert not http.get("/Patient").json().get("entry")
    time.sleep(1.5)  # past a sealer's turn: nothing was staged to chain
    assert _changes(clean_database) == []
    assert _staged(clean_database) == 0
