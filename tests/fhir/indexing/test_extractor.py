"""Index rows extracted from a resource, as the store writes them."""

from __future__ import annotations

from maillage.fhir.indexing.extractor import extract_index


def test_patient_rows_cover_name_identifier_birthdate_and_organisation() -> None:
    rows = extract_index(
        {
            "resourceType": "Patient",
            "name": [{"family": "Lévêque", "given": ["Zoé"]}],
            "identifier": [{"system": "urn:oid:1.2.250.1.999.1", "value": "123"}],
            "birthDate": "1990-05",
            "managingOrganization": {"reference": "Organization/site-a"},
            "telecom": [{"system": "email", "value": "z@example.org"}],
        }
    )
    strings = {(param, norm) for param, norm, _ in rows.string}
    assert ("family", "leveque") in strings
    assert ("given", "zoe") in strings
    tokens = {(param, system, code) for param, system, code, _, _ in rows.token}
    assert ("identifier", "urn:oid:1.2.250.1.999.1", "123") in tokens
    assert ("email", None, "z@example.org") in tokens
    dates = {param: (low.month, high.day) for param, low, high in rows.date}
    assert dates["birthdate"] == (5, 31)
    assert ("organization", "Organization", "site-a", None) in rows.reference


def test_observation_quantity_and_subject_reference() -> None:
    rows = extract_index(
        {
            "resourceType": "Observation",
            "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "2339-0"}]},
            "subject": {"reference": "Patient/p1"},
            "valueQuantity": {
                "value": 5.4,
                "system": "http://unitsofmeasure.org",
                "code": "mmol/L",
            },
        }
    )
    assert ("subject", "Patient", "p1", None) in rows.reference
    # ``patient`` is read from these rows (definitions.reference_rows): none of its own
    assert [row for row in rows.reference if row[0] == "patient"] == []
    quantities = {(param, code) for param, _, code, _ in rows.quantity}
    assert ("value-quantity", "mmol/L") in quantities
    tokens = {(param, system, code) for param, system, code, _, _ in rows.token}
    assert ("code", "http://loinc.org", "2339-0") in tokens
    assert ("status", None, "final") in tokens


def test_very_long_texts_are_indexed_by_their_start() -> None:
    long_text = "Martin " * 150_000
    rows = extract_index({"resourceType": "Patient", "name": [{"text": long_text}]})
    names = [norm for param, norm, _ in rows.string if param == "name"]
    assert names
    for norm in names:
        assert norm.startswith("martin martin")
        assert len(norm.encode()) < 2700
