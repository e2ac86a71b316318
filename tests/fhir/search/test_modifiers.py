"""Token ``:text`` / ``:of-type`` / ``:not``, ``:missing`` on every type, meta parameters,
``:identifier`` on references, ``:above`` / ``:below`` on uris."""

from __future__ import annotations

from typing import Any

import httpx

from tests import factories
from tests.fhir.support import assert_outcome, body, create

STRICT = {"Prefer": "handling=strict"}
V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"


def _ids(http: httpx.Client, path: str, params: Any) -> set[str]:
    response = http.get(path, params=params, headers=STRICT)
    assert response.status_code == 200, response.text
    return {item["resource"]["id"] for item in body(response).get("entry", [])}


def test_token_text_on_display_and_concept_text(http: httpx.Client) -> None:
    glucose = create(
        http,
        factories.observation(
            code="2339-0",
            display="Glucose [Mass/volume] in Blood",
            note=[{"text": "à jeun"}],
        ),
    )
    concept = factories.observation(code="8867-4")
    concept["code"]["text"] = "Fréquence cardiaque"
    pulse = create(http, concept)
    assert _ids(http, "/Observation", {"code:text": "glucose"}) == {glucose["id"]}
    assert _ids(http, "/Observation", {"code:text": "frequence"}) == {pulse["id"]}
    assert _ids(http, "/Observation", {"code:text": "glucose,FRÉQ"}) == {
        glucose["id"],
        pulse["id"],
    }
    assert _ids(http, "/Observation", {"code:text": "blood"}) == set()  # starts-with
    assert _ids(http, "/Observation", {"code": "glucose"}) == set()


def test_identifier_of_type(http: httpx.Client) -> None:
    typed = {
        "type": {"coding": [{"system": V2_0203, "code": "MR"}], "text": "Dossier"},
        "system": factories.TEST_IPP_SYSTEM,
        "value": "IPP-42",
    }
    patient = create(http, factories.patient(identifiers=[typed]))
    create(http, factories.patient(identifiers=[factories.identifier("IPP-42")]))
    assert _ids(http, "/Patient", {"identifier:of-type": f"{V2_0203}|MR|IPP-42"}) == {patient["id"]}
    assert _ids(http, "/Patient", {"identifier:of-type": f"{V2_0203}|MR|IPP-43"}) == set()
    assert _ids(http, "/Patient", {"identifier:of-type": f"{V2_0203}|PI|IPP-42"}) == set()
    assert len(_ids(http, "/Patient", {"identifier": "IPP-42"})) == 2
    assert _ids(http, "/Patient", {"identifier:text": "dossier"}) == {patient["id"]}
    assert_outcome(http.get("/Patient", params={"identifier:of-type": "MR|IPP-42"}), 400)


def test_token_not(http: httpx.Client) -> None:
    male = create(http, factories.patient(gender="male"))
    female = create(http, factories.patient(gender="female"))
    unknown = create(http, {"resourceType": "Patient"})
    assert _ids(http, "/Patient", {"gender:not": "male"}) == {female["id"], unknown["id"]}
    assert _ids(http, "/Patient", {"gender:not": "male,female"}) == {unknown["id"]}
    assert male["id"] in _ids(http, "/Patient", {"gender:not": "other"})


def test_missing_on_every_type(http: httpx.Client) -> None:
    full = create(
        http,
        factories.observation(
            subject="Patient/p1", meta={"profile": ["http://example.org/StructureDefinition/obs"]}
        ),
    )
    bare = create(http, {"resourceType": "Observation", "status": "final", "code": {"text": "x"}})
    cases = {
        "subject": "reference",
        "date": "date",
        "value-quantity": "quantity",
        "code": "token",
        "_profile": "uri",
    }
    for code in cases:
        assert _ids(http, "/Observation", {f"{code}:missing": "true"}) == {bare["id"]}, code
        assert _ids(http, "/Observation", {f"{code}:missing": "false"}) == {full["id"]}, code
    subject = {"reference": "Patient/p1"}
    researched = create(
        http, {"resourceType": "RiskAssessment", "status": "final", "subject": subject}
    )
    scored = create(
        http,
        {
            "resourceType": "RiskAssessment",
            "status": "final",
            "subject": subject,
            "prediction": [{"probabilityDecimal": 0.4}],
        },
    )
    assert _ids(http, "/RiskAssessment", {"probability:missing": "true"}) == {researched["id"]}
    assert _ids(http, "/RiskAssessment", {"probability": "0.4"}) == {scored["id"]}
    patient = create(http, factories.patient(family="Nom"))
    assert _ids(http, "/Patient", {"family:missing": "false"}) == {patient["id"]}
    assert_outcome(http.get("/Patient", params={"family:missing": "maybe"}), 400)


def test_meta_parameters(http: httpx.Client) -> None:
    meta: dict[str, Any] = {
        "tag": [{"system": "http://example.org/tags", "code": "urgent"}],
        "security": [
            {"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "R"}
        ],
        "profile": ["http://example.org/fhir/StructureDefinition/fr-patient"],
        "source": "http://site-a.example.org/dpi",
    }
    tagged = create(http, factories.patient(meta=meta))
    create(http, factories.patient())
    expected = {tagged["id"]}
    assert _ids(http, "/Patient", {"_tag": "urgent"}) == expected
    assert _ids(http, "/Patient", {"_tag": "http://example.org/tags|urgent"}) == expected
    assert _ids(http, "/Patient", {"_tag": "http://example.org/other|urgent"}) == set()
    assert len(_ids(http, "/Patient", {"_tag:not": "urgent"})) == 1
    assert _ids(http, "/Patient", {"_security": "R"}) == expected
    assert _ids(http, "/Patient", {"_profile": meta["profile"][0]}) == expected
    assert _ids(http, "/Patient", {"_source": meta["source"]}) == expected
    assert _ids(http, "/Patient", {"_profile:below": "http://example.org/fhir/"}) == expected
    above = "http://example.org/fhir/StructureDefinition/fr-patient/_history/2"
    assert _ids(http, "/Patient", {"_profile:above": above}) == expected
    assert _ids(http, "/Patient", {"_profile:above": "http://example.org/fhir"}) == set()
    assert _ids(http, "/Patient", {"_profile:below": "http://example.org/fhir/Other"}) == set()


def test_reference_identifier_and_type_modifiers(http: httpx.Client) -> None:
    ins = {"system": "urn:oid:1.2.250.1.213.1.4.10", "value": "T123"}
    by_identifier = create(
        http,
        factories.observation() | {"subject": {"identifier": ins, "display": "Patient INS"}},
    )
    create(http, factories.observation(subject="Patient/p2"))
    assert _ids(http, "/Observation", {"subject:identifier": f"{ins['system']}|T123"}) == {
        by_identifier["id"]
    }
    assert _ids(http, "/Observation", {"subject:identifier": "T123"}) == {by_identifier["id"]}
    assert _ids(http, "/Observation", {"subject:identifier": "urn:oid:9|T123"}) == set()
    assert len(_ids(http, "/Observation", {"subject:Patient": "p2"})) == 1
    assert _ids(http, "/Observation", {"subject:Group": "p2"}) == set()
    assert_outcome(
        http.get("/Observation", params={"subject:Spaceship": "p2"}, headers=STRICT), 400
    )


def test_reference_by_url_and_identifier_together(http: httpx.Client) -> None:
    """A reference kept by a URL that names no Type/id, with an identifier beside it: found
    by either, and not by the other references' ids."""
    urn = "urn:uuid:0f9b7c52-6f2e-4b8e-9d43-1c2a3b4c5d6e"
    ins = {"system": "urn:oid:1.2.250.1.213.1.4.10", "value": "T456"}
    both = create(
        http, factories.observation() | {"subject": {"reference": urn, "identifier": ins}}
    )
    create(http, factories.observation(subject="Patient/p3"))
    assert _ids(http, "/Observation", {"subject": urn}) == {both["id"]}
    assert _ids(http, "/Observation", {"subject:identifier": "T456"}) == {both["id"]}
    assert _ids(http, "/Observation", {"subject": "urn:uuid:other"}) == set()
    assert _ids(http, "/Observation", {"subject:missing": "false"}) >= {both["id"]}


def test_canonical_reference_by_its_url(http: httpx.Client) -> None:
    """A canonical element (QuestionnaireResponse.questionnaire) is found by its URL, even
    though the URL has a Type/id shape; a relative Type/id finds the references only."""
    url = "http://example.org/fhir/Questionnaire/phq-9"
    phq = create(
        http, {"resourceType": "QuestionnaireResponse", "status": "completed", "questionnaire": url}
    )
    create(
        http,
        {
            "resourceType": "QuestionnaireResponse",
            "status": "completed",
            "questionnaire": "http://example.org/fhir/Questionnaire/gad-7",
        },
    )
    assert _ids(http, "/QuestionnaireResponse", {"questionnaire": url}) == {phq["id"]}
    assert _ids(http, "/QuestionnaireResponse", {"questionnaire": url + "-x"}) == set()
    assert _ids(http, "/QuestionnaireResponse", {"questionnaire": "Questionnaire/phq-9"}) == set()
