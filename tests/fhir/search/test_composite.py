"""Composite parameters: components matched on the same resource, and for repeating
elements (``Observation.component``) within the same element."""

from __future__ import annotations

from typing import Any

import httpx

from tests import factories
from tests.fhir.support import assert_outcome, body, create

STRICT = {"Prefer": "handling=strict"}
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"


def _ids(http: httpx.Client, params: Any) -> set[str]:
    response = http.get("/Observation", params=params, headers=STRICT)
    assert response.status_code == 200, response.text
    return {item["resource"]["id"] for item in body(response).get("entry", [])}


def _component(code: str, value: float) -> dict[str, Any]:
    return {
        "code": {"coding": [{"system": LOINC, "code": code}]},
        "valueQuantity": {"value": value, "unit": "mm[Hg]", "system": UCUM, "code": "mm[Hg]"},
    }


def _without_quantity(resource: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in resource.items() if key != "valueQuantity"}


def test_code_value_quantity(http: httpx.Client) -> None:
    high = create(http, factories.observation(code="2339-0", value=7.2, unit="mmol/L"))
    low = create(http, factories.observation(code="2339-0", value=4.1, unit="mmol/L"))
    other = create(http, factories.observation(code="8867-4", value=90))
    assert _ids(http, {"code-value-quantity": f"{LOINC}|2339-0$gt5"}) == {high["id"]}
    assert _ids(http, {"code-value-quantity": "2339-0$lt5"}) == {low["id"]}
    assert _ids(http, {"code-value-quantity": f"2339-0$gt5|{UCUM}|mmol/L"}) == {high["id"]}
    assert _ids(http, {"code-value-quantity": "2339-0$gt5||mg"}) == set()
    # comma = OR between composite values
    either = {"code-value-quantity": "2339-0$lt5,8867-4$ge90"}
    assert _ids(http, either) == {low["id"], other["id"]}
    assert_outcome(http.get("/Observation", params={"code-value-quantity": "2339-0"}), 400)


def test_code_value_concept_and_string(http: httpx.Client) -> None:
    positive = {"coding": [{"system": "http://snomed.info/sct", "code": "10828004"}]}
    concept = create(
        http,
        _without_quantity(factories.observation(code="94500-6"))
        | {"valueCodeableConcept": positive},
    )
    create(http, factories.observation(code="94500-6"))
    text = create(
        http, _without_quantity(factories.observation(code="5778-6")) | {"valueString": "Jaune"}
    )
    for resource in (concept, text):
        assert "valueQuantity" not in resource
    assert _ids(http, {"code-value-concept": "94500-6$http://snomed.info/sct|10828004"}) == {
        concept["id"]
    }
    assert _ids(http, {"code-value-concept": "94500-6$260385009"}) == set()
    assert _ids(http, {"code-value-string": "5778-6$jau"}) == {text["id"]}


def test_component_composite_matches_within_one_component(http: httpx.Client) -> None:
    systolic, diastolic = "8480-6", "8462-4"
    pressure = create(
        http,
        factories.observation(
            code="85354-9",
            component=[_component(systolic, 140), _component(diastolic, 90)],
        ),
    )
    param = "component-code-value-quantity"
    assert _ids(http, {param: f"{LOINC}|{systolic}$gt130"}) == {pressure["id"]}
    assert _ids(http, {param: f"{diastolic}$90"}) == {pressure["id"]}
    # systolic is not 90 (diastolic is): matching across two components is not a match
    assert _ids(http, {param: f"{systolic}$90"}) == set()
    assert _ids(http, {param: f"{diastolic}$gt130"}) == set()
    # combo- covers the observation's own code/value and its components
    assert _ids(http, {"combo-code-value-quantity": f"{systolic}$140"}) == {pressure["id"]}
    assert _ids(http, {"combo-code-value-quantity": f"{systolic}$90"}) == set()


def test_missing_on_a_composite(http: httpx.Client) -> None:
    pressure = create(
        http,
        _without_quantity(
            factories.observation(
                code="85354-9", component=[_component("8480-6", 140), _component("8462-4", 90)]
            )
        ),
    )
    plain = create(http, factories.observation(code="8867-4", value=61))
    missing = {
        "component-code-value-quantity:missing": "true",
        "_id": f"{pressure['id']},{plain['id']}",
    }
    assert _ids(http, missing) == {plain["id"]}
    present = {"code-value-quantity:missing": "false", "_id": f"{pressure['id']},{plain['id']}"}
    assert _ids(http, present) == {plain["id"]}
    assert_outcome(http.get("/Observation", params={"code-value-quantity:missing": "yes"}), 400)


def test_code_value_string_reads_value_string_only(http: httpx.Client) -> None:
    # value-string also indexes valueCodeableConcept.text; code-value-string does not
    concept = create(
        http,
        _without_quantity(factories.observation(code="72166-2"))
        | {"valueCodeableConcept": {"text": "Never smoked"}},
    )
    assert _ids(http, {"value-string": "never", "_id": concept["id"]}) == {concept["id"]}
    assert _ids(http, {"code-value-string": "72166-2$never", "_id": concept["id"]}) == set()
    params = {"code-value-string:missing": "true", "_id": concept["id"]}
    assert _ids(http, params) == {concept["id"]}


def test_document_relationship_pairs_target_and_code(http: httpx.Client) -> None:
    # R4 declares the two component expressions swapped; the value is relatesto$relation
    document = {
        "resourceType": "DocumentReference",
        "status": "current",
        "relatesTo": [{"code": "replaces", "target": {"reference": "DocumentReference/old-1"}}],
        "content": [{"attachment": {"contentType": "text/plain", "url": "http://example.org/1"}}],
    }
    created = create(http, document)
    response = http.get(
        "/DocumentReference",
        params={"relationship": "DocumentReference/old-1$replaces", "_id": created["id"]},
        headers=STRICT,
    )
    assert response.status_code == 200, response.text
    assert [entry["resource"]["id"] for entry in body(response)["entry"]] == [created["id"]]
    response = http.get(
        "/DocumentReference",
        params={"relationship": "DocumentReference/old-1$appends", "_id": created["id"]},
        headers=STRICT,
    )
    assert body(response).get("entry", []) == []
