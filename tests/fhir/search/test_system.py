"""Whole-system search (``GET /fhir?_type=...``) and the Patient compartment
(``GET /fhir/Patient/{id}/{type}``)."""

from __future__ import annotations

from typing import Any

import httpx

from tests import factories
from tests.fhir.search.conftest import NURSE, HidingPolicy, hidden
from tests.fhir.support import assert_outcome, body, create, next_millisecond

STRICT = {"Prefer": "handling=strict"}


def _refs(http: httpx.Client, path: str, params: Any, **headers: str) -> set[str]:
    response = http.get(path, params=params, headers=headers)
    assert response.status_code == 200, response.text
    return {
        f"{item['resource']['resourceType']}/{item['resource']['id']}"
        for item in body(response).get("entry", [])
    }


def _ref(resource: dict[str, Any]) -> str:
    return f"{resource['resourceType']}/{resource['id']}"


def test_whole_system_search_by_type_and_common_parameters(http: httpx.Client) -> None:
    patient = create(http, factories.patient())
    next_millisecond()  # the _lastUpdated cut below falls between the two
    observation = create(http, factories.observation(subject=_ref(patient)))
    organization = create(http, factories.organization())
    tagged = create(
        http, factories.encounter(subject=_ref(patient), meta={"tag": [{"code": "urgent"}]})
    )
    everything = {_ref(patient), _ref(observation), _ref(organization), _ref(tagged)}
    assert _refs(http, "", {}) == everything
    assert _refs(http, "", {"_type": "Patient,Observation"}) == {
        _ref(patient),
        _ref(observation),
    }
    stamp = observation["meta"]["lastUpdated"]
    assert _refs(http, "", {"_type": "Patient,Observation", "_lastUpdated": f"ge{stamp}"}) == {
        _ref(observation)
    }
    assert _refs(http, "", {"_tag": "urgent"}) == {_ref(tagged)}
    assert _refs(http, "", {"_type": "Patient", "_tag": "urgent"}) == set()
    assert _refs(http, "", {"_id": patient["id"]}) == {_ref(patient)}
    bundle = body(http.get("", params={"_type": "Observation", "family": "x"}))
    assert bundle["total"] == 1  # a type-specific parameter is ignored (lenient)
    assert "family" not in bundle["link"][0]["url"]
    assert "_type=Observation" in bundle["link"][0]["url"]
    assert_outcome(http.get("", params={"family": "x"}, headers=STRICT), 400, says="family")
    assert_outcome(http.get("", params={"_type": "Spaceship"}), 400)
    # _type is for whole-system searches: a type search ignores it (and drops it from links)
    typed = body(http.get("/Patient", params={"_type": "Observation"}))
    assert {item["resource"]["id"] for item in typed["entry"]} == {patient["id"]}
    assert "_type" not in typed["link"][0]["url"]


def test_whole_system_search_sorts_pages_and_hides(
    http: httpx.Client, hiding: HidingPolicy
) -> None:
    created = []
    for resource in (factories.patient(), factories.organization(), hidden(factories.patient())):
        next_millisecond()  # each its own lastUpdated, so that the sort has one order
        created.append(create(http, resource))
    newest_first = [_ref(item) for item in reversed(created)]
    response = body(http.get("", params={"_sort": "-_lastUpdated", "_count": "2"}))
    assert response["total"] == 3
    assert [
        f"{item['resource']['resourceType']}/{item['resource']['id']}" for item in response["entry"]
    ] == newest_first[:2]
    assert body(http.get("", headers=NURSE))["total"] == 2
    assert _refs(http, "", {"_type": "Patient"}, **NURSE) == {_ref(created[0])}


def test_patient_compartment(http: httpx.Client, hiding: HidingPolicy) -> None:
    patient = create(http, factories.patient())
    other = create(http, factories.patient())
    mine = create(http, factories.observation(subject=_ref(patient), code="2339-0"))
    performed = create(
        http,
        factories.observation(subject=_ref(other), performer=[{"reference": _ref(patient)}]),
    )
    create(http, factories.observation(subject=_ref(other)))
    secret = create(http, hidden(factories.observation(subject=_ref(patient))))
    encounter = create(http, factories.encounter(subject=_ref(patient)))
    base = f"/Patient/{patient['id']}"
    assert _refs(http, f"{base}/Observation", {}) == {
        _ref(mine),
        _ref(performed),
        _ref(secret),
    }
    assert _refs(http, f"{base}/Observation", {}, **NURSE) == {_ref(mine), _ref(performed)}
    assert _refs(http, f"{base}/Observation", {"code": "2339-0"}) == {_ref(mine)}
    assert _refs(http, f"{base}/Encounter", {}) == {_ref(encounter)}
    assert _refs(http, f"{base}/Patient", {}) == {_ref(patient)}
    bundle = body(http.get(f"{base}/Observation", params={"code": "2339-0"}))
    assert bundle["link"][0]["url"].endswith(f"{base}/Observation?code=2339-0")
    assert_outcome(http.get(f"{base}/Organization"), 400, says="compartment")
    assert_outcome(http.get(f"/Encounter/{encounter['id']}/Observation"), 404)


def test_whole_system_search_by_post(http: httpx.Client, hiding: HidingPolicy) -> None:
    patient = create(http, factories.patient())
    seen = create(http, factories.observation(subject=_ref(patient)))
    secret = create(http, hidden(factories.observation(subject=_ref(patient))))
    create(http, factories.organization())
    form = {"_type": "Observation,Patient", "_count": "10"}
    posted = http.post("/_search", data=form)
    assert posted.status_code == 200, posted.text
    found = {
        f"{e['resource']['resourceType']}/{e['resource']['id']}" for e in body(posted)["entry"]
    }
    assert found == _refs(http, "/", form) == {_ref(patient), _ref(seen), _ref(secret)}
    as_nurse = http.post("/_search", data=form, headers=NURSE)
    assert {e["resource"]["id"] for e in body(as_nurse)["entry"]} == {patient["id"], seen["id"]}
    assert body(as_nurse)["link"][0]["url"].startswith(f"{http.base_url}".rstrip("/"))
    assert_outcome(
        http.post("/_search", content=b"{}", headers={"Content-Type": "application/json"}), 415
    )
