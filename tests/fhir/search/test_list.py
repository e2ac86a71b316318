"""``_list``: the resources of the searched type a List's entries reference."""

from __future__ import annotations

from typing import Any

import httpx

from tests import factories
from tests.fhir.search.conftest import NURSE, HidingPolicy, hidden
from tests.fhir.support import assert_outcome, body, create

STRICT = {"Prefer": "handling=strict"}


def _refs(http: httpx.Client, path: str, params: Any, **headers: str) -> set[str]:
    response = http.get(path, params=params, headers={**STRICT, **headers})
    assert response.status_code == 200, response.text
    return {
        f"{item['resource']['resourceType']}/{item['resource']['id']}"
        for item in body(response).get("entry", [])
    }


def _ref(resource: dict[str, Any]) -> str:
    return f"{resource['resourceType']}/{resource['id']}"


def test_list_of_mixed_types(http: httpx.Client) -> None:
    anne = create(http, factories.patient(given=("Anne",), gender="female"))
    bob = create(http, factories.patient(given=("Bob",), gender="male"))
    removed = create(http, factories.patient(given=("Chloé",)))
    outside = create(http, factories.patient(given=("Denis",)))
    pulse = create(http, factories.observation(subject=_ref(anne)))
    create(http, factories.observation(subject=_ref(bob)))
    listed = create(
        http,
        factories.list_of(
            _ref(anne),
            f"Patient/{bob['id']}/_history/1",
            _ref(pulse),
            _ref(removed),
            "Patient/never-stored",
            "#contained",
            deleted=(_ref(removed),),
        ),
    )
    assert _refs(http, "/Patient", {"_list": listed["id"]}) == {_ref(anne), _ref(bob)}
    assert _refs(http, "/Observation", {"_list": listed["id"]}) == {_ref(pulse)}
    assert _refs(http, "/Patient", {"_list": listed["id"], "gender": "male"}) == {_ref(bob)}
    # several lists: OR; repeated: AND
    other = create(http, factories.list_of(_ref(outside), _ref(bob)))
    assert _refs(http, "/Patient", {"_list": f"{listed['id']},{other['id']}"}) == {
        _ref(anne),
        _ref(bob),
        _ref(outside),
    }
    assert _refs(http, "/Patient", [("_list", listed["id"]), ("_list", other["id"])]) == {_ref(bob)}
    # whole-system: every type the list references
    assert _refs(http, "", {"_list": listed["id"]}) == {_ref(anne), _ref(bob), _ref(pulse)}
    assert _refs(http, "", {"_list": listed["id"], "_type": "Observation"}) == {_ref(pulse)}
    page = body(http.get("/Patient", params={"_list": listed["id"]}))
    assert page["total"] == 2 and "_list=" in page["link"][0]["url"]


def test_unknown_list_finds_nothing(http: httpx.Client) -> None:
    create(http, factories.patient())
    response = http.get("/Patient", params={"_list": "no-such-list"}, headers=STRICT)
    assert response.status_code == 200
    assert body(response)["total"] == 0
    deleted = create(http, factories.list_of(_ref(create(http, factories.patient()))))
    assert http.delete(f"/List/{deleted['id']}").status_code in (200, 204)
    assert _refs(http, "/Patient", {"_list": deleted["id"]}) == set()


def test_functional_lists_are_refused(http: httpx.Client) -> None:
    assert_outcome(
        http.get("/AllergyIntolerance", params={"_list": "$current-allergies"}),
        400,
        says="functional lists",
    )


def test_hidden_list_and_hidden_members(http: httpx.Client, hiding: HidingPolicy) -> None:
    shown = create(http, factories.patient())
    secret = create(http, hidden(factories.patient()))
    public = create(http, factories.list_of(_ref(shown), _ref(secret)))
    private = create(http, hidden(factories.list_of(_ref(shown))))
    assert _refs(http, "/Patient", {"_list": public["id"]}) == {_ref(shown), _ref(secret)}
    assert _refs(http, "/Patient", {"_list": public["id"]}, **NURSE) == {_ref(shown)}
    # a List the caller cannot see answers like an unknown one
    assert _refs(http, "/Patient", {"_list": private["id"]}) == {_ref(shown)}
    assert _refs(http, "/Patient", {"_list": private["id"]}, **NURSE) == set()
    hiding.refused = frozenset({"List"})
    assert_outcome(http.get("/Patient", params={"_list": public["id"]}, headers=NURSE), 403)
