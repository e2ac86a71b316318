"""Every refusal is an OperationOutcome with the status FHIR R4 gives it."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import httpx
import pytest

from tests import factories
from tests.fhir.support import assert_outcome, body, create

ONE_MIB = 1024 * 1024


def test_malformed_json_is_400(http: httpx.Client) -> None:
    response = http.post(
        "/Patient",
        content=b'{"resourceType": "Patient",',
        headers={"Content-Type": "application/fhir+json"},
    )
    assert_outcome(response, 400, code="structure", says="not valid JSON")


def test_json_that_is_not_a_resource_is_400(http: httpx.Client) -> None:
    assert_outcome(http.post("/Patient", json=[1, 2]), 400)
    assert_outcome(http.post("/Patient", json={"name": []}), 400, says="resourceType")


def test_an_empty_body_is_400(http: httpx.Client) -> None:
    response = http.post("/Patient", headers={"Content-Type": "application/fhir+json"})
    assert_outcome(response, 400, says="no body")


def test_resource_type_differing_from_the_url_is_400(http: httpx.Client) -> None:
    assert_outcome(http.post("/Patient", json=factories.organization()), 400, says="resourceType")


def test_unknown_resource_types_are_404(http: httpx.Client) -> None:
    assert_outcome(http.get("/Spaceship"), 404)
    assert_outcome(http.get("/Spaceship/1"), 404)
    assert_outcome(http.get("/Spaceship/1/_history/1"), 404)
    spaceship = {"resourceType": "Spaceship", "name": "x"}
    assert_outcome(http.post("/Spaceship", json=spaceship), 404)
    assert_outcome(http.put("/Spaceship/1", json={**spaceship, "id": "1"}), 404)
    assert_outcome(http.delete("/Spaceship/1"), 404)


def test_paths_the_api_does_not_have_are_404(http: httpx.Client) -> None:
    assert_outcome(http.get("/Patient/1/_history/1/more"), 404, says="no FHIR endpoint")
    assert_outcome(http.get("/patient"), 404)


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("DELETE", "/metadata", {"GET"}),
        ("POST", "/metadata", {"GET"}),
        ("PUT", "/_history", {"GET"}),
        ("DELETE", "/Patient/_history", {"GET"}),
        ("POST", "/Patient/p1/_history", {"GET"}),
        ("DELETE", "/Patient/p1/_history/1", {"GET"}),
        ("GET", "/Patient/_search", {"POST"}),
        ("POST", "/Patient/p1", {"GET", "PUT", "PATCH", "DELETE"}),
        ("DELETE", "", {"GET", "POST"}),
    ],
)
def test_methods_a_path_does_not_take_are_405_with_allow(
    http: httpx.Client, method: str, path: str, allowed: set[str]
) -> None:
    response = http.request(method, path, json=factories.patient())
    assert_outcome(response, 405, code="not-supported")
    offered = {part.strip() for part in response.headers["allow"].split(",")}
    assert allowed <= offered
    assert method not in offered


def test_a_body_over_the_limit_is_413(
    http: httpx.Client, stored_rows: Callable[[str], int]
) -> None:
    big = factories.patient(text={"status": "generated", "div": "<div>" + "x" * ONE_MIB + "</div>"})
    assert_outcome(http.post("/Patient", json=big), 413)
    assert_outcome(http.put("/Patient/big", json={**big, "id": "big"}), 413)
    bundle = factories.transaction(factories.entry("POST", "Patient", big))
    assert_outcome(http.post("", json=bundle), 413)
    operations = [{"op": "add", "path": "/text", "value": big["text"]}]
    patch = http.patch(
        "/Patient/big", json=operations, headers={"Content-Type": "application/json-patch+json"}
    )
    assert_outcome(patch, 413)
    assert stored_rows("resource") == 0
    # The client's connection is still usable after a refused upload.
    assert http.get("/metadata").status_code == 200
    assert create(http, factories.patient())["id"]


def test_a_streamed_body_over_the_limit_is_413(http: httpx.Client) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"resourceType": "Patient", "text": {"div": "'
        for _ in range(2 * 64):
            yield b"x" * (16 * 1024)
        yield b'"}}'

    # A generator body is sent chunked, without Content-Length.
    response = http.post(
        "/Patient", content=chunks(), headers={"Content-Type": "application/fhir+json"}
    )
    assert_outcome(response, 413)


def test_a_body_just_under_the_limit_is_read(http: httpx.Client) -> None:
    def narrative(filler: str) -> dict[str, str]:
        return {
            "status": "generated",
            "div": f'<div xmlns="http://www.w3.org/1999/xhtml">{filler}</div>',
        }

    padded = factories.patient(text=narrative(""), id="padded")
    room = ONE_MIB - len(httpx.Request("PUT", "/", json=padded).content)
    padded["text"] = narrative("p" * (room - 100))
    response = http.put("/Patient/padded", json=padded)
    assert response.status_code == 201, response.text


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/xml", "application/fhir+xml", None]
)
def test_a_body_in_another_media_type_is_415(http: httpx.Client, content_type: str | None) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    response = http.post("/Patient", content=b'{"resourceType": "Patient"}', headers=headers)
    assert_outcome(response, 415)


def test_plain_json_media_types_are_read(http: httpx.Client) -> None:
    for content_type in ("application/json", "application/fhir+json; charset=utf-8"):
        response = http.post(
            "/Patient",
            content=b'{"resourceType": "Patient"}',
            headers={"Content-Type": content_type},
        )
        assert response.status_code == 201, content_type


def test_errors_on_reads_keep_the_resource_intact(http: httpx.Client) -> None:
    created = create(http, factories.patient())
    response = http.put(
        f"/Patient/{created['id']}", content=b"{", headers={"Content-Type": "application/fhir+json"}
    )
    assert_outcome(response, 400)
    assert body(http.get(f"/Patient/{created['id']}")) == created
