"""Care relationships decide who reads a patient's record (hub with the access rules on).

A feed (role ``service``) writes the data; clinicians then read through the same API as
themselves (``X-Maillage-User`` / ``-Site`` / ``-Roles`` until sign-in lands)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from maillage.security.care_policy import MASKED_LABEL as MASKED
from tests import factories
from tests.conftest import RunningHub, _wait_for_definitions
from tests.factories import source_identity

FEED = {"X-Maillage-User": "system:feed", "X-Maillage-Roles": "service"}


def as_user(who: str, site: str, *roles: str) -> dict[str, str]:
    return {"X-Maillage-User": who, "X-Maillage-Site": site, "X-Maillage-Roles": ",".join(roles)}


@pytest.fixture
def http(care_hub: RunningHub, clean_database: str) -> Iterator[httpx.Client]:
    _wait_for_definitions(clean_database)
    with httpx.Client(base_url=f"{care_hub.base_url}/fhir", timeout=30) as client:
        yield client


def _write(http: httpx.Client, resource: dict[str, Any]) -> dict[str, Any]:
    response = http.post(f"/{resource['resourceType']}", json=resource, headers=FEED)
    assert response.status_code == 201, response.text
    return dict(response.json())


def _encounter(patient: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return factories.encounter(subject=f"Patient/{patient['id']}", **extra)


def _ids(bundle: dict[str, Any]) -> set[str]:
    return {
        f"{e['resource']['resourceType']}/{e['resource']['id']}" for e in bundle.get("entry", [])
    }


@pytest.fixture
def ward(http: httpx.Client) -> dict[str, Any]:
    """Patient P in care at CHM (Dr A takes part), Q nobody's, their observations."""
    p = _write(http, source_identity(site=0, birth_name="Aubert", birth_date="1970-01-01"))
    q = _write(http, source_identity(site=0, birth_name="Barbier", birth_date="1975-05-05"))
    encounter = _write(
        http,
        _encounter(
            p,
            status="in-progress",
            serviceProvider={"reference": "Organization/chm"},
            participant=[{"individual": {"reference": "Practitioner/dr-a"}}],
        ),
    )
    return {
        "p": p,
        "q": q,
        "encounter": encounter,
        "p_obs": _write(http, factories.observation(subject=f"Patient/{p['id']}")),
        "q_obs": _write(http, factories.observation(subject=f"Patient/{q['id']}")),
    }


def test_a_participant_reads_her_patients_record_and_nothing_else(
    http: httpx.Client, ward: dict[str, Any]
) -> None:
    dr_a = as_user("Practitioner/dr-a", "CHA", "physician")  # works at another site
    assert http.get(f"/Patient/{ward['p']['id']}", headers=dr_a).status_code == 200
    assert http.get(f"/Observation/{ward['p_obs']['id']}", headers=dr_a).status_code == 200
    # not in her care: indistinguishable from a record that does not exist
    assert http.get(f"/Patient/{ward['q']['id']}", headers=dr_a).status_code == 404
    assert http.get(f"/Observation/{ward['q_obs']['id']}", headers=dr_a).status_code == 404
    found = http.get("/Observation", headers=dr_a).json()
    assert _ids(found) == {f"Observation/{ward['p_obs']['id']}"}
    assert found["total"] == 1


def test_the_sites_professionals_share_the_sites_encounters(
    http: httpx.Client, ward: dict[str, Any]
) -> None:
    nurse = as_user("Practitioner/nurse-b", "CHM", "nurse")
    assert http.get(f"/Patient/{ward['p']['id']}", headers=nurse).status_code == 200
    elsewhere = as_user("Practitioner/dr-c", "CHL", "physician")
    assert http.get(f"/Patient/{ward['p']['id']}", headers=elsewhere).status_code == 404
    counted = http.get("/Observation", params={"_summary": "count"}, headers=elsewhere)
    assert counted.json()["total"] == 0


def test_nothing_hidden_leaks_through_includes_chains_has_or_everything(
    http: httpx.Client, ward: dict[str, Any]
) -> None:
    dr_c = as_user("Practitioner/dr-c", "CHL", "physician")
    p_id = ward["p"]["id"]
    revinclude = http.get(
        "/Patient", params={"_revinclude": "Observation:subject"}, headers=dr_c
    ).json()
    assert _ids(revinclude) == set()
    chained = http.get("/Observation", params={"subject.birthdate": "1970-01-01"}, headers=dr_c)
    assert chained.json()["total"] == 0
    has = http.get("/Patient", params={"_has:Observation:subject:status": "final"}, headers=dr_c)
    assert has.json()["total"] == 0
    assert http.get(f"/Patient/{p_id}/$everything", headers=dr_c).status_code == 404
    # Dr A sees the same queries answered with what she may see only
    dr_a = as_user("Practitioner/dr-a", "CHA", "physician")
    mine = http.get("/Observation", params={"_include": "Observation:subject"}, headers=dr_a).json()
    assert _ids(mine) == {f"Observation/{ward['p_obs']['id']}", f"Patient/{p_id}"}


def test_the_relationship_follows_the_person_to_the_other_sites(
    http: httpx.Client, ward: dict[str, Any]
) -> None:
    same_person = _write(
        http, source_identity(site=3, birth_name="AUBERT", birth_date="1970-01-01")
    )
    elsewhere_obs = _write(http, factories.observation(subject=f"Patient/{same_person['id']}"))
    dr_a = as_user("Practitioner/dr-a", "CHA", "physician")
    assert http.get(f"/Observation/{elsewhere_obs['id']}", headers=dr_a).status_code == 200


def test_a_finished_encounter_opens_the_record_for_a_while_only(http: httpx.Client) -> None:
    today = dt.date.today()
    recent = _write(http, source_identity(site=1, birth_name="Carré", birth_date="1960-06-06"))
    old = _write(http, source_identity(site=1, birth_name="Dumas", birth_date="1961-07-07"))
    for patient, days in ((recent, 10), (old, 60)):
        end = (today - dt.timedelta(days=days)).isoformat()
        _write(
            http,
            _encounter(
                patient,
                status="finished",
                period={"start": end, "end": end},
                participant=[{"individual": {"reference": "Practitioner/dr-d"}}],
            ),
        )
    dr_d = as_user("Practitioner/dr-d", "CHA", "physician")
    assert http.get(f"/Patient/{recent['id']}", headers=dr_d).status_code == 200
    assert http.get(f"/Patient/{old['id']}", headers=dr_d).status_code == 404


def test_roles_without_a_right_are_refused_with_403(
    http: httpx.Client, ward: dict[str, Any]
) -> None:
    secretary = as_user("Practitioner/sec-1", "CHM", "secretary")
    refused = http.get("/Observation", headers=secretary)
    assert refused.status_code == 403
    assert refused.json()["resourceType"] == "OperationOutcome"
    nurse = as_user("Practitioner/nurse-b", "CHM", "nurse")
    created = http.post("/Patient", json=source_identity(site=0), headers=nurse)
    assert created.status_code == 403
    nobody = http.get("/Patient", headers={"X-Maillage-User": "anonymous"})
    assert nobody.status_code == 403
    dim = as_user("Practitioner/dim-1", "CHM", "dim")
    assert http.get("/Observation", headers=dim).json()["total"] == 2


def test_break_the_glass_opens_one_record_for_a_while_with_a_reason(
    http: httpx.Client, ward: dict[str, Any]
) -> None:
    dr_c = as_user("Practitioner/dr-c", "CHL", "physician")
    q_id = ward["q"]["id"]
    assert http.get(f"/Patient/{q_id}", headers=dr_c).status_code == 404
    body: dict[str, Any] = {
        "resourceType": "Parameters",
        "parameter": [{"name": "reason", "valueString": "x"}],
    }
    short = http.post(f"/Patient/{q_id}/$break-the-glass", json=body, headers=dr_c)
    assert short.status_code == 400 and "reason" in short.text
    body["parameter"][0]["valueString"] = "unconscious patient in the emergency room"
    opened = http.post(f"/Patient/{q_id}/$break-the-glass", json=body, headers=dr_c)
    assert opened.status_code == 200, opened.text
    assert http.get(f"/Patient/{q_id}", headers=dr_c).status_code == 200
    assert http.get(f"/Observation/{ward['q_obs']['id']}", headers=dr_c).status_code == 200
    base = str(http.base_url).removesuffix("/fhir/").removesuffix("/fhir")
    review = httpx.get(
        f"{base}/security/break-glass",
        headers=as_user("Practitioner/iv-1", "CHM", "identitovigilance"),
    )
    assert review.status_code == 200
    items = review.json()["items"]
    assert [(i["patient_id"], i["principal"]) for i in items] == [(q_id, "Practitioner/dr-c")]
    assert items[0]["reason"] == "unconscious patient in the emergency room"
    refused = httpx.get(f"{base}/security/break-glass", headers=dr_c)
    assert refused.status_code == 403


def _objection(patient: dict[str, Any], status: str = "active") -> dict[str, Any]:
    return factories.objection(patient=f"Patient/{patient['id']}", status=status)


def test_an_objection_keeps_the_record_from_the_other_sites(
    http: httpx.Client, ward: dict[str, Any]
) -> None:
    """Dr A is in P's care at CHM; P's record at CHB (same person) shows to her until P
    objects to sharing; her own site's part stays open; break-the-glass still crosses."""
    at_chb = _write(http, source_identity(site=3, birth_name="AUBERT", birth_date="1970-01-01"))
    chb_obs = _write(http, factories.observation(subject=f"Patient/{at_chb['id']}"))
    dr_a = as_user("Practitioner/dr-a", "CHA", "physician")
    assert http.get(f"/Observation/{chb_obs['id']}", headers=dr_a).status_code == 200
    consent = _write(http, _objection(ward["p"]))
    assert http.get(f"/Observation/{chb_obs['id']}", headers=dr_a).status_code == 404
    assert http.get(f"/Observation/{ward['p_obs']['id']}", headers=dr_a).status_code == 200
    body = {
        "resourceType": "Parameters",
        "parameter": [{"name": "reason", "valueString": "cardiac arrest, history needed now"}],
    }
    opened = http.post(f"/Patient/{at_chb['id']}/$break-the-glass", json=body, headers=dr_a)
    assert opened.status_code == 200
    assert http.get(f"/Observation/{chb_obs['id']}", headers=dr_a).status_code == 200
    # the objection withdrawn: sharing resumes for everyone in the person's care
    withdrawn = {**{k: v for k, v in consent.items() if k != "meta"}, "status": "inactive"}
    assert http.put(f"/Consent/{consent['id']}", json=withdrawn, headers=FEED).status_code == 200
    nurse = as_user("Practitioner/nurse-b", "CHM", "nurse")
    assert http.get(f"/Observation/{chb_obs['id']}", headers=nurse).status_code == 200


def test_a_document_masked_to_professionals_shows_to_its_author_only(
    http: httpx.Client, ward: dict[str, Any]
) -> None:
    masked = _write(
        http,
        {
            "resourceType": "DocumentReference",
            "status": "current",
            "meta": {
                "security": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality",
                        "code": "R",
                    }
                ]
            },
            "subject": {"reference": f"Patient/{ward['p']['id']}"},
            "author": [{"reference": "Practitioner/dr-a"}],
            "content": [{"attachment": {"contentType": "text/plain", "data": "bWFza2Vk"}}],
        },
    )
    path = f"/DocumentReference/{masked['id']}"
    author = as_user("Practitioner/dr-a", "CHA", "physician")
    colleague = as_user("Practitioner/nurse-b", "CHM", "nurse")  # in P's care too
    assert http.get(path, headers=author).status_code == 200
    assert http.get(path, headers=colleague).status_code == 404
    listed = http.get("/DocumentReference", headers=colleague).json()
    assert listed["total"] == 0


def test_a_read_by_id_shows_exactly_what_a_search_by_id_shows(
    http: httpx.Client, ward: dict[str, Any]
) -> None:
    """A read knows its row's type and gets the policy's filter for that type alone; a
    search gets the filter over every type. Both must keep the same rows."""
    masked = _write(
        http,
        factories.observation(
            subject=f"Patient/{ward['p']['id']}",
            meta={"security": [{"system": MASKED[0], "code": MASKED[1]}]},
        ),
    )
    resources = [ward["p"], ward["q"], ward["encounter"], ward["p_obs"], ward["q_obs"], masked]
    users = [
        as_user("Practitioner/dr-a", "CHA", "physician"),
        as_user("Practitioner/nurse-b", "CHM", "nurse"),
        as_user("Practitioner/dr-c", "CHL", "physician"),
        as_user("Practitioner/sec-d", "CHM", "secretary"),
        as_user("Practitioner/dim-e", "CHM", "dim"),
        as_user("Practitioner/iv-f", "CHM", "identitovigilance"),
        as_user("Practitioner/ph-g", "CHM", "pharmacist"),
    ]
    seen = set()
    for user in users:
        for resource in resources:
            kind, rid = resource["resourceType"], resource["id"]
            read = http.get(f"/{kind}/{rid}", headers=user).status_code
            found = http.get(f"/{kind}", params={"_id": rid}, headers=user)
            if found.status_code == 403:
                assert read == 403, (user, kind)
                continue
            assert found.status_code == 200, found.text
            shown = f"{kind}/{rid}" in _ids(found.json())
            assert read == (200 if shown else 404), (user["X-Maillage-User"], kind)
            seen.add(read)
    assert seen == {200, 404}  # the users and rows above exercise both outcomes
