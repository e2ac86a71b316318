"""The FHIRPath subset compiled from the official R4 search parameter expressions."""

from __future__ import annotations

import pytest

from maillage.fhir.definitions import params_for
from maillage.fhir.indexing.fhirpath import CHOICE_NAMES, UnsupportedExpression, compile_expression


def values(expression: str, resource: dict) -> list:
    return [node.value for node in compile_expression(expression).evaluate(resource)]


def test_paths_flatten_repeating_elements() -> None:
    patient = {"resourceType": "Patient", "name": [{"given": ["Anne", "Marie"]}, {"given": ["Jo"]}]}
    assert values("Patient.name.given", patient) == ["Anne", "Marie", "Jo"]


def test_union_collects_both_sides() -> None:
    resource = {"resourceType": "Patient", "birthDate": "2000-01-01", "gender": "female"}
    assert values("Patient.birthDate | Patient.gender", resource) == ["2000-01-01", "female"]


def test_choice_element_is_found_with_its_type() -> None:
    observation = {"resourceType": "Observation", "valueQuantity": {"value": 5.4}}
    nodes = compile_expression("(Observation.value as Quantity)").evaluate(observation)
    assert [(node.value, node.type_hint) for node in nodes] == [({"value": 5.4}, "Quantity")]
    assert values("(Observation.value as CodeableConcept)", observation) == []


def test_a_group_followed_by_a_path_reads_the_path_inside_the_group() -> None:
    # Observation.value-string: "(Observation.value as CodeableConcept).text"
    expression = "(Observation.value as string) | (Observation.value as CodeableConcept).text"
    concept = {"resourceType": "Observation", "valueCodeableConcept": {"text": "Never smoked"}}
    narrative = {"resourceType": "Observation", "text": {"div": "<div>x</div>"}}
    assert values(expression, concept) == ["Never smoked"]
    assert values(expression, {"resourceType": "Observation", "valueString": "Jaune"}) == ["Jaune"]
    assert values(expression, narrative) == []


def test_where_resolve_is_keeps_references_to_that_type_only() -> None:
    observation = {
        "resourceType": "Observation",
        "subject": {"reference": "Group/g1"},
        "performer": [{"reference": "Patient/p1"}, {"reference": "Practitioner/d1"}],
    }
    assert values("Observation.subject.where(resolve() is Patient)", observation) == []
    assert values("Observation.performer.where(resolve() is Patient)", observation) == [
        {"reference": "Patient/p1"}
    ]


def test_where_equals_filters_on_a_child_value() -> None:
    patient = {
        "resourceType": "Patient",
        "telecom": [{"system": "phone", "value": "0102"}, {"system": "email", "value": "a@b"}],
    }
    assert values("Patient.telecom.where(system='email')", patient) == [
        {"system": "email", "value": "a@b"}
    ]


def test_functions_outside_the_subset_are_refused_not_guessed() -> None:
    with pytest.raises(UnsupportedExpression):
        compile_expression("Patient.deceased.exists() and Patient.deceased != false")


def test_most_official_parameters_compile() -> None:
    patient_params = params_for("Patient")
    for code in (
        "name",
        "family",
        "given",
        "identifier",
        "birthdate",
        "gender",
        "address",
        "general-practitioner",
        "organization",
        "telecom",
        "phone",
        "email",
    ):
        assert patient_params[code].indexed, code
    observation_params = params_for("Observation")
    for code in ("code", "subject", "patient", "date", "value-quantity", "category"):
        assert observation_params[code].indexed, code


def test_choice_names_are_the_models_choice_groups() -> None:
    """An absent element is looked up as a choice (``valueQuantity`` for ``value``) only
    when its name is in CHOICE_NAMES: a missing name would silently lose index rows."""
    from maillage.fhir.validation_schema.compiler import all_model_classes, schema_of

    groups = {group for model in all_model_classes() for group in schema_of(model).choices}
    assert groups == CHOICE_NAMES


def test_absent_choice_and_plain_elements() -> None:
    condition = {"resourceType": "Condition", "onsetDateTime": "2020-01-02", "meta": {}}
    assert values("Condition.onset", condition) == ["2020-01-02"]
    assert values("Condition.meta.tag", condition) == []
    assert values("Condition.abatement", condition) == []
