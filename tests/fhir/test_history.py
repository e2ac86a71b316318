"""Instance, type and system ``_history`` with ``_since``, ``_count`` and paging links."""

from __future__ import annotations

from typing import Any

import httpx

from tests import factories
from tests.fhir.support import assert_outcome, body, create, next_millisecond, put


def _three_versions_then_deleted(http: httpx.Client) -> dict[str, Any]:
    created = create(http, factories.patient(gender="female"))
    put(http, {**created, "gender": "male"})
    put(http, {**created, "gender": "other"})
    assert http.delete(f"/Patient/{created['id']}").status_code == 204
    return created


def _follow(http: httpx.Client, url: str) -> list[dict[str, Any]]:
    """Every entry of every page, following the ``next`` links from ``url``."""
    entries: list[dict[str, Any]] = []
    pages = 0
    next_url: str | None = url
    while next_url:
        page = body(http.get(next_url))
        assert page["type"] == "history"
        entries.extend(page.get("entry", []))
        links = {link["relation"]: link["url"] for link in page["link"]}
        assert "self" in links
        next_url = links.get("next")
        pages += 1
        assert pages < 20, "paging does not end"
    return entries


def test_instance_history_lists_versions_newest_first_with_the_deletion(
    http: httpx.Client, fhir_base: str
) -> None:
    created = _three_versions_then_deleted(http)
    response = http.get(f"/Patient/{created['id']}/_history")
    assert response.status_code == 200
    history = body(response)
    assert history["resourceType"] == "Bundle"
    assert history["type"] == "history"
    entries = history["entry"]
    assert [item["response"]["etag"] for item in entries] == ['W/"4"', 'W/"3"', 'W/"2"', 'W/"1"']
    deletion, *versions = entries
    assert deletion["request"] == {"method": "DELETE", "url": f"Patient/{created['id']}"}
    assert "resource" not in deletion
    assert [item["resource"]["gender"] for item in versions] == ["other", "male", "female"]
    assert versions[-1]["request"] == {"method": "POST", "url": "Patient"}
    assert versions[-1]["response"]["status"].startswith("201")
    assert versions[0]["request"]["method"] == "PUT"
    assert all(item["fullUrl"] == f"{fhir_base}/Patient/{created['id']}" for item in entries)
    for item in versions:
        assert item["response"]["lastModified"] == item["resource"]["meta"]["lastUpdated"]
        assert item["response"]["etag"] == f'W/"{item["resource"]["meta"]["versionId"]}"'
    assert deletion["response"]["lastModified"] >= versions[0]["response"]["lastModified"]


def test_history_pages_with_count_and_working_next_links(http: httpx.Client) -> None:
    created = _three_versions_then_deleted(http)
    first = body(http.get(f"/Patient/{created['id']}/_history", params={"_count": 1}))
    assert len(first["entry"]) == 1
    entries = _follow(http, f"/Patient/{created['id']}/_history?_count=1")
    assert [item["response"]["etag"] for item in entries] == ['W/"4"', 'W/"3"', 'W/"2"', 'W/"1"']


def test_type_history_pages_through_many_resources_exactly_once(http: httpx.Client) -> None:
    # One transaction: many versions share the same millisecond, so the paging
    # order must not depend on last_updated alone.
    ids = [f"hist-{n}" for n in range(12)]
    entries = [factories.entry("PUT", f"Patient/{rid}", factories.patient(id=rid)) for rid in ids]
    assert http.post("", json=factories.transaction(*entries)).status_code == 200
    create(http, factories.organization())
    seen = _follow(http, "/Patient/_history?_count=5")
    assert sorted(item["resource"]["id"] for item in seen) == sorted(ids)


def test_since_keeps_versions_at_or_after_the_instant(http: httpx.Client) -> None:
    created = create(http, factories.patient(gender="female"))
    next_millisecond()  # the _since cut below falls between the first two versions
    second = put(http, {**created, "gender": "male"})
    put(http, {**created, "gender": "other"})
    since = body(second)["meta"]["lastUpdated"]
    history = body(http.get(f"/Patient/{created['id']}/_history", params={"_since": since}))
    assert [item["resource"]["gender"] for item in history["entry"]] == ["other", "male"]
    # The self link keeps the filter, so following it gives the same answer.
    self_link = next(link["url"] for link in history["link"] if link["relation"] == "self")
    again = body(http.get(self_link))
    assert [item["resource"]["gender"] for item in again["entry"]] == ["other", "male"]


def test_since_accepts_an_offset_written_with_an_unescaped_plus(http: httpx.Client) -> None:
    created = create(http, factories.patient())
    # "+01:00" typed into a URL without escaping reaches the server as a space.
    response = http.get(f"/Patient/{created['id']}/_history?_since=2000-01-01T01:00:00+01:00")
    assert response.status_code == 200
    assert len(body(response)["entry"]) == 1
    later = http.get(f"/Patient/{created['id']}/_history?_since=2999-01-01T00:00:00%2B01:00")
    assert body(later).get("entry", []) == []


def test_since_with_a_bad_instant_is_400(http: httpx.Client) -> None:
    assert_outcome(http.get("/_history", params={"_since": "yesterday"}), 400, says="_since")


def test_count_must_be_a_number(http: httpx.Client) -> None:
    assert_outcome(http.get("/_history", params={"_count": "many"}), 400, says="_count")


def test_type_history_holds_only_that_type_and_system_history_holds_all(
    http: httpx.Client,
) -> None:
    patient = create(http, factories.patient())
    organization = create(http, factories.organization())
    type_history = body(http.get("/Patient/_history"))
    assert [item["resource"]["id"] for item in type_history["entry"]] == [patient["id"]]
    system_history = body(http.get("/_history"))
    assert [item["resource"]["resourceType"] for item in system_history["entry"]] == [
        "Organization",
        "Patient",
    ]
    assert {item["resource"]["id"] for item in system_history["entry"]} == {
        patient["id"],
        organization["id"],
    }


def test_history_of_unknown_resources(http: httpx.Client) -> None:
    assert_outcome(http.get("/Patient/nobody/_history"), 404)
    assert_outcome(http.get("/NotAType/_history"), 404)
