"""Chained parameters and reverse chaining (``_has``), access filter included."""

from __future__ import annotations

from typing import Any

import httpx
from fhirpy import SyncFHIRClient

from tests import factories
from tests.fhir.search.conftest import NURSE, HidingPolicy, hidden
from tests.fhir.support import assert_outcome, body, create, search_ids

STRICT = {"Prefer": "handling=strict"}


def _ids(http: httpx.Client, path: str, params: Any, **headers: str) -> set[str]:
    response = http.get(path, params=params, headers=headers)
    assert response.status_code == 200, response.text
    return {item["resource"]["id"] for item in body(response).get("entry", [])}


def _world(http: httpx.Client) -> dict[str, dict[str, Any]]:
    """Two organisations, a patient in each, an observation per patient."""
    north = create(http, factories.organization(name="Hôpital Nord"))
    south = create(http, factories.organization(name="Clinique Sud"))
    helene = create(
        http,
        factories.patient(
            family="Lefèvre",
            given=("Hélène",),
            managingOrganization={"reference": f"Organization/{north['id']}"},
        ),
    )
    marc = create(
        http,
        factories.patient(
            family="Martin",
            given=("Marc",),
            managingOrganization={"reference": f"Organization/{south['id']}"},
        ),
    )
    glucose = create(http, factories.observation(subject=f"Patient/{helene['id']}", code="2339-0"))
    pulse = create(http, factories.observation(subject=f"Patient/{marc['id']}", code="8867-4"))
    return {
        "north": north,
        "south": south,
        "helene": helene,
        "marc": marc,
        "glucose": glucose,
        "pulse": pulse,
    }


def test_one_level_chain(http: httpx.Client, fhir: SyncFHIRClient) -> None:
    world = _world(http)
    assert _ids(http, "/Observation", {"subject.name": "helene"}) == {world["glucose"]["id"]}
    assert _ids(http, "/Observation", {"subject:Patient.family": "mart"}) == {world["pulse"]["id"]}
    assert _ids(http, "/Observation", {"patient.family:exact": "Martin"}) == {world["pulse"]["id"]}
    assert _ids(http, "/Observation", {"subject.name": "nobody"}) == set()
    # comma = OR inside the chained value
    assert _ids(http, "/Observation", {"subject.name": "helene,marc"}) == {
        world["glucose"]["id"],
        world["pulse"]["id"],
    }
    found = fhir.resources("Observation").search(**{"subject:Patient.name": "hélène"}).fetch()
    assert [item.id for item in found] == [world["glucose"]["id"]]


def test_two_level_chain(http: httpx.Client) -> None:
    world = _world(http)
    assert _ids(http, "/Observation", {"subject:Patient.organization.name": "clinique"}) == {
        world["pulse"]["id"]
    }
    assert _ids(http, "/Observation", {"patient.organization.name": "hopital nord"}) == {
        world["glucose"]["id"]
    }
    assert _ids(
        http, "/Observation", {"subject:Patient.organization._id": world["north"]["id"]}
    ) == {world["glucose"]["id"]}
    # AND of a chain and a plain parameter
    params = [("subject.organization.name", "clinique"), ("code", "2339-0")]
    assert _ids(http, "/Observation", params) == set()


def test_chain_on_an_unknown_or_non_reference_parameter(http: httpx.Client) -> None:
    _world(http)
    for name in ("status.name", "subject.shoe-size", "subject:Spaceship.name"):
        lenient = http.get("/Observation", params={name: "x"})
        assert lenient.status_code == 200
        assert len(body(lenient)["entry"]) == 2, name
        assert_outcome(http.get("/Observation", params={name: "x"}, headers=STRICT), 400)


def test_reverse_chaining(http: httpx.Client) -> None:
    world = _world(http)
    helene, marc = world["helene"]["id"], world["marc"]["id"]
    assert _ids(http, "/Patient", {"_has:Observation:patient:code": "2339-0"}) == {helene}
    assert _ids(http, "/Patient", {"_has:Observation:subject:code": "2339-0,8867-4"}) == {
        helene,
        marc,
    }
    assert _ids(http, "/Patient", {"_has:Observation:patient:code": "0000-0"}) == set()
    # _has nested: organisations with a patient who has a glucose result
    nested = {"_has:Patient:organization:_has:Observation:patient:code": "2339-0"}
    assert _ids(http, "/Organization", nested) == {world["north"]["id"]}
    # _has combined with a chain inside it
    chained = {"_has:Observation:patient:subject.name": "marc"}
    assert _ids(http, "/Patient", chained) == {marc}
    assert_outcome(http.get("/Patient", params={"_has:Observation:code": "x"}), 400, says="_has")
    # Observation.encounter never points to an Organization
    bad = {"_has:Observation:encounter:code": "2339-0"}
    assert_outcome(http.get("/Organization", params=bad, headers=STRICT), 400)


def test_deleted_targets_do_not_match(http: httpx.Client) -> None:
    world = _world(http)
    assert http.delete(f"/Patient/{world['helene']['id']}").status_code == 204
    assert _ids(http, "/Observation", {"subject.name": "helene"}) == set()
    assert search_ids(http, "/Patient", **{"_has:Observation:patient:code": "2339-0"}) == []


def test_hidden_resources_never_make_a_chain_or_has_match(
    http: httpx.Client, hiding: HidingPolicy
) -> None:
    secret = create(http, hidden(factories.patient(family="Secret")))
    shown = create(http, factories.patient(family="Secret"))
    on_secret = create(http, factories.observation(subject=f"Patient/{secret['id']}"))
    on_shown = create(http, factories.observation(subject=f"Patient/{shown['id']}"))
    hidden_obs = create(
        http, hidden(factories.observation(subject=f"Patient/{shown['id']}", code="1234-5"))
    )
    chain = {"subject.family": "secret"}
    every = {on_secret["id"], on_shown["id"], hidden_obs["id"]}
    assert _ids(http, "/Observation", chain) == every
    assert _ids(http, "/Observation", chain, **NURSE) == {on_shown["id"]}
    has = {"_has:Observation:subject:code": "1234-5"}
    assert _ids(http, "/Patient", has) == {shown["id"]}
    assert _ids(http, "/Patient", has, **NURSE) == set()
    assert body(http.get("/Patient", params=has, headers=NURSE))["total"] == 0
    assert hidden_obs["id"] not in _ids(http, "/Observation", {}, **NURSE)


def test_a_type_the_caller_may_not_search_cannot_be_chained(
    http: httpx.Client, hiding: HidingPolicy
) -> None:
    _world(http)
    hiding.refused = frozenset({"Organization"})
    refused = http.get(
        "/Observation", params={"patient.organization.name": "clinique"}, headers=NURSE
    )
    assert_outcome(refused, 403, code="forbidden")
    has = {"_has:Patient:organization:family": "martin"}
    hiding.refused = frozenset({"Patient"})
    assert_outcome(http.get("/Organization", params=has, headers=NURSE), 403)
