"""FHIR R4 ``Patient/$match`` on the hub with its patient index: a Patient not filed yet is
scored against the filed identities and answered as graded territorial identities; nothing
is written (real hub, fhirpy and httpx)."""

from __future__ import annotations

from typing import Any

import httpx
import psycopg
from fhirpy import SyncFHIRClient

from tests.factories import source_identity, synthetic_nir
from tests.mpi.support import create, identity_api, territorial_of

MATCH = "/Patient/$match"
GRADE_URL = "http://hl7.org/fhir/StructureDefinition/match-grade"
LILAS = [{"use": "home", "line": ["12 rue des Lilas"], "city": "Amiens", "postalCode": "80000"}]
FOCH = [{"use": "home", "line": ["3 avenue Foch"], "city": "Lille", "postalCode": "59000"}]


def _parameters(patient: dict[str, Any], **extra: Any) -> dict[str, Any]:
    parameters: list[dict[str, Any]] = [{"name": "resource", "resource": patient}]
    if "only_certain" in extra:
        parameters.append({"name": "onlyCertainMatches", "valueBoolean": extra["only_certain"]})
    if "count" in extra:
        parameters.append({"name": "count", "valueInteger": extra["count"]})
    return {"resourceType": "Parameters", "parameter": parameters}


def _match(http: httpx.Client, patient: dict[str, Any], **extra: Any) -> dict[str, Any]:
    response = http.post(MATCH, json=_parameters(patient, **extra))
    assert response.status_code == 200, response.text
    bundle = dict(response.json())
    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "searchset"
    return bundle


def _graded(bundle: dict[str, Any]) -> list[tuple[str, str, float]]:
    """(Patient id, grade, score) of the match entries, in the Bundle's order."""
    out = []
    for entry in bundle.get("entry", []):
        if entry["search"]["mode"] != "match":
            continue
        grades = [e["valueCode"] for e in entry["search"]["extension"] if e["url"] == GRADE_URL]
        out.append((entry["resource"]["id"], grades[0], entry["search"]["score"]))
    return out


def _counts(database_url: str) -> tuple[int, int, int]:
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "SELECT (SELECT count(*) FROM resource), (SELECT count(*) FROM mpi_source),"
            " (SELECT count(*) FROM mpi_event)"
        ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1]), int(row[2])


def test_the_same_person_typed_elsewhere_is_a_certain_match_of_its_territorial_identity(
    http: httpx.Client, fhir: SyncFHIRClient, database_url: str
) -> None:
    filed = create(http, source_identity(site=0, birth_name="Lefèvre", given=("Hélène", "Marie")))
    create(http, source_identity(site=1, birth_name="Moreau", birth_date="1991-07-30"))
    before = _counts(database_url)
    arriving = source_identity(
        site=2, birth_name="LEFEVRE", used_name="Dupont", given=("Marie", "Helene")
    )

    bundle = fhir.execute("Patient/$match", data=_parameters(arriving))

    assert [g[:2] for g in _graded(bundle)] == [(territorial_of(filed), "certain")]
    assert _graded(bundle)[0][2] > 0.99
    golden = bundle["entry"][0]["resource"]
    assert {
        "system": "https://maillage.org/fhir/CodeSystem/patient-index",
        "code": "territorial",
    } in [{"system": t["system"], "code": t["code"]} for t in golden["meta"]["tag"]]
    assert bundle["entry"][0]["fullUrl"].endswith(f"/Patient/{territorial_of(filed)}")
    assert bundle["total"] == 1
    # a question, not a registration: nothing was written
    assert _counts(database_url) == before


def test_a_same_qualified_ins_is_certain_whatever_the_typing(http: httpx.Client) -> None:
    nir = synthetic_nir("2800299101042")
    filed = create(http, source_identity(site=0, birth_name="Dubois", status="QUAL", ins=nir))
    arriving = source_identity(
        site=3, birth_name="Duboiss", given=("Kamille",), status="QUAL", ins=nir
    )
    assert _graded(_match(http, arriving))[0][:2] == (territorial_of(filed), "certain")


def test_twins_are_only_possible_matches(http: httpx.Client) -> None:
    common = {"birth_name": "Garnier", "birth_date": "2001-05-06", "birthplace": "99350"}
    lucas = create(http, source_identity(site=0, given=("Lucas",), gender="male", **common))
    hugo = source_identity(site=1, given=("Hugo",), gender="male", **common)
    assert [(pid, grade) for pid, grade, _ in _graded(_match(http, hugo))] == [
        (territorial_of(lucas), "possible")
    ]
    # and never an answer to whoever wants certainty
    assert _graded(_match(http, hugo, only_certain=True)) == []


def test_grades_follow_the_score_probable_above_possible(http: httpx.Client) -> None:
    # the same traits, birthplace unknown on one side and another address: a pair to
    # review with a high score, no conflict → probable
    moved = create(
        http,
        source_identity(site=0, birth_name="Lefèvre", given=("Hélène", "Marie"), address=LILAS),
    )
    arriving = source_identity(
        site=1, birth_name="Lefèvre", given=("Hélène", "Marie"), birthplace=None, address=FOCH
    )
    assert [g[:2] for g in _graded(_match(http, arriving))] == [(territorial_of(moved), "probable")]

    # another birth day (one error in the date: blocking still meets it) and birthplace:
    # a weak pair to review → possible, ranked last
    weak = source_identity(
        site=1,
        birth_name="Lefèvre",
        given=("Hélène", "Marie"),
        birthplace="99102",
        birth_date="1980-02-07",
    )
    graded = _graded(_match(http, weak))
    assert [g[:2] for g in graded] == [(territorial_of(moved), "possible")]
    assert 0 < graded[0][2] < 1


def test_only_certain_matches_answers_none_when_two_identities_are_certain(
    http: httpx.Client,
) -> None:
    first = create(http, source_identity(site=0, birth_name="Petit", given=("Louise",)))
    second = create(http, source_identity(site=1, birth_name="Petit", given=("Louise",)))
    with identity_api(http) as api:
        answer = api.post("/unlinks", json={"patient": second["id"], "reason": "two people"})
        assert answer.status_code == 200, answer.text
        split = answer.json()["territorial"]
    arriving = source_identity(site=2, birth_name="Petit", given=("Louise",))

    both = _graded(_match(http, arriving))
    assert {(pid, grade) for pid, grade, _ in both} == {
        (territorial_of(first), "certain"),
        (split, "certain"),
    }
    assert len(_graded(_match(http, arriving, count=1))) == 1

    bundle = _match(http, arriving, only_certain=True)
    assert _graded(bundle) == []
    outcome = [e for e in bundle["entry"] if e["search"]["mode"] == "outcome"]
    assert outcome[0]["resource"]["issue"][0]["severity"] == "warning"


def test_a_stranger_gets_an_empty_searchset(http: httpx.Client) -> None:
    create(http, source_identity(site=0, birth_name="Bernard", birth_date="1950-01-01"))
    bundle = _match(http, source_identity(site=1, birth_name="Moreau", birth_date="1991-07-30"))
    assert bundle["total"] == 0
    assert _graded(bundle) == []


def test_the_patient_to_match_is_required_and_validated(http: httpx.Client) -> None:
    def post(body: Any) -> httpx.Response:
        return http.post(MATCH, json=body)

    def code(response: httpx.Response) -> str:
        assert response.json()["resourceType"] == "OperationOutcome"
        return str(response.json()["issue"][0]["code"])

    missing = post({"resourceType": "Parameters", "parameter": []})
    assert missing.status_code == 400
    assert code(missing) == "invalid"
    not_a_patient = post(_parameters({"resourceType": "Observation", "status": "final"}))
    assert not_a_patient.status_code == 400
    broken = post(_parameters({**source_identity(), "birthDate": "3 février 1980"}))
    assert broken.status_code == 422
    assert code(broken) == "invalid"
    bad_count = post(_parameters(source_identity(), count=-1))
    assert bad_count.status_code == 400
    assert post({"resourceType": "Patient"}).status_code == 400
