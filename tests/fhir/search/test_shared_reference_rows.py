"""A reference parameter read from another's rows (``Observation?patient`` from the
``subject`` rows to a Patient): every way of searching it answers as if it had rows of
its own, and a subject that is not a Patient is never taken for one."""

from __future__ import annotations

from typing import Any

import httpx
from fhirpy import SyncFHIRClient

from maillage.fhir.definitions import reference_rows
from maillage.fhir.indexing.extractor import extract_index
from tests import factories
from tests.fhir.support import body, create

STRICT = {"Prefer": "handling=strict"}
INS_TEST = "urn:oid:1.2.250.1.213.1.4.10"


def _found(http: httpx.Client, path: str, params: Any) -> list[tuple[str, str, str]]:
    response = http.get(path, params=params, headers=STRICT)
    assert response.status_code == 200, response.text
    return [
        (entry["search"]["mode"], entry["resource"]["resourceType"], entry["resource"]["id"])
        for entry in body(response).get("entry", [])
    ]


def _ids(http: httpx.Client, path: str, params: Any) -> set[str]:
    return {found[2] for found in _found(http, path, params) if found[0] == "match"}


def _record(http: httpx.Client) -> dict[str, dict[str, Any]]:
    """Two patients, a group, and observations about each (one of them only by an
    identifier naming its type, one by an identifier alone)."""
    anna = create(http, factories.patient(family="Aubert", given=("Anna",)))
    basile = create(http, factories.patient(family="Besson", given=("Basile",)))
    group = create(http, {"resourceType": "Group", "type": "person", "actual": True})
    on_anna = create(
        http,
        factories.observation(code="8867-4")
        | {
            "subject": {
                "reference": f"Patient/{anna['id']}",
                "identifier": {"system": INS_TEST, "value": "A1"},
            }
        },
    )
    on_basile = create(
        http, factories.observation(code="2339-0", subject=f"Patient/{basile['id']}")
    )
    on_group = create(http, factories.observation(code="8867-4", subject=f"Group/{group['id']}"))
    typed = create(
        http,
        factories.observation()
        | {"subject": {"type": "Patient", "identifier": {"system": INS_TEST, "value": "T9"}}},
    )
    untyped = create(
        http,
        factories.observation() | {"subject": {"identifier": {"system": INS_TEST, "value": "U9"}}},
    )
    return {
        "anna": anna,
        "basile": basile,
        "group": group,
        "on_anna": on_anna,
        "on_basile": on_basile,
        "on_group": on_group,
        "typed": typed,
        "untyped": untyped,
    }


def test_the_patient_parameter_has_no_rows_of_its_own() -> None:
    assert reference_rows("Observation", "patient") == ("subject", "Patient")
    assert reference_rows("Encounter", "practitioner") == ("participant", "Practitioner")
    assert reference_rows("Observation", "subject") == ("subject", None)
    assert reference_rows("AllergyIntolerance", "patient") == ("patient", None)
    rows = extract_index(factories.observation(subject="Patient/p1"))
    assert [row for row in rows.reference if row[0] == "patient"] == []
    assert ("subject", "Patient", "p1", None) in rows.reference


def test_an_identifier_row_carries_the_type_its_reference_names() -> None:
    named = {"reference": "Patient/p1", "identifier": {"system": "urn:s", "value": "1"}}
    typed = {"type": "Patient", "identifier": {"system": "urn:s", "value": "2"}}
    untyped = {"identifier": {"system": "urn:s", "value": "3"}}
    rows = extract_index(factories.observation(focus=[named, typed, untyped]))
    focus = {row[1:] for row in rows.reference if row[0] == "focus"}
    assert focus == {
        ("Patient", "p1", None),
        ("Patient", None, "urn:s|1"),
        ("Patient", None, "urn:s|2"),
        (None, None, "urn:s|3"),
    }


def test_patient_searches_read_the_subject_rows_to_a_patient(http: httpx.Client) -> None:
    chart = _record(http)
    anna, group = chart["anna"]["id"], chart["group"]["id"]
    assert _ids(http, "/Observation", {"patient": anna}) == {chart["on_anna"]["id"]}
    assert _ids(http, "/Observation", {"patient": f"Patient/{anna}"}) == {chart["on_anna"]["id"]}
    assert _ids(http, "/Observation", {"patient": group}) == set()
    assert _ids(http, "/Observation", {"subject": group}) == {chart["on_group"]["id"]}
    assert _ids(http, "/Observation", {"patient:Patient": anna}) == {chart["on_anna"]["id"]}
    assert _ids(http, "/Observation", {"patient:identifier": f"{INS_TEST}|A1"}) == {
        chart["on_anna"]["id"]
    }
    assert _ids(http, "/Observation", {"patient:identifier": "T9"}) == {chart["typed"]["id"]}
    # An identifier alone says nothing of the type: a subject, not a patient.
    assert _ids(http, "/Observation", {"patient:identifier": "U9"}) == set()
    assert _ids(http, "/Observation", {"subject:identifier": "U9"}) == {chart["untyped"]["id"]}
    assert _ids(http, "/Observation", {"patient:missing": "true"}) == {
        chart["on_group"]["id"],
        chart["untyped"]["id"],
    }
    assert _ids(http, "/Observation", {"patient:missing": "false"}) == {
        chart["on_anna"]["id"],
        chart["on_basile"]["id"],
        chart["typed"]["id"],
    }
    assert _ids(http, f"/Patient/{anna}/Observation", {}) == {chart["on_anna"]["id"]}


def test_chains_has_and_sort_through_the_patient_parameter(http: httpx.Client) -> None:
    chart = _record(http)
    assert _ids(http, "/Observation", {"patient.name": "aubert"}) == {chart["on_anna"]["id"]}
    assert _ids(http, "/Patient", {"_has:Observation:patient:code": "2339-0"}) == {
        chart["basile"]["id"]
    }
    assert _ids(http, "/Group", {"_has:Observation:subject:code": "8867-4"}) == {
        chart["group"]["id"]
    }
    ordered = _found(http, "/Observation", {"patient:missing": "false", "_sort": "patient"})
    # by the least of each one's patient rows: Patient/<id>, then the identifier's URL
    by_reference = sorted(
        [(f"Patient/{chart['anna']['id']}", chart["on_anna"]["id"]),
         (f"Patient/{chart['basile']['id']}", chart["on_basile"]["id"])],
    )  # fmt: skip
    expected = [pair[1] for pair in by_reference] + [chart["typed"]["id"]]
    assert [found[2] for found in ordered] == expected


def test_includes_through_the_patient_parameter(http: httpx.Client, fhir: SyncFHIRClient) -> None:
    chart = _record(http)
    found = _found(http, "/Observation", {"_include": "Observation:patient"})
    included = {(kind, rid) for mode, kind, rid in found if mode == "include"}
    assert included == {("Patient", chart["anna"]["id"]), ("Patient", chart["basile"]["id"])}
    wildcard = _found(http, "/Observation", {"_include": "Observation:*"})
    assert ("include", "Group", chart["group"]["id"]) in wildcard
    reverse = (
        fhir.resources("Patient")
        .search(_id=chart["anna"]["id"])
        .revinclude("Observation", "patient")
        .fetch_raw()
    )
    kinds = {(entry.resource.resourceType, entry.resource.id) for entry in reverse.entry}
    assert kinds == {("Patient", chart["anna"]["id"]), ("Observation", chart["on_anna"]["id"])}
    on_group = _found(http, "/Group", {"_revinclude": "Observation:patient"})
    assert on_group == [("match", "Group", chart["group"]["id"])]
