"""ORU^R01 end to end: a real MLLP socket to the gateway, the ORU handler writing
through the FHIR store, FHIR reads over HTTP from the running hub."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from maillage.demo.sites import site_by_code
from maillage.fhir.repository import FhirStore
from maillage.fhir.search.engine import SearchEngine
from maillage.security import AllowAll
from maillage.storage import Database
from tests.factories import patient
from tests.hl7v2.conftest import (
    MllpConnection,
    RunningGateway,
    ack_code,
    refused_at_receipt,
    rows,
    wait_for,
)
from tests.hl7v2.messages import message

CHM = site_by_code("CHM")
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
INTERPRETATION = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
PI_TYPE = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "PI"}]}
DONE = ("processed", "ignored", "dead")


class ResultsGateway(RunningGateway):
    """The gateway with the default handlers and the ORU conversion (``build_gateway``
    given a FHIR store over the gateway's own pool)."""

    def fhir_store(self, database: Database) -> FhirStore:
        return FhirStore(database, AllowAll(), SearchEngine())


@pytest.fixture
def lab(hl7_database: str, http: httpx.Client) -> Iterator[ResultsGateway]:
    # ``http`` first: the FHIR tables are emptied before the gateway writes.
    running = ResultsGateway(hl7_database).start()
    try:
        yield running
    finally:
        running.stop()


def _ipp() -> str:
    return f"9{uuid.uuid4().int % 10**7:07d}"


def _create(http: httpx.Client, resource: dict[str, Any]) -> str:
    response = http.post(f"/{resource['resourceType']}", json=resource)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def _known_patient(http: httpx.Client) -> tuple[str, str]:
    """A synthetic Patient known by CHM under a fresh IPP: (IPP, id)."""
    ipp = _ipp()
    ipp_identifier = {"use": "usual", "type": PI_TYPE, "system": CHM.ipp_system, "value": ipp}
    return ipp, _create(http, patient(identifiers=[ipp_identifier]))


def _encounter(http: httpx.Client, patient_id: str, visit: str) -> str:
    return _create(
        http,
        {
            "resourceType": "Encounter",
            "identifier": [{"system": f"urn:oid:{CHM.visit_oid}", "value": visit}],
            "status": "in-progress",
            "class": {
                "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                "code": "IMP",
            },
            "subject": {"reference": f"Patient/{patient_id}"},
        },
    )


def _oru(control_id: str, ipp: str, order: str, visit: str = "", **fields: str) -> bytes:
    values = {
        "order": order,
        "visit": visit,
        "report_status": "F",
        "nm_value": "2.40",
        "nm_status": "F",
        "extra_obx": "",
        **fields,
    }
    return message("oru_r01_lab", control_id=control_id, ipp=ipp, application="LAB", fields=values)


def _send(lab: ResultsGateway, payload: bytes, control_id: str) -> tuple[str, str | None]:
    """Send one message, wait until it is processed, dead or ignored: (status, reason)."""
    with MllpConnection(lab.port) as client:
        assert ack_code(client.exchange(payload)) == "AA"
    query = "SELECT status, error FROM hl7_message WHERE control_id = %s"

    def done() -> bool:
        found = rows(lab.conninfo, query, (control_id,))
        return bool(found) and found[0][0] in DONE

    wait_for(done, what=f"message {control_id} processed")
    status, reason = rows(lab.conninfo, query, (control_id,))[0]
    return str(status), reason


def _search(http: httpx.Client, resource_type: str, **params: str) -> list[dict[str, Any]]:
    response = http.get(f"/{resource_type}", params=params)
    assert response.status_code == 200, response.text
    return [entry["resource"] for entry in response.json().get("entry", [])]


def _observation(http: httpx.Client, order: str, set_id: int) -> dict[str, Any]:
    found = _search(http, "Observation", identifier=f"urn:oid:{CHM.order_oid}|{order}-{set_id}")
    assert len(found) == 1, found
    return found[0]


def test_an_oru_gives_a_report_and_its_observations_for_the_right_patient_and_encounter(
    lab: ResultsGateway, http: httpx.Client
) -> None:
    ipp, patient_id = _known_patient(http)
    _known_patient(http)  # another patient of the site: not the one
    encounter_id = _encounter(http, patient_id, "V-2026-0001")

    status, reason = _send(lab, _oru("ORU-A1", ipp, "RES-A1", "V-2026-0001"), "ORU-A1")
    assert (status, reason) == ("processed", None)

    reports = _search(http, "DiagnosticReport", subject=f"Patient/{patient_id}")
    assert len(reports) == 1
    report = reports[0]
    assert report["identifier"][0] == {
        "system": f"urn:oid:{CHM.order_oid}",
        "value": "RES-A1",
        "type": {
            "coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "FILL"}]
        },
    }
    assert report["status"] == "final"
    assert report["code"]["coding"][0] == {
        "system": LOINC,
        "code": "24331-1",
        "display": "Lipid panel",
    }
    assert report["effectiveDateTime"] == "2026-01-15T08:00:00+01:00"
    assert report["issued"] == "2026-01-15T10:00:00+01:00"
    assert report["encounter"] == {"reference": f"Encounter/{encounter_id}"}
    assert report["performer"][0]["identifier"]["value"] == CHM.finess_et

    observations = _search(http, "Observation", subject=f"Patient/{patient_id}")
    assert len(observations) == 3
    assert sorted(ref["reference"] for ref in report["result"]) == sorted(
        f"Observation/{found['id']}" for found in observations
    )
    for found in observations:
        assert found["encounter"] == {"reference": f"Encounter/{encounter_id}"}

    numeric = _observation(http, "RES-A1", 1)
    assert numeric["status"] == "final"
    assert numeric["code"]["coding"][0]["system"] == LOINC
    assert numeric["code"]["coding"][0]["code"] == "2571-8"
    assert numeric["valueQuantity"] == {"value": 2.4, "unit": "g/L", "system": UCUM, "code": "g/L"}
    assert numeric["referenceRange"][0]["low"]["value"] == 0.35
    assert numeric["referenceRange"][0]["high"] == {
        "value": 1.5,
        "unit": "g/L",
        "system": UCUM,
        "code": "g/L",
    }
    assert numeric["interpretation"][0]["coding"][0] == {
        "system": INTERPRETATION,
        "code": "H",
        "display": "High",
    }
    assert numeric["effectiveDateTime"] == "2026-01-15T08:30:00+01:00"

    text = _observation(http, "RES-A1", 2)
    assert text["valueString"] == "Sérum lactescent"
    coded = _observation(http, "RES-A1", 3)
    assert coded["valueCodeableConcept"]["coding"][0] == {
        "system": f"urn:oid:{CHM.lab_code_oid}",
        "code": "LACT",
        "display": "Lactescent",
    }
    # searchable by the LOINC code
    assert len(_search(http, "Observation", code=f"{LOINC}|2571-8")) == 1


def test_a_local_code_is_mapped_to_loinc_and_kept(lab: ResultsGateway, http: httpx.Client) -> None:
    ipp, patient_id = _known_patient(http)
    glucose = "OBX|4|NM|GLY^Glycémie^L||5.2|mmol/L|3.9-5.8|N|||F"
    serum = "SPM|1|SP-B1^SP-B1-F||SER^Sérum^L" + "|" * 13 + "20260115074500|20260115080500"
    fields = {"extra_obx": f"{glucose}\r{serum}"}
    status, reason = _send(lab, _oru("ORU-B1", ipp, "RES-B1", **fields), "ORU-B1")
    assert (status, reason) == ("processed", None)

    found = _observation(http, "RES-B1", 4)
    assert found["code"]["coding"] == [
        {"system": LOINC, "code": "2345-7"},
        {"system": f"urn:oid:{CHM.lab_code_oid}", "code": "GLY", "display": "Glycémie"},
    ]
    # a plain unit is taken as UCUM
    assert found["valueQuantity"] == {
        "value": 5.2,
        "unit": "mmol/L",
        "system": UCUM,
        "code": "mmol/L",
    }
    assert found["subject"] == {"reference": f"Patient/{patient_id}"}
    assert "encounter" not in found  # no PV1-19
    assert len(_search(http, "Observation", code=f"{LOINC}|2345-7")) == 1

    # the SPM segment gives the Specimen the report and its results refer to
    specimens = _search(http, "Specimen")
    assert len(specimens) == 1
    sample = specimens[0]
    assert sample["identifier"][0] == {"system": f"urn:oid:{CHM.order_oid}", "value": "SP-B1-F"}
    assert sample["type"]["coding"][0]["code"] == "SER"
    assert sample["collection"] == {"collectedDateTime": "2026-01-15T07:45:00+01:00"}
    assert sample["receivedTime"] == "2026-01-15T08:05:00+01:00"
    assert sample["subject"] == {"reference": f"Patient/{patient_id}"}
    assert found["specimen"] == {"reference": f"Specimen/{sample['id']}"}
    report = _search(http, "DiagnosticReport", identifier=f"urn:oid:{CHM.order_oid}|RES-B1")[0]
    assert report["specimen"] == [{"reference": f"Specimen/{sample['id']}"}]


def test_a_correction_updates_the_same_observation_with_history(
    lab: ResultsGateway, http: httpx.Client
) -> None:
    ipp, _ = _known_patient(http)
    preliminary = _oru("ORU-C1", ipp, "RES-C1", nm_status="P", report_status="P")
    assert _send(lab, preliminary, "ORU-C1")[0] == "processed"
    first = _observation(http, "RES-C1", 1)
    assert first["status"] == "preliminary"
    assert first["meta"]["versionId"] == "1"

    corrected = _oru("ORU-C2", ipp, "RES-C1", nm_value="2.10", nm_status="C", report_status="C")
    assert _send(lab, corrected, "ORU-C2")[0] == "processed"

    after = _observation(http, "RES-C1", 1)
    assert after["id"] == first["id"]
    assert after["meta"]["versionId"] == "2"
    assert after["status"] == "corrected"
    assert after["valueQuantity"]["value"] == 2.1
    assert len(_search(http, "Observation", identifier=f"urn:oid:{CHM.order_oid}|RES-C1-1")) == 1
    history = http.get(f"/Observation/{first['id']}/_history").json()
    versions = sorted(entry["resource"]["meta"]["versionId"] for entry in history["entry"])
    assert versions == ["1", "2"]
    old = http.get(f"/Observation/{first['id']}/_history/1").json()
    assert old["valueQuantity"]["value"] == 2.4
    reports = _search(http, "DiagnosticReport", identifier=f"urn:oid:{CHM.order_oid}|RES-C1")
    assert len(reports) == 1 and reports[0]["status"] == "corrected"
    assert reports[0]["meta"]["versionId"] == "2"


def test_a_replayed_message_writes_nothing_new(lab: ResultsGateway, http: httpx.Client) -> None:
    ipp, _ = _known_patient(http)
    assert _send(lab, _oru("ORU-D1", ipp, "RES-D1"), "ORU-D1")[0] == "processed"
    # the same result sent again under a new control id, then the first one replayed
    assert _send(lab, _oru("ORU-D2", ipp, "RES-D1"), "ORU-D2")[0] == "processed"
    report = lab.call(lab.gateway.replay(message_id=1))  # type: ignore[union-attr]
    assert report.requeued == 1
    wait_for(
        lambda: (
            rows(lab.conninfo, "SELECT status FROM hl7_message WHERE id = 1")[0][0] == "processed"
        ),
        what="replayed message processed",
    )
    wait_for(
        lambda: not rows(lab.conninfo, "SELECT 1 FROM hl7_message WHERE status = 'received'"),
        what="nothing waiting",
    )

    observations = _search(http, "Observation")
    assert len(_search(http, "DiagnosticReport")) == 1
    assert len(observations) == 3
    assert all(found["meta"]["versionId"] == "1" for found in observations)
    assert _search(http, "DiagnosticReport")[0]["meta"]["versionId"] == "1"


def test_an_unknown_ipp_fails_with_the_reason_and_writes_nothing(
    lab: ResultsGateway, http: httpx.Client
) -> None:
    _known_patient(http)
    status, reason = _send(lab, _oru("ORU-E1", _ipp(), "RES-E1"), "ORU-E1")
    assert status == "dead"  # retried hl7_max_attempts times, then dead-lettered
    assert reason is not None
    assert "PID-3: no Patient carries this IPP of site CHM" in reason
    assert _search(http, "Observation") == []
    assert _search(http, "DiagnosticReport") == []


def test_a_bad_numeric_value_is_answered_ae_naming_obx5_and_writes_nothing(
    lab: ResultsGateway, http: httpx.Client
) -> None:
    ipp, _ = _known_patient(http)
    bad = "OBX|4|NM|GLY^Glycémie^L||abc|mmol/L|3.9-5.8|N|||F"
    payload = _oru("ORU-F1", ipp, "RES-F1", extra_obx=bad)
    error = refused_at_receipt(lab.port, lab.conninfo, payload, "ORU-F1")
    assert error.startswith("OBX-5 of OBX 4: 'abc' is not a number (NM)"), error
    assert _search(http, "Observation") == []
    assert _search(http, "DiagnosticReport") == []


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"nm_value": "1.0|g/L|||||F|||2026013"}, "OBX-14 of OBX 1"),
        ({"extra_obx": "OBX|4|NM|||5.2|mmol/L||N|||F"}, "OBX-3 of OBX 4"),
        ({"report_status": "Z"}, "OBR-25 of OBR 1"),
    ],
)
def test_other_data_errors_are_answered_ae_naming_their_field(
    lab: ResultsGateway, http: httpx.Client, fields: dict[str, str], field: str
) -> None:
    ipp, _ = _known_patient(http)
    payload = _oru("ORU-G1", ipp, "RES-G1", **fields)
    error = refused_at_receipt(lab.port, lab.conninfo, payload, "ORU-G1")
    assert error.startswith(field), error
    assert _search(http, "Observation") == []
