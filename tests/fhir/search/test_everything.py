"""``Patient/[id]/$everything``: the record of one patient, paged, filtered by access."""

from __future__ import annotations

from typing import Any

import httpx

from tests import factories
from tests.fhir.search.conftest import NURSE, HidingPolicy, hidden
from tests.fhir.support import assert_outcome, body, create, next_millisecond


def _ref(resource: dict[str, Any]) -> str:
    return f"{resource['resourceType']}/{resource['id']}"


def _all_pages(http: httpx.Client, url: str, **headers: str) -> tuple[list[str], list[str]]:
    """(matches, includes) over every page, following ``next``."""
    matches: list[str] = []
    included: list[str] = []
    next_url: str | None = url
    while next_url:
        response = http.get(next_url, headers=headers)
        assert response.status_code == 200, response.text
        page = body(response)
        for item in page.get("entry", []):
            target = matches if item["search"]["mode"] == "match" else included
            target.append(_ref(item["resource"]))
        next_url = next((link["url"] for link in page["link"] if link["relation"] == "next"), None)
    return matches, included


def _observation_alone(http: httpx.Client, subject: str, value: int) -> dict[str, Any]:
    """An Observation in a millisecond of its own: the ``_since`` test cuts between them."""
    next_millisecond()
    return create(http, factories.observation(subject=subject, value=value))


def _record(http: httpx.Client) -> dict[str, Any]:
    org = create(http, factories.organization())
    patient = create(http, factories.patient(managingOrganization={"reference": _ref(org)}))
    other = create(http, factories.patient())
    subject = _ref(patient)
    return {
        "org": org,
        "patient": patient,
        "encounter": create(http, factories.encounter(subject=subject)),
        "observations": [_observation_alone(http, subject, value) for value in (1, 2, 3)],
        "secret": create(http, hidden(factories.observation(subject=subject))),
        "elsewhere": create(http, factories.observation(subject=_ref(other))),
    }


def test_everything_pages_through_the_whole_compartment(http: httpx.Client) -> None:
    record = _record(http)
    own = [
        _ref(record["patient"]),
        _ref(record["encounter"]),
        *[_ref(o) for o in record["observations"]],
        _ref(record["secret"]),
    ]
    first = body(http.get(f"/Patient/{record['patient']['id']}/$everything", params={"_count": 2}))
    assert first["type"] == "searchset" and first["total"] == len(own)
    assert first["entry"][0]["resource"]["id"] == record["patient"]["id"]  # the Patient first
    matches, included = _all_pages(http, f"/Patient/{record['patient']['id']}/$everything?_count=2")
    assert matches == own
    assert _ref(record["elsewhere"]) not in matches
    # the organization the Patient references comes with the page that references it
    assert included == [_ref(record["org"])]


def test_everything_by_post_with_type_and_since(http: httpx.Client) -> None:
    record = _record(http)
    url = f"/Patient/{record['patient']['id']}/$everything"
    parameters = {
        "resourceType": "Parameters",
        "parameter": [{"name": "_type", "valueString": "Observation"}],
    }
    response = http.post(url, json=parameters)
    assert response.status_code == 200, response.text
    found = {_ref(item["resource"]) for item in body(response)["entry"]}
    assert found == {_ref(o) for o in [*record["observations"], record["secret"]]}
    later = record["observations"][2]["meta"]["lastUpdated"]
    since = http.get(url, params={"_since": later}).json()
    assert {_ref(e["resource"]) for e in since["entry"] if e["search"]["mode"] == "match"} == {
        _ref(record["observations"][2]),
        _ref(record["secret"]),
    }


def test_everything_never_shows_hidden_rows(http: httpx.Client, hiding: HidingPolicy) -> None:
    record = _record(http)
    url = f"/Patient/{record['patient']['id']}/$everything?_count=1"
    matches, _ = _all_pages(http, url, **NURSE)
    assert _ref(record["secret"]) not in matches
    assert len(matches) == 5
    assert body(http.get(url, headers=NURSE))["total"] == 5
    # refused types are left out, and a hidden patient is not found at all
    hiding.refused = frozenset({"Observation", "Organization"})
    matches, included = _all_pages(http, url, **NURSE)
    assert matches == [_ref(record["patient"]), _ref(record["encounter"])] and included == []
    secret_patient = create(http, hidden(factories.patient()))
    assert_outcome(http.get(f"/Patient/{secret_patient['id']}/$everything", headers=NURSE), 404)


def test_everything_is_declared_and_validated(http: httpx.Client) -> None:
    statement = body(http.get("/metadata"))
    patient = next(r for r in statement["rest"][0]["resource"] if r["type"] == "Patient")
    assert {
        "name": "everything",
        "definition": "http://hl7.org/fhir/OperationDefinition/Patient-everything",
    } in patient["operation"]
    record = _record(http)
    url = f"/Patient/{record['patient']['id']}/$everything"
    assert_outcome(http.get(url, params={"_type": "Nonsense"}), 400)
    assert_outcome(http.get(url, params={"_count": "-1"}), 400)
    assert_outcome(http.get(url, params={"shoe": "1"}, headers={"Prefer": "handling=strict"}), 400)
    assert http.get(url, params={"shoe": "1"}).status_code == 200
    assert_outcome(http.get(f"/Observation/{record['secret']['id']}/$everything"), 404)
    assert_outcome(http.get("/Patient/unknown/$everything"), 404)
