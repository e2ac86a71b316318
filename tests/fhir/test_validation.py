"""An invalid resource is refused with 422 and issues that say where and what."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests import factories
from tests.fhir.support import assert_outcome, body, create


def _issues(outcome: dict[str, Any]) -> dict[str, str]:
    """expression -> diagnostics."""
    return {
        issue["expression"][0]: issue["diagnostics"]
        for issue in outcome["issue"]
        if issue.get("expression")
    }


def test_bad_date_and_unknown_element_are_located(
    http: httpx.Client, stored_rows: Callable[[str], int]
) -> None:
    response = http.post("/Patient", json=factories.load_fixture("patient-invalid.json"))
    outcome = assert_outcome(response, 422, code="invalid")
    issues = _issues(outcome)
    assert "Patient.birthDate" in issues
    assert "date" in issues["Patient.birthDate"].lower()
    assert "Patient.favouriteColour" in issues
    assert "not permitted" in issues["Patient.favouriteColour"]
    assert all(issue["severity"] == "error" for issue in outcome["issue"])
    assert stored_rows("resource") == 0


@pytest.mark.parametrize(
    ("change", "expression", "problem"),
    [
        ({"birthDate": "1980-02-30"}, "Patient.birthDate", "day"),
        ({"name": [{"family": 12}]}, "Patient.name[0].family", "string"),
        ({"gender": ["female"]}, "Patient.gender", ""),
        ({"active": "yes"}, "Patient.active", "boolean"),
        (
            {"extension": [{"url": "http://example.org/x", "valueBoolean": "true"}]},
            "Patient.extension[0].valueBoolean",
            "boolean",
        ),
        ({"multipleBirthInteger": "2"}, "Patient.multipleBirthInteger", "number"),
    ],
)
def test_each_problem_is_named_by_its_path(
    http: httpx.Client, change: dict[str, Any], expression: str, problem: str
) -> None:
    response = http.post("/Patient", json={**factories.patient(), **change})
    issues = _issues(assert_outcome(response, 422))
    assert expression in issues, issues
    assert problem in issues[expression].lower()


def test_missing_required_elements_are_named(http: httpx.Client) -> None:
    observation = factories.observation()
    del observation["status"]
    observation["valueQuantity"]["value"] = "72"
    issues = _issues(assert_outcome(http.post("/Observation", json=observation), 422))
    assert "Observation.status" in issues
    assert "Observation.valueQuantity.value" in issues


def test_invalid_update_keeps_the_current_version(http: httpx.Client) -> None:
    created = create(http, factories.patient())
    response = http.put(f"/Patient/{created['id']}", json={**created, "birthDate": "soon"})
    assert_outcome(response, 422)
    assert body(http.get(f"/Patient/{created['id']}")) == created


def test_contained_resources_are_validated_too(http: httpx.Client) -> None:
    observation = factories.observation(
        subject="#p1", contained=[{"resourceType": "Patient", "id": "p1", "active": "no"}]
    )
    issues = _issues(assert_outcome(http.post("/Observation", json=observation), 422))
    assert "Observation.contained[0].active" in issues


def test_valid_synthetic_resources_are_accepted(http: httpx.Client) -> None:
    patient = create(http, factories.patient(active=True, multipleBirthInteger=2))
    assert create(http, factories.observation(subject=f"Patient/{patient['id']}"))["id"]
    assert create(http, factories.encounter(subject=f"Patient/{patient['id']}"))["id"]


@pytest.mark.parametrize(
    ("change", "expression"),
    [
        ({"gender": "robot"}, "Patient.gender"),  # outside the required binding
        ({"name": []}, "Patient.name"),  # FHIR JSON has no empty arrays
        ({"birthDate": None}, "Patient.birthDate"),  # nor nulls outside primitive arrays
        ({"contained": [{"resourceType": "Spaceship"}]}, "Patient.contained[0].resourceType"),
    ],
)
def test_what_the_specification_forbids_is_refused(
    http: httpx.Client, change: dict[str, Any], expression: str
) -> None:
    """fhir.resources accepts the first three and failed with a server error on the last."""
    response = http.post("/Patient", json={**factories.patient(), **change})
    assert expression in _issues(assert_outcome(response, 422))
