"""read, vread, create, update, patch and delete (FHIR R4 http.html#read ... #delete)."""

from __future__ import annotations

import re
from datetime import timedelta

import httpx
import pytest
from fhirpy import SyncFHIRClient
from fhirpy.base.exceptions import ResourceNotFound

from tests import factories
from tests.fhir.support import (
    assert_outcome,
    body,
    create,
    instant,
    last_modified,
    put,
)

PATCH_JSON = {"Content-Type": "application/json-patch+json"}


# -- create -------------------------------------------------------------------------
def test_create_assigns_an_id_version_1_and_last_updated(
    http: httpx.Client, fhir_base: str
) -> None:
    sent = factories.patient(id="client-chosen")
    response = http.post("/Patient", json=sent)
    assert response.status_code == 201
    created = body(response)
    # The server assigns the id, ignoring any id in the body.
    assert created["id"] and created["id"] != "client-chosen"
    assert created["meta"]["versionId"] == "1"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", created["meta"]["lastUpdated"])
    assert response.headers["location"] == f"{fhir_base}/Patient/{created['id']}/_history/1"
    assert response.headers["etag"] == 'W/"1"'
    assert created["name"] == sent["name"]


def test_last_modified_header_is_meta_last_updated(http: httpx.Client) -> None:
    response = http.post("/Patient", json=factories.patient())
    stamped = instant(body(response)["meta"]["lastUpdated"])
    # HTTP dates carry whole seconds: Last-Modified is lastUpdated truncated.
    assert last_modified(response) == stamped.replace(microsecond=0)
    read = http.get(f"/Patient/{body(response)['id']}")
    assert last_modified(read) == stamped.replace(microsecond=0)
    assert instant(body(read)["meta"]["lastUpdated"]) == stamped
    assert stamped - last_modified(read) < timedelta(seconds=1)


def test_every_answer_with_a_resource_agrees_on_its_version(http: httpx.Client) -> None:
    """ETag, Last-Modified and Location say what the body's meta says, on every path."""
    created = http.post("/Patient", json=factories.patient())
    stored = body(created)
    url = f"/Patient/{stored['id']}"
    ident = stored["identifier"][0]
    responses = [
        created,
        http.get(url),
        put(http, {**stored, "gender": "male"}),
        http.patch(
            url, json=[{"op": "replace", "path": "/gender", "value": "other"}], headers=PATCH_JSON
        ),
        http.get(f"{url}/_history/2"),
        http.post(
            "/Patient",
            json=factories.patient(),
            headers={"If-None-Exist": f"identifier={ident['system']}|{ident['value']}"},
        ),
        put(http, body(http.get(url))),
    ]
    for response in responses:
        assert response.status_code in (200, 201), response.text
        meta = body(response)["meta"]
        assert response.headers["etag"] == f'W/"{meta["versionId"]}"'
        assert last_modified(response) == instant(meta["lastUpdated"]).replace(microsecond=0)
        if "location" in response.headers:
            assert response.headers["location"].endswith(f"{url}/_history/{meta['versionId']}")


def test_fhirpy_client_creates_updates_and_deletes(fhir: SyncFHIRClient) -> None:
    patient = fhir.resource("Patient", **factories.patient(family="Essai"))
    patient.save()
    assert patient["meta"]["versionId"] == "1"
    patient["gender"] = "male"
    patient.save()
    assert patient["meta"]["versionId"] == "2"
    assert fhir.reference("Patient", patient.id).to_resource()["gender"] == "male"
    patient.delete()
    with pytest.raises(ResourceNotFound):
        fhir.reference("Patient", patient.id).to_resource()


# -- read / vread -------------------------------------------------------------------
def test_head_reads_and_never_writes(http: httpx.Client) -> None:
    created = create(http, factories.patient())
    ident = created["identifier"][0]
    instance = http.head(f"/Patient/{created['id']}")
    assert instance.status_code == 200
    assert instance.headers["etag"] == 'W/"1"'
    assert instance.content == b""
    search = http.head("/Patient", params={"identifier": f"{ident['system']}|{ident['value']}"})
    assert search.status_code == 200
    assert http.head("/_history").status_code == 200
    assert http.get(f"/Patient/{created['id']}").status_code == 200
    assert body(http.get(f"/Patient/{created['id']}/_history"))["entry"][0]["request"] == {
        "method": "POST",
        "url": "Patient",
    }


def test_read_returns_the_current_version_with_its_etag(http: httpx.Client) -> None:
    created = create(http, factories.patient())
    response = http.get(f"/Patient/{created['id']}")
    assert response.status_code == 200
    assert body(response) == created
    assert response.headers["etag"] == 'W/"1"'


def test_read_of_an_unknown_id_is_404(http: httpx.Client) -> None:
    assert_outcome(http.get("/Patient/no-such-patient"), 404, code="not-found")


def test_vread_returns_each_version(http: httpx.Client) -> None:
    created = create(http, factories.patient(gender="female"))
    assert put(http, {**created, "gender": "male"}).status_code == 200
    first = http.get(f"/Patient/{created['id']}/_history/1")
    second = http.get(f"/Patient/{created['id']}/_history/2")
    assert body(first)["gender"] == "female"
    assert body(second)["gender"] == "male"
    assert first.headers["etag"] == 'W/"1"'
    assert second.headers["etag"] == 'W/"2"'
    assert_outcome(http.get(f"/Patient/{created['id']}/_history/3"), 404)
    assert_outcome(http.get(f"/Patient/{created['id']}/_history/x"), 404)


# -- update -------------------------------------------------------------------------
def test_update_writes_a_new_version(http: httpx.Client) -> None:
    created = create(http, factories.patient())
    response = put(http, {**created, "gender": "other"})
    assert response.status_code == 200
    updated = body(response)
    assert updated["meta"]["versionId"] == "2"
    assert updated["gender"] == "other"
    assert response.headers["etag"] == 'W/"2"'
    assert response.headers["location"].endswith(f"/Patient/{created['id']}/_history/2")
    assert instant(updated["meta"]["lastUpdated"]) >= instant(created["meta"]["lastUpdated"])


def test_update_with_identical_content_writes_no_new_version(http: httpx.Client) -> None:
    created = create(http, factories.patient())
    response = put(http, created)
    assert response.status_code == 200
    assert body(response)["meta"]["versionId"] == "1"


def test_update_to_a_new_client_id_creates_it(http: httpx.Client) -> None:
    response = put(http, factories.patient(id="ipp-test-42"))
    assert response.status_code == 201
    assert body(response)["id"] == "ipp-test-42"
    assert body(response)["meta"]["versionId"] == "1"
    assert response.headers["location"].endswith("/Patient/ipp-test-42/_history/1")
    assert http.get("/Patient/ipp-test-42").status_code == 200


def test_update_without_an_id_in_the_body_is_400(http: httpx.Client) -> None:
    response = http.put("/Patient/abc", json=factories.patient())
    assert_outcome(response, 400, says="id")


def test_update_with_a_different_id_in_the_body_is_400(http: httpx.Client) -> None:
    response = http.put("/Patient/abc", json=factories.patient(id="xyz"))
    assert_outcome(response, 400, says="id")


def test_update_with_another_resource_type_is_400(http: httpx.Client) -> None:
    response = http.put("/Patient/abc", json=factories.organization(id="abc"))
    assert_outcome(response, 400, says="resourceType")


def test_update_with_an_invalid_id_is_400(http: httpx.Client) -> None:
    bad = "a" * 65
    assert_outcome(put(http, factories.patient(id=bad)), 400, says="id")


# -- delete -------------------------------------------------------------------------
def test_delete_then_read_is_410_and_old_versions_stay_readable(http: httpx.Client) -> None:
    created = create(http, factories.patient())
    response = http.delete(f"/Patient/{created['id']}")
    assert response.status_code == 204
    assert response.content == b""
    assert_outcome(http.get(f"/Patient/{created['id']}"), 410, code="deleted")
    old = http.get(f"/Patient/{created['id']}/_history/1")
    assert old.status_code == 200
    assert body(old)["id"] == created["id"]
    # The deletion is version 2: reading it says the resource was deleted.
    assert_outcome(http.get(f"/Patient/{created['id']}/_history/2"), 410)
    # A deleted resource is not found by search.
    assert body(http.get("/Patient", params={"_id": created["id"]})).get("entry", []) == []


def test_deleting_twice_or_an_unknown_id_is_a_204_without_a_new_version(
    http: httpx.Client,
) -> None:
    created = create(http, factories.patient())
    assert http.delete(f"/Patient/{created['id']}").status_code == 204
    assert http.delete(f"/Patient/{created['id']}").status_code == 204
    history = body(http.get(f"/Patient/{created['id']}/_history"))
    assert [item["response"]["etag"] for item in history["entry"]] == ['W/"2"', 'W/"1"']
    # R4: "Upon successful deletion, or if the resource does not exist at all ... 204".
    assert http.delete("/Patient/never-existed").status_code == 204
    assert_outcome(http.get("/Patient/never-existed"), 404)


def test_update_brings_a_deleted_resource_back(http: httpx.Client) -> None:
    created = create(http, factories.patient())
    http.delete(f"/Patient/{created['id']}")
    response = put(http, created)
    assert response.status_code == 201
    assert body(response)["meta"]["versionId"] == "3"
    assert http.get(f"/Patient/{created['id']}").status_code == 200


# -- patch --------------------------------------------------------------------------
def test_json_patch_updates_the_resource(http: httpx.Client) -> None:
    created = create(http, factories.patient(gender="female"))
    operations = [
        {"op": "test", "path": "/gender", "value": "female"},
        {"op": "replace", "path": "/gender", "value": "male"},
        {"op": "add", "path": "/name/0/given/-", "value": "Claude"},
    ]
    response = http.patch(f"/Patient/{created['id']}", json=operations, headers=PATCH_JSON)
    assert response.status_code == 200
    patched = body(response)
    assert patched["gender"] == "male"
    assert patched["name"][0]["given"] == ["Camille", "Claude"]
    assert patched["meta"]["versionId"] == "2"
    assert response.headers["etag"] == 'W/"2"'
    assert body(http.get(f"/Patient/{created['id']}"))["gender"] == "male"


def test_json_patch_honours_if_match(http: httpx.Client) -> None:
    created = create(http, factories.patient())
    operations = [{"op": "replace", "path": "/gender", "value": "male"}]
    url = f"/Patient/{created['id']}"
    stale = http.patch(url, json=operations, headers={**PATCH_JSON, "If-Match": 'W/"7"'})
    assert_outcome(stale, 412)
    fresh = http.patch(url, json=operations, headers={**PATCH_JSON, "If-Match": 'W/"1"'})
    assert fresh.status_code == 200


def test_json_patch_needs_its_media_type(http: httpx.Client) -> None:
    created = create(http, factories.patient())
    operations = [{"op": "replace", "path": "/gender", "value": "male"}]
    response = http.patch(
        f"/Patient/{created['id']}",
        json=operations,
        headers={"Content-Type": "application/fhir+json"},
    )
    assert_outcome(response, 415)


def test_a_json_patch_that_fails_or_breaks_the_resource_is_refused(http: httpx.Client) -> None:
    created = create(http, factories.patient(gender="female"))
    url = f"/Patient/{created['id']}"
    failing_test = [{"op": "test", "path": "/gender", "value": "male"}]
    assert_outcome(http.patch(url, json=failing_test, headers=PATCH_JSON), 422)
    invalid_result = [{"op": "replace", "path": "/birthDate", "value": "not-a-date"}]
    assert_outcome(http.patch(url, json=invalid_result, headers=PATCH_JSON), 422, says="birthDate")
    change_id = [{"op": "replace", "path": "/id", "value": "other"}]
    assert_outcome(http.patch(url, json=change_id, headers=PATCH_JSON), 422)
    not_a_patch = {"op": "replace"}
    assert_outcome(http.patch(url, json=not_a_patch, headers=PATCH_JSON), 400)
    unknown_op = [{"op": "frobnicate", "path": "/gender"}]
    assert_outcome(http.patch(url, json=unknown_op, headers=PATCH_JSON), 400)
    replace_whole = [{"op": "replace", "path": "", "value": ["not", "a", "resource"]}]
    assert_outcome(http.patch(url, json=replace_whole, headers=PATCH_JSON), 422)
    assert body(http.get(url))["meta"]["versionId"] == "1"


def test_json_patch_of_missing_or_deleted_resources(http: httpx.Client) -> None:
    operations = [{"op": "replace", "path": "/gender", "value": "male"}]
    assert_outcome(http.patch("/Patient/nobody", json=operations, headers=PATCH_JSON), 404)
    created = create(http, factories.patient())
    http.delete(f"/Patient/{created['id']}")
    response = http.patch(f"/Patient/{created['id']}", json=operations, headers=PATCH_JSON)
    assert_outcome(response, 410)
