"""The definitions registry: the checks of a custom SearchParameter, one generation
installed as a whole, dependent caches cleared in one place."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from maillage.errors import ValidationFailed
from maillage.fhir.capability import capability_statement
from maillage.fhir.definitions import (
    REGISTRY,
    Definitions,
    compile_custom,
    params_for,
    resource_types,
)
from maillage.fhir.indexing.extractor import extract_index


def definition(**changes: Any) -> dict[str, Any]:
    base = {
        "resourceType": "SearchParameter",
        "id": "sp",
        "url": "http://example.org/SearchParameter/marital",
        "status": "active",
        "code": "marital",
        "base": ["Patient"],
        "type": "token",
        "expression": "Patient.maritalStatus",
    }
    return {**base, **changes}


def test_a_parameter_on_resource_applies_to_every_type() -> None:
    compiled = compile_custom(
        definition(
            code="meta-origin", base=["Resource"], type="uri", expression="Resource.meta.source"
        )
    )
    assert set(compiled) == set(resource_types())
    assert compiled["Observation"].custom_id == "sp"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"base": ["Nothing"]}, "base Nothing is not a resource type"),
        ({"type": "special"}, "type 'special' is not indexed"),
        ({"code": "_hidden"}, "must be a letter"),
        ({"expression": None}, "needs an expression"),
        ({"expression": "Observation.code"}, "no part starting with Patient."),
        ({"expression": "Patient.name.given.first()"}, "outside the FHIRPath subset"),
        ({"code": "birthdate"}, "already the official parameter"),
        (
            {"type": "composite", "component": [{"definition": "urn:none", "expression": "x"}]},
            "component 'urn:none' is not a search parameter of Patient",
        ),
    ],
)
def test_a_definition_that_cannot_be_served_is_refused(
    changes: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValidationFailed, match=message):
        compile_custom(definition(**changes))


@pytest.fixture
def registry_held(monkeypatch: pytest.MonkeyPatch) -> None:
    """Hubs the session runs in this process (uvicorn threads) follow the store's
    generation every second and would put it back in the middle of the test: while it
    runs, only the test's own thread installs a generation."""
    owner = threading.get_ident()
    install = REGISTRY.install

    def install_from_owner(definitions: Definitions) -> None:
        if threading.get_ident() == owner:
            install(definitions)

    monkeypatch.setattr(REGISTRY, "install", install_from_owner)


@pytest.mark.usefixtures("registry_held")
def test_installing_a_generation_clears_the_dependent_caches() -> None:
    before = REGISTRY.current()
    resource = {"resourceType": "Patient", "maritalStatus": {"coding": [{"code": "M"}]}}
    assert not [row for row in extract_index(resource).token if row[0] == "marital"]
    try:
        REGISTRY.install(Definitions.build(before.generation + 1000, [definition()]))
        assert params_for("Patient")["marital"].custom_id == "sp"
        assert [row[2] for row in extract_index(resource).token if row[0] == "marital"] == ["M"]
        patient = next(
            r
            for r in capability_statement("http://x")["rest"][0]["resource"]
            if r["type"] == "Patient"
        )
        assert "marital" in {p["name"] for p in patient["searchParam"]}
    finally:
        REGISTRY.install(before)
    assert "marital" not in params_for("Patient")
    assert not [row for row in extract_index(resource).token if row[0] == "marital"]
