"""Result parameters: ``_sort``, ``_summary``, ``_total``, ``_elements``; timeouts."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fhirpy import SyncFHIRClient
from psycopg import sql

from maillage.fhir.repository import FhirStore
from maillage.security import AllowAll
from tests import factories
from tests.fhir.search.conftest import NURSE, HidingPolicy, hidden
from tests.fhir.support import assert_outcome, body, create

STRICT = {"Prefer": "handling=strict"}


def _ids(http: httpx.Client, path: str, params: Any, **headers: str) -> list[str]:
    response = http.get(path, params=params, headers=headers)
    assert response.status_code == 200, response.text
    return [item["resource"]["id"] for item in body(response).get("entry", [])]


def _people(http: httpx.Client) -> dict[str, str]:
    specs = {
        "zoe": ("Zola", "1990-01-01", "female"),
        "adam": ("Abel", "1970-05-05", "male"),
        "eve": ("Émile", "1990-01-01", "female"),
        "nobody": ("Martin", "", "other"),
    }
    found = {}
    for key, (family, birth, gender) in specs.items():
        resource = factories.patient(family=family, gender=gender, birth_date=birth or "2000")
        if not birth:
            resource.pop("birthDate")
        found[key] = create(http, resource)["id"]
    return found


def test_sort_by_several_keys_missing_last(http: httpx.Client, fhir: SyncFHIRClient) -> None:
    p = _people(http)
    assert _ids(http, "/Patient", {"_sort": "family"}) == [
        p["adam"],
        p["eve"],
        p["nobody"],
        p["zoe"],
    ]
    assert _ids(http, "/Patient", {"_sort": "-family"}) == [
        p["zoe"],
        p["nobody"],
        p["eve"],
        p["adam"],
    ]
    # ties on birthdate broken by the second key; no birthdate sorts last both ways
    assert _ids(http, "/Patient", {"_sort": "birthdate,-family"}) == [
        p["adam"],
        p["zoe"],
        p["eve"],
        p["nobody"],
    ]
    assert _ids(http, "/Patient", {"_sort": "-birthdate,family"}) == [
        p["eve"],
        p["zoe"],
        p["adam"],
        p["nobody"],
    ]
    assert _ids(http, "/Patient", {"_sort": "gender,family"}) == [
        p["eve"],
        p["zoe"],
        p["adam"],
        p["nobody"],
    ]
    assert _ids(http, "/Patient", {"_sort": "-gender"})[0] == p["nobody"]
    found = fhir.resources("Patient").sort("-birthdate", "family").fetch()
    assert [item.id for item in found] == [p["eve"], p["zoe"], p["adam"], p["nobody"]]


def test_sort_number_quantity_and_paging_is_stable(http: httpx.Client) -> None:
    values = [5.5, 1, 12, 3]
    created = [
        create(http, factories.observation(value=value, code="2339-0"))["id"] for value in values
    ]
    expected = [created[index] for index in (1, 3, 0, 2)]
    assert _ids(http, "/Observation", {"_sort": "value-quantity"}) == expected
    assert _ids(http, "/Observation", {"_sort": "-value-quantity"}) == expected[::-1]
    seen: list[str] = []
    url: str | None = "/Observation?_sort=value-quantity&_count=3"
    while url:
        page = body(http.get(url))
        seen += [item["resource"]["id"] for item in page.get("entry", [])]
        url = next((link["url"] for link in page["link"] if link["relation"] == "next"), None)
    assert seen == expected


def test_unknown_sort_keys(http: httpx.Client) -> None:
    p = _people(http)
    lenient = body(http.get("/Patient", params={"_sort": "shoe-size,family"}))
    assert lenient["entry"][0]["resource"]["id"] == p["adam"]
    assert "_sort=family" in lenient["link"][0]["url"]
    assert "shoe" not in lenient["link"][0]["url"]
    assert_outcome(http.get("/Patient", params={"_sort": "shoe-size"}, headers=STRICT), 400)


def test_summary_count_true_data_text(http: httpx.Client) -> None:
    create(
        http,
        factories.patient(
            text={
                "status": "generated",
                "div": '<div xmlns="http://www.w3.org/1999/xhtml">x</div>',
            },
            photo=[{"contentType": "image/png", "data": "AAAA"}],
        ),
    )
    create(http, factories.patient())
    counted = body(http.get("/Patient", params={"_summary": "count"}))
    assert counted["total"] == 2
    assert counted.get("entry", []) == []
    summary = body(http.get("/Patient", params={"_summary": "true", "_sort": "_id"}))
    assert summary["total"] == 2
    for item in summary["entry"]:
        resource = item["resource"]
        assert "photo" not in resource and "text" not in resource
        assert {"name", "gender", "birthDate", "identifier", "id", "meta"} <= set(resource)
        assert {"code": "SUBSETTED"}.items() <= resource["meta"]["tag"][-1].items()
    data = body(http.get("/Patient", params={"_summary": "data"}))
    assert all("text" not in item["resource"] for item in data["entry"])
    assert any("photo" in item["resource"] for item in data["entry"])
    text = body(http.get("/Patient", params={"_summary": "text"}))
    assert all("name" not in item["resource"] for item in text["entry"])
    assert any("text" in item["resource"] for item in text["entry"])
    assert_outcome(http.get("/Patient", params={"_summary": "maybe"}, headers=STRICT), 400)


def test_elements_keeps_listed_elements_and_tags_subsetted(http: httpx.Client) -> None:
    patient = create(http, factories.patient(active=True))
    bundle = body(http.get("/Patient", params={"_elements": "name,birthDate"}))
    (item,) = bundle["entry"]
    resource = item["resource"]
    assert set(resource) == {"resourceType", "id", "meta", "name", "birthDate"}
    assert resource["name"] == patient["name"]
    assert resource["meta"]["versionId"] == "1"
    assert resource["meta"]["tag"][-1]["code"] == "SUBSETTED"
    assert "_elements=name%2CbirthDate" in bundle["link"][0]["url"]
    # the stored resource is untouched
    assert "SUBSETTED" not in http.get(f"/Patient/{patient['id']}").text


def test_total_modes_and_hidden_rows(http: httpx.Client, hiding: HidingPolicy) -> None:
    for _ in range(3):
        create(http, factories.patient(gender="other"))
    create(http, hidden(factories.patient(gender="other")))
    page = {"gender": "other", "_count": "1"}
    assert body(http.get("/Patient", params=page))["total"] == 4
    assert body(http.get("/Patient", params=page, headers=NURSE))["total"] == 3
    assert "total" not in body(http.get("/Patient", params={**page, "_total": "none"}))
    estimate = body(http.get("/Patient", params={**page, "_total": "estimate"}, headers=NURSE))
    assert estimate["total"] == 3
    accurate = body(http.get("/Patient", params={**page, "_total": "accurate"}))
    assert accurate["total"] == 4
    counted = http.get("/Patient", params={"gender": "other", "_summary": "count"}, headers=NURSE)
    assert body(counted)["total"] == 3
    assert_outcome(http.get("/Patient", params={"_total": "lots"}, headers=STRICT), 400)


class SlowPolicy(AllowAll):
    def sql_filter(
        self, ctx: Any, action: Any, table_alias: str, resource_type: str | None = None
    ) -> sql.Composable:
        return sql.SQL("pg_sleep(0.2) IS NOT NULL")


@pytest.fixture
def slow_store(store: FhirStore) -> Iterator[FhirStore]:
    previous, timeout = store.policy, store.search_engine.timeout_ms
    store.policy, store.search_engine.timeout_ms = SlowPolicy(), 50
    try:
        yield store
    finally:
        store.policy, store.search_engine.timeout_ms = previous, timeout


def test_a_search_past_its_time_limit_is_a_503_outcome(
    http: httpx.Client, slow_store: FhirStore
) -> None:
    patient = create(http, factories.patient())
    # an Observation the _has matches: with none, PostgreSQL may settle the (empty) _has
    # before it runs the slow filter at all, and answer in time
    create(http, factories.observation(subject=f"Patient/{patient['id']}", code="x"))
    for params in ({}, {"_has:Observation:subject:code": "x"}, {"_total": "accurate"}):
        assert_outcome(http.get("/Patient", params=params), 503, code="timeout")
