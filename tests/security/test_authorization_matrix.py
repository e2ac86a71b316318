"""The authorization matrix, generated from the shipped policy (``security/data/policy.json``):
each role × with / without a care relationship × resource type × read / search / history /
update / include, every cell asserted against the running hub with the access rules on.

The types are every type a role names and the first of each group, so that a rule added
to the policy is tested without touching this file. (The ``audit`` group is served by the
audit trail, tested in ``tests/audit``.)"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from maillage.fhir.definitions import compartment_reference_params
from maillage.security.matrix import Matrix, load_matrix
from maillage.security.policy import Action
from tests import factories
from tests.conftest import RunningHub, _wait_for_definitions, empty_tables
from tests.factories import source_identity

FEED = {"X-Maillage-User": "system:feed", "X-Maillage-Roles": "service"}
CLINICIAN = "Practitioner/dr-matrix"
MED = {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "197361"}]}

Builder = Callable[[str], dict[str, Any]]
BUILDERS: dict[str, Builder] = {
    "Observation": lambda p: factories.observation(subject=f"Patient/{p}"),
    "Encounter": lambda p: factories.encounter(subject=f"Patient/{p}"),
    "Condition": lambda p: {
        "resourceType": "Condition",
        "subject": {"reference": f"Patient/{p}"},
        "code": {"text": "asthma"},
    },
    "MedicationRequest": lambda p: {
        "resourceType": "MedicationRequest",
        "status": "active",
        "intent": "order",
        "medicationCodeableConcept": MED,
        "subject": {"reference": f"Patient/{p}"},
    },
    "MedicationDispense": lambda p: {
        "resourceType": "MedicationDispense",
        "status": "completed",
        "medicationCodeableConcept": MED,
        "subject": {"reference": f"Patient/{p}"},
    },
    "MedicationAdministration": lambda p: {
        "resourceType": "MedicationAdministration",
        "status": "completed",
        "medicationCodeableConcept": MED,
        "subject": {"reference": f"Patient/{p}"},
        "effectiveDateTime": "2024-01-01T10:00:00Z",
    },
    "Appointment": lambda p: {
        "resourceType": "Appointment",
        "status": "booked",
        "participant": [{"actor": {"reference": f"Patient/{p}"}, "status": "accepted"}],
    },
    "Practitioner": lambda p: {"resourceType": "Practitioner", "name": [{"family": "Dr"}]},
    "Organization": lambda p: {"resourceType": "Organization", "name": "Clinique"},
    "ValueSet": lambda p: {"resourceType": "ValueSet", "status": "active", "name": "VS"},
    "Endpoint": lambda p: {
        "resourceType": "Endpoint",
        "status": "active",
        "connectionType": {
            "system": "http://terminology.hl7.org/CodeSystem/endpoint-connection-type",
            "code": "hl7-fhir-rest",
        },
        "payloadType": [{"text": "FHIR"}],
        "address": "https://example.org/fhir",
    },
    "CapabilityStatement": lambda p: {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": "2026-01-01",
        "kind": "instance",
        "fhirVersion": "4.0.1",
        "format": ["json"],
    },
}


def matrix() -> Matrix:
    return load_matrix(compartment_reference_params())


def types_to_test(policy: Matrix) -> list[str]:
    named = {t for rules in policy.roles.values() for t in rules.allow if t[:1].isupper()}
    firsts = {sorted(members)[0] for name, members in policy.groups.items() if name != "audit"}
    chosen = sorted({"Patient", "Observation", *named, *firsts} - policy.groups.get("audit", set()))
    missing = [t for t in chosen if t != "Patient" and t not in BUILDERS]
    assert not missing, f"add a builder for {missing} (the policy names them)"
    return chosen


@pytest.fixture(scope="module")
def world(care_hub: RunningHub, database_url: str) -> Iterator[dict[str, Any]]:
    """Two patients (one in the clinician's care) and one resource of each tested type
    per patient (non-patient types: one)."""
    import psycopg

    with psycopg.connect(database_url, autocommit=True) as conn:
        empty_tables(conn)
    _wait_for_definitions(database_url)
    policy = matrix()
    with httpx.Client(base_url=f"{care_hub.base_url}/fhir", timeout=30) as http:

        def write(resource: dict[str, Any]) -> dict[str, Any]:
            response = http.post(f"/{resource['resourceType']}", json=resource, headers=FEED)
            assert response.status_code == 201, response.text
            return dict(response.json())

        cared = write(source_identity(site=1, birth_name="Matrice", birth_date="1950-01-01"))
        other = write(source_identity(site=1, birth_name="Autre", birth_date="1951-02-02"))
        write(
            factories.encounter(
                subject=f"Patient/{cared['id']}",
                status="in-progress",
                participant=[{"individual": {"reference": CLINICIAN}}],
            )
        )
        resources: dict[tuple[str, bool], dict[str, Any]] = {
            ("Patient", True): cared,
            ("Patient", False): other,
        }
        for resource_type in types_to_test(policy):
            if resource_type == "Patient":
                continue
            if policy.is_patient_data(resource_type):
                resources[resource_type, True] = write(BUILDERS[resource_type](cared["id"]))
                resources[resource_type, False] = write(BUILDERS[resource_type](other["id"]))
            else:
                shared = write(BUILDERS[resource_type](cared["id"]))
                resources[resource_type, True] = resources[resource_type, False] = shared
        yield {"http": http, "resources": resources, "policy": policy}


def _cells() -> list[tuple[str, str, bool]]:
    policy = matrix()
    return [
        (role, resource_type, care)
        for role in sorted(policy.roles)
        for resource_type in types_to_test(policy)
        for care in (True, False)
    ]


@pytest.mark.parametrize(("role", "resource_type", "care"), _cells())
def test_cell(world: dict[str, Any], role: str, resource_type: str, care: bool) -> None:
    http: httpx.Client = world["http"]
    policy: Matrix = world["policy"]
    resource = world["resources"][resource_type, care]
    headers = {"X-Maillage-User": CLINICIAN, "X-Maillage-Site": "CHL", "X-Maillage-Roles": role}
    path = f"/{resource_type}/{resource['id']}"

    def visible(action: Action) -> bool:
        return policy.allows(role, action, resource_type) and (
            care or not policy.needs_care(role, resource_type)
        )

    read = http.get(path, headers=headers)
    expected = (
        200
        if visible(Action.READ)
        else (403 if not policy.allows(role, Action.READ, resource_type) else 404)
    )
    assert read.status_code == expected, f"read: {read.text[:300]}"

    search = http.get(f"/{resource_type}", params={"_id": resource["id"]}, headers=headers)
    if policy.allows(role, Action.SEARCH, resource_type):
        assert search.status_code == 200
        assert search.json()["total"] == (1 if visible(Action.SEARCH) else 0)
    else:
        assert search.status_code == 403

    history = http.get(f"{path}/_history", headers=headers)
    if not policy.allows(role, Action.HISTORY, resource_type):
        assert history.status_code == 403
    elif visible(Action.HISTORY):
        assert history.status_code == 200 and len(history.json()["entry"]) >= 1
    else:
        assert history.status_code == 404 or not history.json().get("entry")

    body = {k: v for k, v in resource.items() if k != "meta"}
    update = http.put(path, json=body, headers=headers)
    expected = 200 if visible(Action.UPDATE) else 403
    assert update.status_code == expected, f"update: {update.text[:300]}"


@pytest.mark.parametrize(
    ("role", "care"), [(r, c) for r in sorted(matrix().roles) for c in (True, False)]
)
def test_include_cell(world: dict[str, Any], role: str, care: bool) -> None:
    """``Observation?_include=Observation:subject``: the Patient comes with its
    Observation only to whom may see both."""
    http: httpx.Client = world["http"]
    policy: Matrix = world["policy"]
    observation = world["resources"]["Observation", care]
    headers = {"X-Maillage-User": CLINICIAN, "X-Maillage-Site": "CHL", "X-Maillage-Roles": role}
    answer = http.get(
        "/Observation",
        params={"_id": observation["id"], "_include": "Observation:subject"},
        headers=headers,
    )

    def sees(resource_type: str) -> bool:
        return policy.allows(role, Action.SEARCH, resource_type) and (
            care or not policy.needs_care(role, resource_type)
        )

    if not policy.allows(role, Action.SEARCH, "Observation"):
        assert answer.status_code == 403
        return
    kinds = sorted(e["resource"]["resourceType"] for e in answer.json().get("entry", []))
    expected = sorted(
        [t for t in ("Observation", "Patient") if sees(t)] if sees("Observation") else []
    )
    assert kinds == expected
