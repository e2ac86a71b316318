"""IHE PIXm [ITI-83] ``Patient/$ihe-pix`` on the hub with its patient index: a site's
IPP, the territorial identifier or a qualified INS gives the same person's identifiers in
the other domains (real hub, fhirpy and httpx)."""

from __future__ import annotations

from typing import Any

import httpx
from fhirpy import SyncFHIRClient

from maillage.demo.sites import SITES
from maillage.identity.golden import TERRITORIAL_SYSTEM
from tests.conftest import RunningHub
from tests.factories import TEST_NIR_SYSTEM, source_identity, synthetic_nir
from tests.mpi.support import create, identity_api, territorial_of

PIX = "/Patient/$ihe-pix"


def _ipp(patient: dict[str, Any]) -> tuple[str, str]:
    identifier = patient["identifier"][0]
    return identifier["system"], identifier["value"]


def _token(pair: tuple[str, str]) -> str:
    return f"{pair[0]}|{pair[1]}"


def _targets(parameters: dict[str, Any]) -> tuple[set[tuple[str, str]], set[str]]:
    assert parameters["resourceType"] == "Parameters"
    identifiers = {
        (p["valueIdentifier"]["system"], p["valueIdentifier"]["value"])
        for p in parameters.get("parameter", [])
        if p["name"] == "targetIdentifier"
    }
    references = {
        p["valueReference"]["reference"]
        for p in parameters.get("parameter", [])
        if p["name"] == "targetId"
    }
    return identifiers, references


def _same_person_at_three_sites(http: httpx.Client) -> list[dict[str, Any]]:
    people = [
        create(http, source_identity(site=0, birth_name="Lefèvre", given=("Hélène", "Marie"))),
        create(http, source_identity(site=1, birth_name="LEFEVRE", given=("Marie", "Helene"))),
        create(http, source_identity(site=2, birth_name="LEFÈVRE", given=("Hélène", "Marie"))),
    ]
    assert len({territorial_of(p) for p in people}) == 1
    return people


def test_a_site_ipp_gives_the_other_sites_ipps_and_the_territorial_identifier(
    http: httpx.Client, fhir: SyncFHIRClient
) -> None:
    first, second, third = _same_person_at_three_sites(http)
    stranger = create(http, source_identity(site=1, birth_name="Moreau", birth_date="1991-07-30"))
    territorial = territorial_of(first)

    answer = fhir.execute(PIX, method="get", params={"sourceIdentifier": _token(_ipp(first))})

    identifiers, references = _targets(answer)
    # the other sites' IPPs and the territorial identifier; never the IPP asked about,
    # never the stranger's
    assert identifiers == {_ipp(second), _ipp(third), (TERRITORIAL_SYSTEM, territorial)}
    assert references == {
        f"Patient/{second['id']}",
        f"Patient/{third['id']}",
        f"Patient/{territorial}",
    }
    assert _ipp(stranger) not in identifiers
    # each IPP comes as the site wrote it: typed PI
    ipp = next(
        p["valueIdentifier"]
        for p in answer["parameter"]
        if p["name"] == "targetIdentifier" and p["valueIdentifier"]["system"] == _ipp(second)[0]
    )
    assert ipp["type"]["coding"][0]["code"] == "PI"


def test_target_system_restricts_the_answer_to_those_domains(http: httpx.Client) -> None:
    first, second, third = _same_person_at_three_sites(http)
    answer = http.get(
        PIX,
        params=[("sourceIdentifier", _token(_ipp(first))), ("targetSystem", SITES[2].ipp_system)],
    )
    assert answer.status_code == 200, answer.text
    assert _targets(answer.json()) == ({_ipp(third)}, {f"Patient/{third['id']}"})

    both = http.get(
        PIX,
        params=[
            ("sourceIdentifier", _token(_ipp(first))),
            ("targetSystem", SITES[1].ipp_system),
            ("targetSystem", TERRITORIAL_SYSTEM),
        ],
    )
    identifiers, _ = _targets(both.json())
    assert identifiers == {_ipp(second), (TERRITORIAL_SYSTEM, territorial_of(first))}


def test_the_same_query_posted_as_parameters_gets_the_same_answer(
    http: httpx.Client, fhir: SyncFHIRClient
) -> None:
    first, _second, third = _same_person_at_three_sites(http)
    asked = http.get(
        PIX,
        params=[("sourceIdentifier", _token(_ipp(first))), ("targetSystem", SITES[2].ipp_system)],
    ).json()
    # IHE's own example: sourceIdentifier as a valueString token
    as_string = fhir.execute(
        PIX,
        method="post",
        data={
            "resourceType": "Parameters",
            "parameter": [
                {"name": "sourceIdentifier", "valueString": _token(_ipp(first))},
                {"name": "targetSystem", "valueUri": SITES[2].ipp_system},
            ],
        },
    )
    system, value = _ipp(first)
    as_identifier = fhir.execute(
        PIX,
        method="post",
        data={
            "resourceType": "Parameters",
            "parameter": [
                {"name": "sourceIdentifier", "valueIdentifier": {"system": system, "value": value}},
                {"name": "targetSystem", "valueUri": SITES[2].ipp_system},
            ],
        },
    )
    assert _targets(as_string) == _targets(as_identifier) == _targets(asked)
    assert _targets(asked) == ({_ipp(third)}, {f"Patient/{third['id']}"})


def test_a_posted_query_that_is_not_a_pix_query_is_400(http: httpx.Client) -> None:
    source = {"name": "sourceIdentifier", "valueString": f"{SITES[0].ipp_system}|A"}
    for body, said in [
        ({"resourceType": "Patient"}, "must be a Parameters"),
        ({"resourceType": "Parameters"}, "sourceIdentifier"),
        ({"resourceType": "Parameters", "parameter": [source, {"name": "x"}]}, "no parameter"),
        (
            {"resourceType": "Parameters", "parameter": [{"name": "sourceIdentifier"}]},
            "valueString",
        ),
        (
            {"resourceType": "Parameters", "parameter": [source, {"name": "targetSystem"}]},
            "valueUri",
        ),
    ]:
        response = http.post(PIX, json=body)
        assert response.status_code == 400, (body, response.text)
        outcome = response.json()
        assert outcome["resourceType"] == "OperationOutcome"
        assert said in outcome["issue"][0]["diagnostics"], outcome


def test_a_known_domain_without_the_patient_answers_an_empty_parameters(
    http: httpx.Client,
) -> None:
    # the patient is known at site 1 only: asking for site 4's IPP answers nothing, not
    # an error (ITI-83: "if a value is known")
    alone = create(http, source_identity(site=0, birth_name="Bernard", birth_date="1950-01-01"))
    answer = http.get(
        PIX,
        params=[("sourceIdentifier", _token(_ipp(alone))), ("targetSystem", SITES[3].ipp_system)],
    )
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"resourceType": "Parameters"}


def test_the_territorial_identifier_gives_every_source(http: httpx.Client) -> None:
    people = _same_person_at_three_sites(http)
    territorial = territorial_of(people[0])
    answer = http.get(PIX, params={"sourceIdentifier": f"{TERRITORIAL_SYSTEM}|{territorial}"})
    assert answer.status_code == 200, answer.text
    identifiers, references = _targets(answer.json())
    assert identifiers == {_ipp(p) for p in people}
    assert references == {f"Patient/{p['id']}" for p in people}


def test_a_qualified_ins_gives_the_ipps_of_the_person(http: httpx.Client) -> None:
    nir = synthetic_nir("2800299101042")
    first = create(http, source_identity(site=0, birth_name="Dubois", status="QUAL", ins=nir))
    second = create(http, source_identity(site=3, birth_name="Dubois", status="QUAL", ins=nir))
    answer = http.get(PIX, params={"sourceIdentifier": f"{TEST_NIR_SYSTEM}|{nir}"})
    assert answer.status_code == 200, answer.text
    identifiers, _ = _targets(answer.json())
    assert identifiers == {
        _ipp(first),
        _ipp(second),
        (TERRITORIAL_SYSTEM, territorial_of(first)),
    }
    # and the other way round: from an IPP to the INS, carried by the golden record
    by_ipp = http.get(
        PIX,
        params=[("sourceIdentifier", _token(_ipp(first))), ("targetSystem", TEST_NIR_SYSTEM)],
    )
    assert _targets(by_ipp.json()) == (
        {(TEST_NIR_SYSTEM, nir)},
        {f"Patient/{territorial_of(first)}"},
    )


def test_an_unlinked_identity_is_no_longer_cross_referenced(http: httpx.Client) -> None:
    first, second, third = _same_person_at_three_sites(http)
    with identity_api(http) as api:
        answer = api.post("/unlinks", json={"patient": third["id"], "reason": "another person"})
        assert answer.status_code == 200, answer.text
    identifiers, _ = _targets(
        http.get(PIX, params={"sourceIdentifier": _token(_ipp(first))}).json()
    )
    assert _ipp(second) in identifiers
    assert _ipp(third) not in identifiers


def _issue(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    assert body["resourceType"] == "OperationOutcome", body
    return dict(body["issue"][0])


def test_an_unknown_patient_answers_404_not_found(http: httpx.Client) -> None:
    unknown = http.get(PIX, params={"sourceIdentifier": f"{SITES[0].ipp_system}|NOBODY-1"})
    assert unknown.status_code == 404
    issue = _issue(unknown)
    assert issue["code"] == "not-found"
    assert issue["diagnostics"].startswith("sourceIdentifier Patient Identifier not found")
    no_territorial = http.get(PIX, params={"sourceIdentifier": f"{TERRITORIAL_SYSTEM}|nope"})
    assert no_territorial.status_code == 404


def test_unknown_domains_answer_400_for_the_source_and_403_for_a_target(
    http: httpx.Client,
) -> None:
    person = create(http, source_identity(site=0))
    source_domain = http.get(PIX, params={"sourceIdentifier": "urn:oid:1.2.3.4.5|X1"})
    assert source_domain.status_code == 400
    assert _issue(source_domain)["code"] == "code-invalid"
    assert "Assigning Authority not found" in _issue(source_domain)["diagnostics"]

    target_domain = http.get(
        PIX,
        params=[("sourceIdentifier", _token(_ipp(person))), ("targetSystem", "urn:oid:1.2.3.4.5")],
    )
    assert target_domain.status_code == 403
    assert _issue(target_domain)["code"] == "code-invalid"
    assert _issue(target_domain)["diagnostics"].startswith("targetSystem not found")


def test_the_source_identifier_is_required_as_system_and_value(http: httpx.Client) -> None:
    assert http.get(PIX).status_code == 400
    assert http.get(PIX, params={"sourceIdentifier": "IPP-1"}).status_code == 400
    twice = http.get(
        PIX,
        params=[
            ("sourceIdentifier", f"{SITES[0].ipp_system}|A"),
            ("sourceIdentifier", f"{SITES[0].ipp_system}|B"),
        ],
    )
    assert twice.status_code == 400


def test_the_capability_statement_lists_ihe_pix_and_match(http: httpx.Client) -> None:
    statement = http.get("/metadata").json()
    patient = next(r for r in statement["rest"][0]["resource"] if r["type"] == "Patient")
    names = {operation["name"] for operation in patient["operation"]}
    assert {"ihe-pix", "match"} <= names


def test_a_hub_without_the_index_answers_501_to_both_operations(
    hub: RunningHub, clean_database: str
) -> None:
    with httpx.Client(base_url=f"{hub.base_url}/fhir", timeout=30) as plain:
        pix = plain.get(PIX, params={"sourceIdentifier": f"{SITES[0].ipp_system}|A1"})
        match = plain.post(
            "/Patient/$match",
            json={
                "resourceType": "Parameters",
                "parameter": [{"name": "resource", "resource": source_identity()}],
            },
        )
    for response in (pix, match):
        assert response.status_code == 501
        assert _issue(response)["code"] == "not-supported"


def test_a_logical_id_of_the_hub_is_a_source_identifier_too(http: httpx.Client) -> None:
    first, second, third = _same_person_at_three_sites(http)
    base = str(http.base_url).rstrip("/")
    answer = http.get(PIX, params={"sourceIdentifier": f"{base}|Patient/{second['id']}"})
    assert answer.status_code == 200, answer.text
    identifiers, references = _targets(answer.json())
    # every IPP of the person (its own too: it was not the identifier asked about)
    assert {_ipp(first), _ipp(second), _ipp(third)} <= identifiers
    assert f"Patient/{second['id']}" not in references
    # the hub's base as a targetSystem: the Patients only
    only_ids = http.get(
        PIX, params=[("sourceIdentifier", _token(_ipp(first))), ("targetSystem", base)]
    )
    assert _targets(only_ids.json()) == (
        set(),
        {f"Patient/{second['id']}", f"Patient/{third['id']}", f"Patient/{territorial_of(first)}"},
    )
    missing = http.get(PIX, params={"sourceIdentifier": f"{base}|Patient/nobody"})
    assert missing.status_code == 404


def test_a_merged_ipp_answers_404_and_leaves_the_survivors_cross_references(
    http: httpx.Client,
) -> None:
    first, second, _third = _same_person_at_three_sites(http)
    duplicate = create(
        http, source_identity(site=0, birth_name="Lefèvre", given=("Hélène", "Marie"))
    )
    with identity_api(http) as api:
        merged = api.post(
            "/merges",
            json={"survivor": first["id"], "merged": duplicate["id"], "reason": "duplicate IPP"},
        )
        assert merged.status_code == 201, merged.text
    gone = http.get(PIX, params={"sourceIdentifier": _token(_ipp(duplicate))})
    assert gone.status_code == 404
    assert "merged" in _issue(gone)["diagnostics"]
    identifiers, _ = _targets(
        http.get(PIX, params={"sourceIdentifier": _token(_ipp(second))}).json()
    )
    assert _ipp(first) in identifiers and _ipp(duplicate) not in identifiers


def test_an_ins_shared_by_two_territorial_identities_is_a_conflict(http: httpx.Client) -> None:
    nir = synthetic_nir("1750599101077")
    create(http, source_identity(site=0, birth_name="Roux", status="QUAL", ins=nir))
    second = create(http, source_identity(site=1, birth_name="Roux", status="QUAL", ins=nir))
    with identity_api(http) as api:
        answer = api.post("/unlinks", json={"patient": second["id"], "reason": "INS to check"})
        assert answer.status_code == 200, answer.text
    shared = http.get(PIX, params={"sourceIdentifier": f"{TEST_NIR_SYSTEM}|{nir}"})
    assert shared.status_code == 409
    assert _issue(shared)["code"] == "conflict"
