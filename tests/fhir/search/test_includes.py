"""``_include`` / ``_revinclude`` (with ``:iterate`` and ``*``), as ``search.mode = include``."""

from __future__ import annotations

from typing import Any

import httpx
from fhirpy import SyncFHIRClient

from tests import factories
from tests.fhir.search.conftest import NURSE, HidingPolicy, hidden
from tests.fhir.support import assert_outcome, body, create

STRICT = {"Prefer": "handling=strict"}


def _modes(http: httpx.Client, path: str, params: Any, **headers: str) -> dict[str, set[str]]:
    """References found, by search mode."""
    response = http.get(path, params=params, headers=headers)
    assert response.status_code == 200, response.text
    found: dict[str, set[str]] = {"match": set(), "include": set()}
    for item in body(response).get("entry", []):
        resource = item["resource"]
        found[item["search"]["mode"]].add(f"{resource['resourceType']}/{resource['id']}")
    return found


def _ref(resource: dict[str, Any]) -> str:
    return f"{resource['resourceType']}/{resource['id']}"


def _chart(http: httpx.Client) -> dict[str, dict[str, Any]]:
    org = create(http, factories.organization())
    patient = create(http, factories.patient(managingOrganization={"reference": _ref(org)}))
    encounter = create(http, factories.encounter(subject=_ref(patient)))
    observation = create(
        http,
        factories.observation(subject=_ref(patient), encounter={"reference": _ref(encounter)}),
    )
    other = create(http, factories.patient())
    return {
        "org": org,
        "patient": patient,
        "encounter": encounter,
        "observation": observation,
        "other": other,
    }


def test_include_adds_targets_once_in_include_mode(http: httpx.Client) -> None:
    chart = _chart(http)
    second = create(http, factories.observation(subject=_ref(chart["patient"]), code="2339-0"))
    found = _modes(http, "/Observation", {"_include": "Observation:subject"})
    assert found["match"] == {_ref(chart["observation"]), _ref(second)}
    assert found["include"] == {_ref(chart["patient"])}
    bundle = body(http.get("/Observation", params={"_include": "Observation:subject"}))
    assert bundle["total"] == 2  # the total counts matches only
    assert any("_include=Observation%3Asubject" in link["url"] for link in bundle["link"])
    typed = _modes(http, "/Observation", {"_include": "Observation:subject:Patient"})
    assert typed["include"] == {_ref(chart["patient"])}
    wrong = _modes(http, "/Observation", {"_include": "Observation:subject:Group"})
    assert wrong["include"] == set()
    both = _modes(
        http,
        "/Observation",
        [("_id", chart["observation"]["id"]), ("_include", "Observation:*")],
    )
    assert both["include"] == {_ref(chart["patient"]), _ref(chart["encounter"])}


def test_revinclude_and_iterate(http: httpx.Client, fhir: SyncFHIRClient) -> None:
    chart = _chart(http)
    patient_id = chart["patient"]["id"]
    found = _modes(http, "/Patient", {"_id": patient_id, "_revinclude": "Observation:subject"})
    assert found["match"] == {_ref(chart["patient"])}
    assert found["include"] == {_ref(chart["observation"])}
    plain = _modes(
        http,
        "/Patient",
        [
            ("_id", patient_id),
            ("_revinclude", "Encounter:subject"),
            ("_include", "Observation:encounter"),
        ],
    )
    # without :iterate, includes only start from the matches
    assert plain["include"] == {_ref(chart["encounter"])}
    iterated = _modes(
        http,
        "/Organization",
        [
            ("_revinclude", "Patient:organization"),
            ("_revinclude:iterate", "Observation:patient"),
            ("_include:iterate", "Observation:encounter"),
        ],
    )
    assert iterated["match"] == {_ref(chart["org"])}
    assert iterated["include"] == {
        _ref(chart["patient"]),
        _ref(chart["observation"]),
        _ref(chart["encounter"]),
    }
    bundle = (
        fhir.resources("Patient")
        .search(_id=patient_id)
        .revinclude("Observation", "subject")
        .fetch_raw()
    )
    modes = sorted(entry.search.mode for entry in bundle.entry)
    assert modes == ["include", "match"]


def test_unsupported_includes_are_lenient_or_strict(http: httpx.Client) -> None:
    _chart(http)
    for value in ("Observation:status", "Observation:nothing", "Spaceship:x", "Observation"):
        lenient = http.get("/Observation", params={"_include": value})
        assert lenient.status_code == 200
        bundle = body(lenient)
        assert {item["search"]["mode"] for item in bundle["entry"]} == {"match"}
        assert "_include" not in bundle["link"][0]["url"]
        strict = http.get("/Observation", params={"_include": value}, headers=STRICT)
        assert_outcome(strict, 400, says="_include")


def test_includes_never_show_hidden_resources(http: httpx.Client, hiding: HidingPolicy) -> None:
    secret = create(http, hidden(factories.patient()))
    observation = create(http, factories.observation(subject=_ref(secret)))
    visible = create(http, factories.patient())
    secret_obs = create(http, hidden(factories.observation(subject=_ref(visible))))
    shown_obs = create(http, factories.observation(subject=_ref(visible)))
    include = {"_include": "Observation:subject"}
    assert _modes(http, "/Observation", include)["include"] == {_ref(secret), _ref(visible)}
    as_nurse = _modes(http, "/Observation", include, **NURSE)
    assert as_nurse["match"] == {_ref(observation), _ref(shown_obs)}
    assert as_nurse["include"] == {_ref(visible)}
    revinclude = {"_revinclude": "Observation:subject"}
    assert _modes(http, "/Patient", revinclude, **NURSE) == {
        "match": {_ref(visible)},
        "include": {_ref(shown_obs)},
    }
    assert _ref(secret_obs) in _modes(http, "/Patient", revinclude)["include"]
    # a type the caller may not search is left out of the includes
    hiding.refused = frozenset({"Patient"})
    assert _modes(http, "/Observation", include, **NURSE)["include"] == set()
