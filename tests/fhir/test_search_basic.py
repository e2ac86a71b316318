"""The search basics the store has today (the full engine comes with a later issue)."""

from __future__ import annotations

from typing import Any

import httpx
from fhirpy import SyncFHIRClient

from tests import factories
from tests.fhir.support import assert_outcome, body, create, next_millisecond, search_ids


def _patients(http: httpx.Client) -> dict[str, dict[str, Any]]:
    """Three synthetic patients, by a short name."""
    return {
        "helene": create(
            http,
            factories.patient(
                family="Lefèvre", given=("Hélène",), birth_date="1980-02-03", gender="female"
            ),
        ),
        "eloise": create(
            http,
            factories.patient(
                family="Dupont-Marchand",
                given=("Éloïse", "Anne"),
                birth_date="1992-07-14",
                gender="female",
            ),
        ),
        "marc": create(
            http,
            factories.patient(family="Lefebvre", given=("Marc",), birth_date="2001", gender="male"),
        ),
    }


def _ids(http: httpx.Client, path: str = "/Patient", **params: Any) -> set[str]:
    return set(search_ids(http, path, **params))


def test_token_by_code_and_by_system_and_code(http: httpx.Client) -> None:
    ident = factories.identifier()
    patient = create(http, factories.patient(identifiers=[ident]))
    create(http, factories.patient())
    system, value = ident["system"], ident["value"]
    assert _ids(http, identifier=value) == {patient["id"]}
    assert _ids(http, identifier=f"{system}|{value}") == {patient["id"]}
    assert _ids(http, identifier=f"urn:oid:9.9.9|{value}") == set()
    assert len(_ids(http, identifier=f"{system}|")) == 2
    assert _ids(http, gender="male") == set()


def test_string_default_is_case_and_accent_insensitive_prefix(http: httpx.Client) -> None:
    patients = _patients(http)
    assert _ids(http, name="helene") == {patients["helene"]["id"]}
    assert _ids(http, name="HÉL") == {patients["helene"]["id"]}
    assert _ids(http, family="lefe") == {patients["helene"]["id"], patients["marc"]["id"]}
    assert _ids(http, given="eloise") == {patients["eloise"]["id"]}
    # Default string search matches the start of a word-folded value, not the middle.
    assert _ids(http, family="marchand") == set()


def test_string_exact_and_contains(http: httpx.Client) -> None:
    patients = _patients(http)
    assert _ids(http, **{"family:exact": "Lefèvre"}) == {patients["helene"]["id"]}
    assert _ids(http, **{"family:exact": "lefèvre"}) == set()
    assert _ids(http, **{"family:exact": "Lefevre"}) == set()
    assert _ids(http, **{"family:contains": "MARCHAND"}) == {patients["eloise"]["id"]}
    assert _ids(http, **{"family:contains": "fèv"}) == {patients["helene"]["id"]}


def test_date_prefixes(http: httpx.Client) -> None:
    patients = _patients(http)
    helene, eloise, marc = (patients[name]["id"] for name in ("helene", "eloise", "marc"))
    assert _ids(http, birthdate="1980-02-03") == {helene}
    assert _ids(http, birthdate="eq1980-02") == {helene}
    assert _ids(http, birthdate="lt1990-01-01") == {helene}
    assert _ids(http, birthdate="gt1990") == {eloise, marc}
    assert _ids(http, birthdate="ge1992-07-14") == {eloise, marc}
    assert _ids(http, birthdate="le1992-07-14") == {helene, eloise}
    assert _ids(http, birthdate="ne1980-02-03") == {eloise, marc}
    # A year-precision birthDate (2001) is within 2001 but not equal to one of its days.
    assert _ids(http, birthdate="2001") == {marc}
    assert _ids(http, birthdate="2001-05-01") == set()
    assert_outcome(http.get("/Patient", params={"birthdate": "ge-next-week"}), 400)


def test_reference_by_type_and_id_or_by_id(http: httpx.Client) -> None:
    patient = create(http, factories.patient())
    other = create(http, factories.patient())
    observation = create(http, factories.observation(subject=f"Patient/{patient['id']}"))
    create(http, factories.observation(subject=f"Patient/{other['id']}"))
    expected = {observation["id"]}
    assert _ids(http, "/Observation", subject=f"Patient/{patient['id']}") == expected
    assert _ids(http, "/Observation", subject=patient["id"]) == expected
    assert _ids(http, "/Observation", patient=patient["id"]) == expected
    assert _ids(http, "/Observation", **{"subject:Patient": patient["id"]}) == expected
    assert _ids(http, "/Observation", subject="Patient/nobody") == set()


def test_id_and_last_updated(http: httpx.Client) -> None:
    first = create(http, factories.patient())
    next_millisecond()  # the _lastUpdated cuts below fall between the two
    second = create(http, factories.patient())
    assert _ids(http, _id=first["id"]) == {first["id"]}
    assert _ids(http, _id=f"{first['id']},{second['id']}") == {first["id"], second["id"]}
    stamp = second["meta"]["lastUpdated"]
    assert _ids(http, _lastUpdated=f"ge{stamp}") == {second["id"]}
    assert _ids(http, _lastUpdated=f"lt{stamp}") == {first["id"]}
    assert _ids(http, _lastUpdated="gt2000-01-01") == {first["id"], second["id"]}


def test_comma_is_or_and_repetition_is_and(http: httpx.Client) -> None:
    patients = _patients(http)
    helene, eloise, marc = (patients[name]["id"] for name in ("helene", "eloise", "marc"))
    assert _ids(http, given="helene,marc") == {helene, marc}
    both = http.get("/Patient", params=[("family", "lef"), ("gender", "male")])
    assert {item["resource"]["id"] for item in body(both)["entry"]} == {marc}
    between = (("birthdate", "ge1981"), ("birthdate", "le2000"))
    assert {
        item["resource"]["id"] for item in body(http.get("/Patient", params=between))["entry"]
    } == {eloise}


def test_count_pages_with_next_links_to_the_end(http: httpx.Client) -> None:
    created = {create(http, factories.patient(gender="other"))["id"] for _ in range(7)}
    create(http, factories.patient(gender="male"))
    first = body(http.get("/Patient", params={"gender": "other", "_count": 3}))
    assert first["total"] == 7
    assert len(first["entry"]) == 3
    seen: list[str] = []
    url: str | None = "/Patient?gender=other&_count=3"
    pages = 0
    while url:
        page = body(http.get(url))
        seen.extend(item["resource"]["id"] for item in page.get("entry", []))
        links = {link["relation"]: link["url"] for link in page["link"]}
        assert "gender=other" in links["self"]
        url = links.get("next")
        pages += 1
        assert pages <= 3
    assert pages == 3
    assert sorted(seen) == sorted(created)
    zero = body(http.get("/Patient", params={"gender": "other", "_count": 0}))
    assert zero["total"] == 7
    assert zero.get("entry", []) == []
    assert "next" not in {link["relation"] for link in zero["link"]}


def test_fhirpy_iterates_over_every_page(fhir: SyncFHIRClient, http: httpx.Client) -> None:
    created = {create(http, factories.patient(family="Pagination"))["id"] for _ in range(5)}
    found = fhir.resources("Patient").search(family="pagination").limit(2).fetch_all()
    assert {patient.id for patient in found} == created


def test_unknown_parameters_are_ignored_unless_strict(http: httpx.Client) -> None:
    patient = create(http, factories.patient())
    lenient = http.get("/Patient", params={"shoe-size": "42"})
    assert lenient.status_code == 200
    assert [item["resource"]["id"] for item in body(lenient)["entry"]] == [patient["id"]]
    self_link = next(link["url"] for link in body(lenient)["link"] if link["relation"] == "self")
    assert "shoe-size" not in self_link
    strict = http.get("/Patient", params={"shoe-size": "42"}, headers={"Prefer": "handling=strict"})
    assert_outcome(strict, 400, says="shoe-size")


def test_search_by_post(http: httpx.Client) -> None:
    patients = _patients(http)
    response = http.post(
        "/Patient/_search",
        content=b"given=marc",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 200
    assert [item["resource"]["id"] for item in body(response)["entry"]] == [patients["marc"]["id"]]
    assert_outcome(http.post("/Patient/_search", json={"given": "marc"}), 415)


def test_searchset_shape(http: httpx.Client, fhir_base: str) -> None:
    patient = create(http, factories.patient())
    bundle = body(http.get("/Patient"))
    assert bundle["resourceType"] == "Bundle"
    assert bundle["type"] == "searchset"
    assert bundle["total"] == 1
    (item,) = bundle["entry"]
    assert item["fullUrl"] == f"{fhir_base}/Patient/{patient['id']}"
    assert item["search"] == {"mode": "match"}
    assert item["resource"] == patient
