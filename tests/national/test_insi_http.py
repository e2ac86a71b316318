"""``Patient/$insi-search`` and ``Patient/$insi-verify`` through a real HTTP server."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from maillage.identity.patient_traits import patient_traits
from maillage.national.insi_simulator import InsiSimulator
from tests.national.conftest import MARIE, PAUL_LYON

FHIR_JSON = "application/fhir+json"


@pytest.fixture
def client(served_simulator: tuple[str, InsiSimulator]) -> Iterator[httpx.Client]:
    base, simulator = served_simulator
    simulator.unavailable = False
    with httpx.Client(base_url=base, timeout=10, headers={"Content-Type": FHIR_JSON}) as http:
        yield http
    simulator.unavailable = False


def parameters(*items: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Parameters", "parameter": list(items)}


def values(body: dict[str, Any], name: str) -> list[Any]:
    found = []
    for parameter in body["parameter"]:
        if parameter["name"] == name:
            found.append(
                parameter.get("resource")
                or next(v for k, v in parameter.items() if k.startswith("value"))
            )
    return found


MARIE_TRAITS = (
    {"name": "birthName", "valueString": "de la Fontaine"},
    {"name": "firstName", "valueString": "Marie-Hélène"},
    {"name": "firstName", "valueString": "Jeanne"},
    {"name": "gender", "valueCode": "female"},
    {"name": "birthDate", "valueDate": "1985-03-14"},
)


def local_patient() -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "name": [{"use": "official", "family": "Martin", "given": ["Paul", "André"]}],
        "gender": "male",
        "birthDate": "1992-01-05",
    }


def test_search_by_trait_parameters_returns_the_ins_and_a_fr_core_patient(
    client: httpx.Client,
) -> None:
    response = client.post("/Patient/$insi-search", json=parameters(*MARIE_TRAITS))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith(FHIR_JSON)
    body = response.json()
    assert values(body, "status") == ["found"]
    assert values(body, "code") == ["00"]
    [ins] = values(body, "ins")
    assert ins["system"] == MARIE.oid
    assert ins["value"] == MARIE.matricule
    assert ins["type"]["coding"][0]["code"] == "INS-NIR-TEST"
    [patient] = values(body, "patient")
    assert patient["resourceType"] == "Patient"
    assert patient["identifier"] == [ins]
    assert patient["name"] == [
        {"use": "official", "family": "DE LA FONTAINE", "given": ["MARIE-HÉLÈNE", "JEANNE"]}
    ]
    assert patient["gender"] == "female"
    assert patient["birthDate"] == "1985-03-14"
    # the returned Patient reads back to the reference traits
    traits = patient_traits(patient)
    assert traits["birthplace"] == "75056"
    assert (traits["ins"], traits["ins_system"]) == (MARIE.matricule, MARIE.oid)


def test_search_with_a_patient_resource(client: httpx.Client) -> None:
    response = client.post(
        "/Patient/$insi-search", json=parameters({"name": "patient", "resource": local_patient()})
    )
    assert response.status_code == 200, response.text
    assert values(response.json(), "ins")[0]["value"] == PAUL_LYON.matricule


def test_trait_parameters_override_the_patient(client: httpx.Client) -> None:
    only_paul = {
        **local_patient(),
        "name": [{"use": "official", "family": "Martin", "given": ["Paul"]}],
    }
    several = client.post(
        "/Patient/$insi-search", json=parameters({"name": "patient", "resource": only_paul})
    ).json()
    assert values(several, "status") == ["several"]
    assert values(several, "code") == ["02"]
    assert values(several, "patient") == []
    narrowed = client.post(
        "/Patient/$insi-search",
        json=parameters(
            {"name": "patient", "resource": only_paul},
            {"name": "birthPlace", "valueString": "69123"},
        ),
    ).json()
    assert values(narrowed, "ins")[0]["value"] == PAUL_LYON.matricule


def test_search_not_found(client: httpx.Client) -> None:
    traits = [*MARIE_TRAITS[:4], {"name": "birthDate", "valueDate": "1985-03-15"}]
    body = client.post("/Patient/$insi-search", json=parameters(*traits)).json()
    assert values(body, "status") == ["not_found"]
    assert values(body, "code") == ["01"]


def test_missing_traits_answer_400_with_an_operation_outcome(client: httpx.Client) -> None:
    response = client.post("/Patient/$insi-search", json=parameters(MARIE_TRAITS[0]))
    assert response.status_code == 400
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    located = {tuple(issue.get("expression", [])) for issue in outcome["issue"]}
    assert {("first_name",), ("sex",), ("birth_date",)} <= located


@pytest.mark.parametrize(
    "body",
    [
        {"resourceType": "Patient"},
        parameters({"name": "nickname", "valueString": "Polo"}),
        parameters({"name": "patient", "resource": {"resourceType": "Observation"}}),
    ],
)
def test_malformed_requests_answer_400(client: httpx.Client, body: dict[str, Any]) -> None:
    response = client.post("/Patient/$insi-search", json=body)
    assert response.status_code == 400
    assert response.json()["resourceType"] == "OperationOutcome"


def test_verify_with_an_ins_parameter(client: httpx.Client) -> None:
    ins = {"name": "ins", "valueIdentifier": {"system": MARIE.oid, "value": MARIE.matricule}}
    verified = client.post("/Patient/$insi-verify", json=parameters(ins, *MARIE_TRAITS)).json()
    assert values(verified, "status") == ["verified"]
    assert values(verified, "differs") == []
    other_date = [*MARIE_TRAITS[:4], {"name": "birthDate", "valueDate": "1985-03-15"}]
    mismatch = client.post("/Patient/$insi-verify", json=parameters(ins, *other_date)).json()
    assert values(mismatch, "status") == ["mismatch"]
    assert values(mismatch, "differs") == ["birth_date"]


def test_verify_the_ins_a_patient_carries(client: httpx.Client) -> None:
    patient = {
        **local_patient(),
        "identifier": [{"system": PAUL_LYON.oid, "value": PAUL_LYON.matricule}],
        "gender": "female",
    }
    body = client.post(
        "/Patient/$insi-verify", json=parameters({"name": "patient", "resource": patient})
    ).json()
    assert values(body, "status") == ["mismatch"]
    assert values(body, "differs") == ["sex"]


def test_verify_needs_an_ins_and_refuses_a_wrong_key(client: httpx.Client) -> None:
    missing = client.post("/Patient/$insi-verify", json=parameters(*MARIE_TRAITS))
    assert missing.status_code == 400
    wrong = MARIE.matricule[:13] + f"{(int(MARIE.matricule[13:]) + 1) % 97:02d}"
    ins = {"name": "ins", "valueIdentifier": {"system": MARIE.oid, "value": wrong}}
    response = client.post("/Patient/$insi-verify", json=parameters(ins, *MARIE_TRAITS))
    assert response.status_code == 400
    assert response.json()["issue"][0]["code"] == "value"


def test_unavailable_teleservice_answers_503(
    client: httpx.Client, served_simulator: tuple[str, InsiSimulator]
) -> None:
    served_simulator[1].unavailable = True
    response = client.post("/Patient/$insi-search", json=parameters(*MARIE_TRAITS))
    assert response.status_code == 503
    assert response.json()["issue"][0]["code"] == "transient"


def test_only_post_and_json(client: httpx.Client) -> None:
    assert client.get("/Patient/$insi-search").status_code == 405
    xml = client.post(
        "/Patient/$insi-search",
        json=parameters(*MARIE_TRAITS),
        headers={"Accept": "application/fhir+xml"},
    )
    assert xml.status_code == 406
