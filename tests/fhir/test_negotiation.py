"""Formats (JSON only, 406 for XML), ``_pretty``, and the ``Prefer`` header."""

from __future__ import annotations

import httpx
import orjson
import pytest

from tests import factories
from tests.fhir.support import FHIR_JSON, assert_outcome, body, create


@pytest.mark.parametrize(
    "accept",
    [
        "application/fhir+json",
        "application/json",
        "*/*",
        "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
        "application/fhir+json; fhirVersion=4.0",
    ],
)
def test_json_is_served_to_clients_that_accept_it(http: httpx.Client, accept: str) -> None:
    created = create(http, factories.patient())
    response = http.get(f"/Patient/{created['id']}", headers={"Accept": accept})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith(FHIR_JSON)


@pytest.mark.parametrize("accept", ["application/fhir+xml", "application/xml", "text/xml"])
def test_xml_by_accept_is_406(http: httpx.Client, accept: str) -> None:
    created = create(http, factories.patient())
    response = http.get(f"/Patient/{created['id']}", headers={"Accept": accept})
    assert_outcome(response, 406, says="json")
    assert_outcome(http.get("/metadata", headers={"Accept": accept}), 406)


@pytest.mark.parametrize("wanted", ["xml", "application/fhir+xml", "text/xml", "ttl"])
def test_other_formats_by_format_parameter_are_406(http: httpx.Client, wanted: str) -> None:
    assert_outcome(http.get("/Patient", params={"_format": wanted}), 406)
    response = http.post("/Patient", params={"_format": wanted}, json=factories.patient())
    assert_outcome(response, 406)
    assert body(http.get("/Patient")).get("total") == 0


@pytest.mark.parametrize("wanted", ["json", "application/fhir+json", "application/json"])
def test_json_by_format_parameter_is_served(http: httpx.Client, wanted: str) -> None:
    created = create(http, factories.patient())
    response = http.get(f"/Patient/{created['id']}", params={"_format": wanted})
    assert response.status_code == 200
    assert body(response)["id"] == created["id"]
    # _format wins over Accept (browsers cannot set headers).
    both = http.get(
        f"/Patient/{created['id']}",
        params={"_format": wanted},
        headers={"Accept": "application/fhir+xml"},
    )
    assert both.status_code == 200


def test_pretty_indents_the_same_content(http: httpx.Client) -> None:
    created = create(http, factories.patient())
    compact = http.get(f"/Patient/{created['id']}")
    pretty = http.get(f"/Patient/{created['id']}", params={"_pretty": "true"})
    assert b"\n" not in compact.content
    assert pretty.json() == compact.json()
    # Indented throughout, stored resources embedded in a Bundle included.
    bundle = http.get("/Patient", params={"_pretty": "true"})
    for response in (pretty, bundle):
        assert response.content == orjson.dumps(response.json(), option=orjson.OPT_INDENT_2)
    assert b'\n      "resource": {\n        "' in bundle.content


# -- Prefer: return ------------------------------------------------------------------
def test_prefer_return_minimal_answers_headers_only(http: httpx.Client) -> None:
    response = http.post("/Patient", json=factories.patient(), headers={"Prefer": "return=minimal"})
    assert response.status_code == 201
    assert response.content == b""
    location = response.headers["location"]
    assert response.headers["etag"] == 'W/"1"'
    assert "last-modified" in response.headers
    stored = body(http.get(location))
    assert stored["meta"]["versionId"] == "1"
    update = http.put(
        location.split("/_history")[0],
        json={**stored, "gender": "male"},
        headers={"Prefer": "return=minimal"},
    )
    assert update.status_code == 200
    assert update.content == b""
    assert update.headers["etag"] == 'W/"2"'


def test_prefer_return_representation_is_the_default(http: httpx.Client) -> None:
    explicit = http.post(
        "/Patient", json=factories.patient(), headers={"Prefer": "return=representation"}
    )
    implicit = http.post("/Patient", json=factories.patient())
    for response in (explicit, implicit):
        assert response.status_code == 201
        assert body(response)["resourceType"] == "Patient"


def test_prefer_return_operation_outcome(http: httpx.Client) -> None:
    response = http.post(
        "/Patient", json=factories.patient(), headers={"Prefer": "return=OperationOutcome"}
    )
    assert response.status_code == 201
    outcome = body(response)
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["severity"] == "information"
    assert response.headers["location"]


def test_prefer_with_several_preferences_honours_each(http: httpx.Client) -> None:
    # RFC 7240: preferences are comma-separated, or sent in several headers.
    for prefer in ("return=minimal, handling=strict", "handling=strict; return=minimal"):
        created = http.post("/Patient", json=factories.patient(), headers={"Prefer": prefer})
        assert created.content == b"", prefer
        refused = http.get("/Patient", params={"bogus": "1"}, headers={"Prefer": prefer})
        assert_outcome(refused, 400, says="bogus")
    two_headers = http.post(
        "/Patient",
        json=factories.patient(),
        headers=[("Prefer", "handling=strict"), ("Prefer", "return=minimal")],
    )
    assert two_headers.content == b""


def test_an_unknown_return_preference_falls_back_to_representation(http: httpx.Client) -> None:
    response = http.post("/Patient", json=factories.patient(), headers={"Prefer": "return=all"})
    assert response.status_code == 201
    assert body(response)["resourceType"] == "Patient"
