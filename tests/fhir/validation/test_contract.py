"""validate_resource's contract, and each place where it follows the specification
rather than fhir.resources (which accepts these)."""

from __future__ import annotations

from typing import Any

import pytest

from maillage.errors import MalformedContent, NotFound, ValidationFailed
from maillage.fhir.validation import MAX_ISSUES, require_known_type, validate_resource
from maillage.fhir.validation_schema import reference
from tests import factories

EXTENSION = {"url": "http://example.org/x", "valueString": "x"}


def _expressions(resource: Any) -> list[str]:
    with pytest.raises(ValidationFailed) as raised:
        validate_resource(resource)
    for issue in raised.value.issues:
        assert issue.expression is not None
        assert issue.message.startswith(f"{issue.expression}: ")
        assert issue.severity == "error" and issue.code == "invalid"
    return [issue.expression or "" for issue in raised.value.issues]


@pytest.mark.parametrize("body", [[], "Patient", {"id": "x"}, {"resourceType": 3}])
def test_a_body_that_is_not_a_resource_is_malformed(body: Any) -> None:
    with pytest.raises(MalformedContent):
        validate_resource(body)


def test_the_url_type_must_match() -> None:
    with pytest.raises(MalformedContent):
        validate_resource(factories.patient(), expected_type="Observation")


def test_unknown_types_are_not_found() -> None:
    with pytest.raises(NotFound):
        validate_resource({"resourceType": "Spaceship"})
    with pytest.raises(NotFound):
        require_known_type("Spaceship")
    require_known_type("Patient")


def test_a_valid_resource_is_returned_unchanged() -> None:
    patient = factories.patient()
    assert validate_resource(patient, expected_type="Patient") is patient


def test_resources_inside_bundles_and_parameters_are_dispatched() -> None:
    bundle = factories.batch(
        factories.entry("POST", "Patient", {"resourceType": "Patient", "active": "yes"})
    )
    assert _expressions(bundle) == ["Bundle.entry[0].resource.active"]
    parameters = {
        "resourceType": "Parameters",
        "parameter": [{"name": "p", "resource": {"resourceType": "Patient", "gender": 1}}],
    }
    assert _expressions(factories.batch(factories.entry("POST", "Parameters", parameters))) == [
        "Bundle.entry[0].resource.parameter[0].resource.gender"
    ]
    bad_type = {"resourceType": "Bundle", "type": "batch", "entry": [{"resource": {}}]}
    assert _expressions(bad_type) == ["Bundle.entry[0].resource.resourceType"]


def test_primitive_extensions_stand_in_for_values() -> None:
    validate_resource(factories.patient(_birthDate={"extension": [EXTENSION]}))
    link = {"other": {"reference": "Patient/1"}, "_type": {"extension": [EXTENSION]}}
    validate_resource(factories.patient(link=[link]))  # a required code given as extension
    name = {"given": ["a", None], "_given": [None, {"extension": [EXTENSION]}]}
    validate_resource(factories.patient(name=[name]))
    assert _expressions(factories.patient(_active={})) == ["Patient._active"]
    no_id = {"other": {"reference": "Patient/1"}, "_type": {"id": "x"}}
    assert _expressions(factories.patient(link=[no_id])) == [
        "Patient.link[0]._type",
        "Patient.link[0].type",
    ]


def test_choice_groups() -> None:
    both = factories.patient(deceasedBoolean=False, deceasedDateTime="2020")
    assert _expressions(both) == ["Patient.deceased[x]"]
    request = {
        "resourceType": "MedicationRequest",
        "status": "active",
        "intent": "order",
        "subject": {"reference": "Patient/1"},
    }
    assert _expressions(request) == ["MedicationRequest.medication[x]"]


def test_many_problems_are_capped() -> None:
    patient = factories.patient(name=[{"family": index} for index in range(200)])
    assert len(_expressions(patient)) == MAX_ISSUES


# (change to a valid Patient, where the problem is reported): fhir.resources 8 accepts
# each, the FHIR R4 specification does not.
SPEC_OVER_MODELS: list[tuple[dict[str, Any], str]] = [
    ({"name": []}, "Patient.name"),  # JSON arrays are never empty
    ({"birthDate": None}, "Patient.birthDate"),  # null only as a placeholder in arrays
    ({"maritalStatus": {}}, "Patient.maritalStatus"),  # ele-1
    ({"maritalStatus": {"id": "x"}}, "Patient.maritalStatus"),  # ele-1
    ({"maritalStatus": '{"text": "x"}'}, "Patient.maritalStatus"),  # JSON text, not an object
    ({"active__ext": {"id": "x"}}, "Patient.active__ext"),  # a Python name, not a FHIR one
    ({"fhir_comments": "x"}, "Patient.fhir_comments"),
    ({"name": [{"resourceType": "HumanName"}]}, "Patient.name[0].resourceType"),
    ({"contained": [{"id": "x"}]}, "Patient.contained[0].resourceType"),
    (
        {"contained": [{"resourceType": "Patient", "contained": [{"resourceType": "Patient"}]}]},
        "Patient.contained[0].contained",  # dom-2
    ),
    (
        {"contained": [{"resourceType": "Citation", "status": "draft"}]},
        "Patient.contained[0].resourceType",  # an R4B type, not an R4 one
    ),
    ({"gender": "robot"}, "Patient.gender"),  # required binding
    ({"name": [{"given": ["a", None]}]}, "Patient.name[0].given[1]"),
    ({"name": [{"given": ["a"], "_given": [None, None]}]}, "Patient.name[0]._given"),
    ({"_active": {"id": "x"}}, "Patient._active"),  # ele-1: no value, no extension
    ({"deceasedDateTime": 0}, "Patient.deceasedDateTime"),  # read as a Unix time
    ({"implicitRules": "a b"}, "Patient.implicitRules"),
    ({"implicitRules": ""}, "Patient.implicitRules"),
    ({"id": "x" * 65}, "Patient.id"),
    ({"multipleBirthInteger": 2.0}, "Patient.multipleBirthInteger"),
    ({"text": {"status": "generated", "div": "plain"}}, "Patient.text.div"),
    ({"photo": [{"data": "ab$c="}]}, "Patient.photo[0].data"),
    ({"photo": [{"url": "http://a b"}]}, "Patient.photo[0].url"),
]


@pytest.mark.parametrize(("change", "expression"), SPEC_OVER_MODELS)
def test_the_specification_wins_over_the_models(change: dict[str, Any], expression: str) -> None:
    resource = factories.patient(**change)
    assert reference.problems(resource) == [], "fhir.resources now refuses it: update the doc"
    assert expression in _expressions(resource)
