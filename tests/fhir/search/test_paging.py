"""Keyset paging: next/previous links that survive inserts and deletes between fetches."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fhirpy import SyncFHIRClient

from maillage.fhir.search.paging import encode
from tests import factories
from tests.fhir.search.conftest import NURSE, HidingPolicy, hidden
from tests.fhir.support import assert_outcome, body, create


def _page(http: httpx.Client, url: str, **headers: str) -> tuple[list[str], dict[str, str]]:
    response = http.get(url, headers=headers)
    assert response.status_code == 200, response.text
    page = body(response)
    links = {link["relation"]: link["url"] for link in page["link"]}
    return [item["resource"]["id"] for item in page.get("entry", [])], links


def _families(http: httpx.Client, families: str, **extra: Any) -> dict[str, str]:
    """One Patient per letter, its family name that letter (``gender=other``)."""
    return {
        letter: create(http, factories.patient(family=f"{letter}-fam", gender="other", **extra))[
            "id"
        ]
        for letter in families
    }


def test_inserts_before_the_cursor_neither_duplicate_nor_skip(http: httpx.Client) -> None:
    people = _families(http, "BDFHJL")
    first, links = _page(http, "/Patient?gender=other&_sort=family&_count=2")
    assert first == [people["B"], people["D"]]
    assert "_offset" not in links["next"] and "_page=" in links["next"]
    # rows that sort before the cursor, and one right after it, arrive between fetches
    early = _families(http, "AC")
    late = _families(http, "E")
    second, links = _page(http, links["next"])
    assert second == [late["E"], people["F"]]
    third, links = _page(http, links["next"])
    fourth, links = _page(http, links["next"])
    assert third + fourth == [people["H"], people["J"], people["L"]]
    seen = first + second + third + fourth
    assert len(seen) == len(set(seen))
    assert set(seen) == set(people.values()) | set(late.values())
    assert "next" not in links
    assert not set(early.values()) & set(seen)


def test_default_order_survives_inserts_and_deletes(http: httpx.Client) -> None:
    people = [create(http, factories.patient(gender="other"))["id"] for _ in range(6)]
    first, links = _page(http, "/Patient?gender=other&_count=2")
    assert first == people[:2]
    # another page is deleted and new rows arrive between fetches
    assert http.delete(f"/Patient/{people[2]}").status_code == 204
    added = [create(http, factories.patient(gender="other"))["id"] for _ in range(2)]
    seen = list(first)
    url: str | None = links["next"]
    while url:
        ids, links = _page(http, url)
        seen += ids
        url = links.get("next")
    assert seen == people[:2] + people[3:] + added


def test_previous_links_go_back_page_by_page(http: httpx.Client) -> None:
    people = _families(http, "ABCDEFG", birth_date="1990-01-01")
    url = "/Patient?gender=other&_sort=-family&_count=3"
    pages = []
    links: dict[str, str] = {"next": url}
    while "next" in links:
        ids, links = _page(http, links["next"])
        pages.append(ids)
    assert pages == [
        [people["G"], people["F"], people["E"]],
        [people["D"], people["C"], people["B"]],
        [people["A"]],
    ]
    # an insert before the first page does not shift the pages going back either
    create(http, factories.patient(family="Z-fam", gender="other"))
    ids, links = _page(http, links["previous"])
    assert ids == pages[1]
    ids, links = _page(http, links["previous"])
    assert ids == pages[0]
    assert "previous" in links  # the new Z row sorts before it
    ids, links = _page(http, links["previous"])
    assert len(ids) == 1 and "previous" not in links
    ids, _ = _page(http, links["next"])
    assert ids == pages[0]


def test_sort_keys_with_missing_values_page_across_the_nulls(
    http: httpx.Client, fhir: SyncFHIRClient
) -> None:
    born = {
        year: create(http, factories.patient(gender="other", birth_date=f"{year}-06-01"))["id"]
        for year in (1950, 1960, 1970)
    }
    unborn = []
    for _ in range(3):
        resource = factories.patient(gender="other")
        resource.pop("birthDate")
        unborn.append(create(http, resource)["id"])
    expected = [born[1950], born[1960], born[1970], *unborn]
    found = fhir.resources("Patient").search(gender="other").sort("birthdate").limit(2)
    assert [patient.id for patient in found.fetch_all()] == expected
    found = fhir.resources("Patient").search(gender="other").sort("-birthdate").limit(2)
    assert [patient.id for patient in found.fetch_all()] == [
        born[1970],
        born[1960],
        born[1950],
        *unborn,
    ]


def test_hidden_rows_never_appear_in_any_page(http: httpx.Client, hiding: HidingPolicy) -> None:
    shown, secret = [], []
    for index in range(8):
        resource = factories.patient(family=f"P{index}", gender="other")
        if index % 2:
            secret.append(create(http, hidden(resource))["id"])
        else:
            shown.append(create(http, resource)["id"])
    seen: list[str] = []
    url: str | None = "/Patient?gender=other&_sort=family&_count=1&_total=accurate"
    pages = 0
    while url:
        response = http.get(url, headers=NURSE)
        page = body(response)
        assert page["total"] == len(shown)
        seen += [item["resource"]["id"] for item in page.get("entry", [])]
        url = next((link["url"] for link in page["link"] if link["relation"] == "next"), None)
        pages += 1
    assert seen == shown and pages == len(shown)
    # every page of the clinician's view carries both kinds
    everyone, _ = _page(http, "/Patient?gender=other&_sort=family&_count=20")
    assert set(everyone) == set(shown) | set(secret)


def test_whole_system_search_pages_by_cursor(http: httpx.Client) -> None:
    patient = create(http, factories.patient())["id"]
    others = [
        create(http, factories.observation(subject=f"Patient/{patient}"))["id"] for _ in range(3)
    ]
    seen: list[str] = []
    url: str | None = "/?_type=Patient,Observation&_count=2"
    while url:
        ids, links = _page(http, url)
        seen += ids
        url = links.get("next")
    assert seen == [*others, patient]  # by type, then in creation order
    assert len(seen) == len(set(seen))


@pytest.mark.parametrize(
    "cursor",
    ["not-base64!", "bm90IGpzb24", encode(["x"]), encode(["2020-13-45", 3])],
)
def test_a_forged_or_foreign_cursor_is_a_bad_request(http: httpx.Client, cursor: str) -> None:
    create(http, factories.patient())
    response = http.get("/Patient", params={"_sort": "birthdate", "_page": cursor})
    assert_outcome(response, 400, says="_page")


def test_offset_stays_accepted(http: httpx.Client) -> None:
    people = [create(http, factories.patient(gender="other"))["id"] for _ in range(4)]
    ids, links = _page(http, "/Patient?gender=other&_count=2&_offset=1")
    assert ids == people[1:3]
    assert "_offset=1" in links["self"]
    assert _page(http, links["next"])[0] == people[3:]
    assert _page(http, links["previous"])[0] == people[:1]
