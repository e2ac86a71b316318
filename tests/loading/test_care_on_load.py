"""A bulk load keeps the care relationships and objections as the store's writes do: the
loader does not go through the repository's write hooks, so it computes them itself."""

from __future__ import annotations

import psycopg

from maillage.loading.service import BulkLoader
from tests import factories


def _grants(database_url: str) -> list[tuple[str, str, str]]:
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT patient_id, principal, source_id FROM care_access ORDER BY principal"
        ).fetchall()
    return [(str(a), str(b), str(c)) for a, b, c in rows]


def test_a_loaded_encounter_grants_care_and_a_reload_replaces_its_grants(
    clean_database: str,
) -> None:
    patient = {**factories.patient(), "id": "p-load-1"}
    encounter = factories.encounter(
        subject="Patient/p-load-1",
        id="e-load-1",
        status="in-progress",
        serviceProvider={"reference": "Organization/chm"},
        participant=[{"individual": {"reference": "Practitioner/dr-load"}}],
    )
    report = BulkLoader(clean_database, workers=1).load_resources([patient, encounter])
    assert not report.rejected
    assert _grants(clean_database) == [
        ("p-load-1", "Organization/chm", "e-load-1"),
        ("p-load-1", "Practitioner/dr-load", "e-load-1"),
    ]
    cancelled = {**encounter, "status": "cancelled"}
    BulkLoader(clean_database, workers=1).load_resources([cancelled])
    assert _grants(clean_database) == []


def test_a_loaded_consent_that_denies_records_the_objection(clean_database: str) -> None:
    consent = {
        "resourceType": "Consent",
        "id": "c-load-1",
        "status": "active",
        "scope": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/consentscope",
                    "code": "patient-privacy",
                }
            ]
        },
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
        "patient": {"reference": "Patient/p-load-2"},
        "policyRule": {"text": "opposition"},
        "provision": {"type": "deny"},
    }
    BulkLoader(clean_database, workers=1).load_resources([consent])
    with psycopg.connect(clean_database) as conn:
        rows = conn.execute("SELECT consent_id, patient_id FROM care_objection").fetchall()
    assert rows == [("c-load-1", "p-load-2")]
