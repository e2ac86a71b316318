"""The compiled schemas hold what the R4B models define, for every model class."""

from __future__ import annotations

from typing import Any

import pytest
from fhir_core.fhirabstractmodel import FHIR_COMMENTS_FIELD_NAME

from maillage.fhir.definitions import resource_types
from maillage.fhir.validation_schema import resource_schema
from maillage.fhir.validation_schema.compiler import (
    PRIMITIVE,
    PRIMITIVE_EXT,
    RESOURCE,
    all_model_classes,
    schema_of,
)

KNOWN_PRIMITIVES = {
    "boolean",
    "string",
    "markdown",
    "code",
    "id",
    "uri",
    "url",
    "canonical",
    "oid",
    "uuid",
    "date",
    "dateTime",
    "instant",
    "time",
    "decimal",
    "integer",
    "unsignedInt",
    "positiveInt",
    "integer64",
    "base64Binary",
    "xhtml",
}


@pytest.fixture(scope="module")
def models() -> list[Any]:
    found = all_model_classes()
    assert len(found) > 400
    return found


def test_every_resource_type_compiles() -> None:
    for name in resource_types():
        schema = resource_schema(name)
        assert schema is not None and schema.is_resource and schema.name == name
    assert resource_schema("NotAType") is None


def test_every_model_key_has_a_rule_of_a_known_kind(models: list[Any]) -> None:
    for model in models:
        schema = schema_of(model)
        aliases = {
            info.alias or name
            for name, info in model.model_fields.items()
            if name != FHIR_COMMENTS_FIELD_NAME
        }
        assert set(schema.rules) == aliases, model
        for rule in schema.rules.values():
            if rule.kind == PRIMITIVE:
                assert rule.fhir_type in KNOWN_PRIMITIVES, (model, rule.key, rule.fhir_type)
            else:
                assert rule.model is not None
            if rule.kind == PRIMITIVE_EXT:
                assert rule.sibling in schema.rules, (model, rule.key)
            if rule.kind == RESOURCE:
                assert rule.fhir_type == "Resource"


def test_required_primitives_match_the_models(models: list[Any]) -> None:
    for model in models:
        schema = schema_of(model)
        expected = {
            name: None if ext is None else model.model_fields[ext].alias
            for name, ext in model.get_required_fields(None)
        }
        compiled = {
            key: sibling for key, sibling in schema.required if schema.rules[key].kind == PRIMITIVE
        }
        assert compiled == expected, model


def test_required_complex_elements_match_pydantic(models: list[Any]) -> None:
    for model in models:
        schema = schema_of(model)
        expected = {
            info.alias or name for name, info in model.model_fields.items() if info.is_required()
        }
        compiled = {key for key, _ in schema.required if schema.rules[key].kind != PRIMITIVE}
        assert compiled == expected, model


def test_choice_groups_match_the_models(models: list[Any]) -> None:
    for model in models:
        schema = schema_of(model)
        expected = {
            group: {model.model_fields[name].alias or name for name in names}
            for group, names in model.get_one_of_many_fields(None).items()
        }
        assert {group: set(keys) for group, keys in schema.choices.items()} == expected, model
        for group in schema.required_choices:
            first = model.model_fields[model.get_one_of_many_fields(None)[group][0]]
            assert first.json_schema_extra["one_of_many_required"] is True


def test_required_bindings_are_carried() -> None:
    patient = resource_schema("Patient")
    assert patient is not None
    assert patient.rules["gender"].enum == {"male", "female", "other", "unknown"}
    communication = patient.rules["communication"]
    assert communication.model is not None
    assert communication.model.__name__ == "PatientCommunication"
    assert schema_of(communication.model).required == (("language", None),)


def test_only_complete_code_lists_are_enforced(models: list[Any]) -> None:
    """fhir.resources' enum_values come from short descriptions, some truncated."""
    enforced = 0
    for model in models:
        for rule in schema_of(model).rules.values():
            if rule.enum is not None:
                enforced += 1
                assert "+" not in rule.enum and all(code.strip() == code for code in rule.enum)
    assert enforced > 250
    observation = resource_schema("Observation")
    capability = resource_schema("CapabilityStatement")
    assert observation is not None and capability is not None
    assert observation.rules["status"].enum is None  # "registered | ... | amended +"
    assert capability.rules["format"].enum is None  # "formats supported (xml | json ...)"
