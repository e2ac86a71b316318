"""Token ``:in`` / ``:not-in`` against stored and shipped value sets."""

from __future__ import annotations

from typing import Any

import httpx

from tests import factories
from tests.factories import SNOMED
from tests.fhir.search.conftest import NURSE, HidingPolicy, hidden
from tests.fhir.support import assert_outcome, body, create

STRICT = {"Prefer": "handling=strict"}
GENDER_VS = "http://hl7.org/fhir/ValueSet/administrative-gender"
GENDER = "http://hl7.org/fhir/administrative-gender"
ICD10 = "http://hl7.org/fhir/sid/icd-10"
HYPERTENSION, DIABETES, ASTHMA = "38341003", "73211009", "195967001"


def _ids(http: httpx.Client, path: str, params: Any, **headers: str) -> set[str]:
    response = http.get(path, params=params, headers={**STRICT, **headers})
    assert response.status_code == 200, response.text
    return {item["resource"]["id"] for item in body(response).get("entry", [])}


def _conditions(http: httpx.Client) -> dict[str, str]:
    """One Condition per code (SNOMED CT, and one ICD-10), by code: their ids."""
    patient = create(http, factories.patient())
    subject = f"Patient/{patient['id']}"
    found = {
        code: create(http, factories.condition(subject=subject, code=code))["id"]
        for code in (HYPERTENSION, DIABETES, ASTHMA)
    }
    found["I10"] = create(http, factories.condition(subject=subject, code="I10", system=ICD10))[
        "id"
    ]
    return found


def test_in_and_not_in_a_stored_value_set(http: httpx.Client) -> None:
    ids = _conditions(http)
    cardio = create(http, factories.value_set(include=[factories.concepts(SNOMED, HYPERTENSION)]))
    metabolic = create(
        http,
        factories.value_set(
            include=[factories.concepts(SNOMED, DIABETES), factories.concepts(ICD10, "I10")]
        ),
    )
    assert _ids(http, "/Condition", {"code:in": cardio["url"]}) == {ids[HYPERTENSION]}
    assert _ids(http, "/Condition", {"code:in": metabolic["url"]}) == {ids[DIABETES], ids["I10"]}
    # comma = OR of the value sets; :not-in = in none of them
    both = f"{cardio['url']},{metabolic['url']}"
    assert _ids(http, "/Condition", {"code:in": both}) == {
        ids[HYPERTENSION],
        ids[DIABETES],
        ids["I10"],
    }
    assert _ids(http, "/Condition", {"code:not-in": cardio["url"]}) == {
        ids[DIABETES],
        ids[ASTHMA],
        ids["I10"],
    }
    assert _ids(http, "/Condition", {"code:not-in": both}) == {ids[ASTHMA]}
    # the self link keeps the parameter
    link = body(http.get("/Condition", params={"code:in": cardio["url"]}))["link"][0]["url"]
    assert "code%3Ain=" in link or "code:in=" in link


def test_value_set_importing_another_and_a_whole_system(http: httpx.Client) -> None:
    ids = _conditions(http)
    cardio = create(http, factories.value_set(include=[factories.concepts(SNOMED, HYPERTENSION)]))
    # every SNOMED CT code but asthma: a whole system, read by its system column
    snomed = create(
        http,
        factories.value_set(
            include=[{"system": SNOMED}], exclude=[factories.concepts(SNOMED, ASTHMA)]
        ),
    )
    assert _ids(http, "/Condition", {"code:in": snomed["url"]}) == {
        ids[HYPERTENSION],
        ids[DIABETES],
    }
    assert _ids(http, "/Condition", {"code:not-in": snomed["url"]}) == {ids[ASTHMA], ids["I10"]}
    importing = create(
        http,
        factories.value_set(
            include=[{"valueSet": [cardio["url"]]}, factories.concepts(ICD10, "I10")]
        ),
    )
    assert _ids(http, "/Condition", {"code:in": importing["url"]}) == {
        ids[HYPERTENSION],
        ids["I10"],
    }
    # and through a reverse chain
    patients = _ids(http, "/Patient", {"_has:Condition:subject:code:in": importing["url"]})
    assert len(patients) == 1


def test_shipped_value_set_on_a_code_element(http: httpx.Client) -> None:
    female = create(http, factories.patient(gender="female"))
    male = create(http, factories.patient(gender="male"))
    unknown = create(http, factories.patient(gender="unknown"))
    no_gender = factories.patient()
    del no_gender["gender"]
    without = create(http, no_gender)
    assert _ids(http, "/Patient", {"gender:in": GENDER_VS}) == {
        female["id"],
        male["id"],
        unknown["id"],
    }
    assert _ids(http, "/Patient", {"gender:in": GENDER_VS + "|4.0.1"}) == {
        female["id"],
        male["id"],
        unknown["id"],
    }
    assert _ids(http, "/Patient", {"gender:not-in": GENDER_VS}) == {without["id"]}
    # a stored ValueSet with the same url takes precedence over the shipped one
    create(http, factories.value_set(url=GENDER_VS, include=[factories.concepts(GENDER, "male")]))
    assert _ids(http, "/Patient", {"gender:in": GENDER_VS}) == {male["id"]}
    # the shipped one is still there by its version
    assert len(_ids(http, "/Patient", {"gender:in": GENDER_VS + "|4.0.1"})) == 3


def test_unknown_or_unexpandable_value_sets_are_400(http: httpx.Client) -> None:
    create(http, factories.patient())
    missing = "http://example.org/fhir/ValueSet/nowhere"
    for headers in ({}, STRICT):  # a value error, lenient handling too
        assert_outcome(
            http.get("/Patient", params={"gender:in": missing}, headers=headers),
            400,
            code="not-found",
            says=missing,
        )
    assert_outcome(
        http.get("/Condition", params={"code:not-in": missing}), 400, says="unknown value set"
    )
    snomed_filter = "http://hl7.org/fhir/ValueSet/clinical-findings"
    assert_outcome(
        http.get("/Condition", params={"code:in": snomed_filter}),
        400,
        code="not-supported",
        says="cannot be expanded here",
    )


def test_a_hidden_value_set_is_unknown_to_who_cannot_see_it(
    http: httpx.Client, hiding: HidingPolicy
) -> None:
    ids = _conditions(http)
    secret = create(
        http, hidden(factories.value_set(include=[factories.concepts(SNOMED, DIABETES)]))
    )
    assert _ids(http, "/Condition", {"code:in": secret["url"]}) == {ids[DIABETES]}
    assert_outcome(
        http.get("/Condition", params={"code:in": secret["url"]}, headers=NURSE),
        400,
        says=secret["url"],
    )
    hiding.refused = frozenset({"ValueSet"})
    assert_outcome(http.get("/Condition", params={"code:in": secret["url"]}, headers=NURSE), 403)
