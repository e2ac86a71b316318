"""Conditional create / update / delete and version-aware updates (If-Match)."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import psycopg
from fhirpy import SyncFHIRClient

from tests import factories
from tests.fhir.support import assert_outcome, body, create, put, search_ids


def _token(ident: dict[str, str]) -> str:
    return f"{ident['system']}|{ident['value']}"


# -- conditional create (If-None-Exist) ---------------------------------------------
def test_conditional_create_with_no_match_creates(http: httpx.Client) -> None:
    ident = factories.identifier()
    response = http.post(
        "/Patient",
        json=factories.patient(identifiers=[ident]),
        headers={"If-None-Exist": f"identifier={_token(ident)}"},
    )
    assert response.status_code == 201
    assert search_ids(http, "/Patient", identifier=_token(ident)) == [body(response)["id"]]


def test_conditional_create_with_one_match_returns_it_and_creates_nothing(
    http: httpx.Client,
) -> None:
    ident = factories.identifier()
    existing = create(http, factories.patient(identifiers=[ident], gender="female"))
    response = http.post(
        "/Patient",
        json=factories.patient(identifiers=[ident], gender="male"),
        headers={"If-None-Exist": f"identifier={_token(ident)}"},
    )
    assert response.status_code == 200
    assert body(response) == existing
    assert response.headers["location"].endswith(f"/Patient/{existing['id']}/_history/1")
    assert search_ids(http, "/Patient") == [existing["id"]]


def test_conditional_create_with_two_matches_is_412(http: httpx.Client) -> None:
    ident = factories.identifier()
    create(http, factories.patient(identifiers=[ident]))
    create(http, factories.patient(identifiers=[ident]))
    response = http.post(
        "/Patient",
        json=factories.patient(identifiers=[ident]),
        headers={"If-None-Exist": f"identifier={_token(ident)}"},
    )
    assert_outcome(response, 412)
    assert len(search_ids(http, "/Patient")) == 2


def test_concurrent_conditional_creates_create_one_resource(http: httpx.Client) -> None:
    ident = factories.identifier()

    def post(_: int) -> int:
        return http.post(
            "/Patient",
            json=factories.patient(identifiers=[ident]),
            headers={"If-None-Exist": f"identifier={_token(ident)}"},
        ).status_code

    with ThreadPoolExecutor(max_workers=4) as pool:
        statuses = sorted(pool.map(post, range(4)))
    assert statuses == [200, 200, 200, 201]
    assert len(search_ids(http, "/Patient")) == 1


# -- conditional update -------------------------------------------------------------
def test_conditional_update_with_one_match_updates_that_resource(http: httpx.Client) -> None:
    ident = factories.identifier()
    existing = create(http, factories.patient(identifiers=[ident], gender="female"))
    response = http.put(
        "/Patient",
        params={"identifier": _token(ident)},
        json=factories.patient(identifiers=[ident], gender="male"),
    )
    assert response.status_code == 200
    updated = body(response)
    assert updated["id"] == existing["id"]
    assert updated["meta"]["versionId"] == "2"
    assert updated["gender"] == "male"


def test_conditional_update_with_no_match_creates(http: httpx.Client) -> None:
    ident = factories.identifier()
    response = http.put(
        "/Patient",
        params={"identifier": _token(ident)},
        json=factories.patient(identifiers=[ident]),
    )
    assert response.status_code == 201
    assert search_ids(http, "/Patient", identifier=_token(ident)) == [body(response)["id"]]
    with_id = http.put(
        "/Patient",
        params={"identifier": _token(factories.identifier())},
        json=factories.patient(id="chosen-by-client"),
    )
    assert with_id.status_code == 201
    assert body(with_id)["id"] == "chosen-by-client"


def test_conditional_update_refuses_a_body_id_other_than_the_match(http: httpx.Client) -> None:
    ident = factories.identifier()
    create(http, factories.patient(identifiers=[ident]))
    response = http.put(
        "/Patient",
        params={"identifier": _token(ident)},
        json=factories.patient(identifiers=[ident], id="someone-else"),
    )
    assert_outcome(response, 400)


def test_conditional_update_with_two_matches_is_412(http: httpx.Client) -> None:
    ident = factories.identifier()
    create(http, factories.patient(identifiers=[ident]))
    create(http, factories.patient(identifiers=[ident]))
    response = http.put(
        "/Patient",
        params={"identifier": _token(ident)},
        json=factories.patient(identifiers=[ident]),
    )
    assert_outcome(response, 412)


def test_conditional_update_refuses_a_body_of_another_type(http: httpx.Client) -> None:
    params = {"identifier": _token(factories.identifier())}
    response = http.put("/Patient", params=params, json=factories.organization())
    assert_outcome(response, 400, says="resourceType")
    assert search_ids(http, "/Organization") == []


def test_conditional_update_needs_criteria(http: httpx.Client) -> None:
    assert_outcome(http.put("/Patient", json=factories.patient()), 400)


def test_fhirpy_conditional_update(fhir: SyncFHIRClient) -> None:
    ident = factories.identifier()
    resource = fhir.resource("Patient", **factories.patient(identifiers=[ident]))
    first, created = fhir.resources("Patient").search(identifier=_token(ident)).update(resource)
    assert created
    second, created_again = (
        fhir.resources("Patient").search(identifier=_token(ident)).update(resource)
    )
    assert not created_again
    assert second.id == first.id


# -- conditional delete -------------------------------------------------------------
def test_conditional_delete_removes_the_single_match(http: httpx.Client) -> None:
    ident = factories.identifier()
    existing = create(http, factories.patient(identifiers=[ident]))
    other = create(http, factories.patient())
    response = http.delete("/Patient", params={"identifier": _token(ident)})
    assert response.status_code == 204
    assert_outcome(http.get(f"/Patient/{existing['id']}"), 410)
    assert http.get(f"/Patient/{other['id']}").status_code == 200


def test_conditional_delete_with_no_match_is_204(http: httpx.Client) -> None:
    response = http.delete("/Patient", params={"identifier": _token(factories.identifier())})
    assert response.status_code == 204


def test_conditional_delete_with_two_matches_is_412_and_deletes_nothing(
    http: httpx.Client,
) -> None:
    ident = factories.identifier()
    create(http, factories.patient(identifiers=[ident]))
    create(http, factories.patient(identifiers=[ident]))
    assert_outcome(http.delete("/Patient", params={"identifier": _token(ident)}), 412)
    assert len(search_ids(http, "/Patient")) == 2


def test_delete_with_prefer_operation_outcome_says_what_happened(http: httpx.Client) -> None:
    existing = create(http, factories.patient())
    prefer = {"Prefer": "return=OperationOutcome"}
    deleted = http.delete(f"/Patient/{existing['id']}", headers=prefer)
    assert deleted.status_code == 200
    assert body(deleted)["issue"][0]["diagnostics"] == "deleted"
    again = http.delete(f"/Patient/{existing['id']}", headers=prefer)
    assert body(again)["issue"][0]["diagnostics"] == "nothing to delete"


# -- If-Match -----------------------------------------------------------------------
def test_if_match_with_the_current_version_updates(http: httpx.Client) -> None:
    existing = create(http, factories.patient())
    response = put(http, {**existing, "gender": "male"}, **{"If-Match": 'W/"1"'})
    assert response.status_code == 200
    assert response.headers["etag"] == 'W/"2"'


def test_if_match_with_another_version_is_412_and_changes_nothing(http: httpx.Client) -> None:
    existing = create(http, factories.patient(gender="female"))
    put(http, {**existing, "gender": "male"})
    response = put(http, {**existing, "gender": "other"}, **{"If-Match": 'W/"1"'})
    assert_outcome(response, 412, says="version 2")
    assert body(http.get(f"/Patient/{existing['id']}"))["gender"] == "male"


def test_if_match_on_a_resource_that_does_not_exist_is_412(http: httpx.Client) -> None:
    response = put(http, factories.patient(id="not-there"), **{"If-Match": 'W/"1"'})
    assert_outcome(response, 412)
    assert_outcome(http.get("/Patient/not-there"), 404)


def test_if_match_must_be_a_version_etag(http: httpx.Client) -> None:
    existing = create(http, factories.patient())
    response = put(http, existing, **{"If-Match": "yesterday"})
    assert_outcome(response, 400, says="If-Match")


def test_two_concurrent_updates_with_the_same_if_match_one_wins(http: httpx.Client) -> None:
    existing = create(http, factories.patient(gender="female"))
    barrier = threading.Barrier(2)

    def update(gender: str) -> int:
        barrier.wait()
        return put(http, {**existing, "gender": gender}, **{"If-Match": 'W/"1"'}).status_code

    with ThreadPoolExecutor(max_workers=2) as pool:
        statuses = sorted(pool.map(update, ["male", "other"]))
    assert statuses == [200, 412]
    current = body(http.get(f"/Patient/{existing['id']}"))
    assert current["meta"]["versionId"] == "2"


def test_create_racing_another_create_of_the_same_id_is_409(
    http: httpx.Client, clean_database: str
) -> None:
    """A PUT-as-create that loses the race to a concurrent create gets 409 Conflict."""
    with psycopg.connect(clean_database) as other:
        # Another writer has inserted Patient/raced but not committed yet.
        other.execute(
            "INSERT INTO resource (resource_type, id, version_id, last_updated, method, content)"
            " VALUES ('Patient', 'raced', 1, now(), 'PUT', %s)",
            ('{"resourceType": "Patient", "id": "raced"}',),
        )
        with ThreadPoolExecutor(max_workers=1) as pool:
            pending = pool.submit(put, http, factories.patient(id="raced"))
            _wait_for_a_lock_wait(other)
            other.commit()
            response: Any = pending.result(timeout=30)
    assert_outcome(response, 409)


def _wait_for_a_lock_wait(conn: psycopg.Connection[Any]) -> None:
    """Until a backend other than ``conn`` waits on a row lock (the hub's insert is
    blocked; a hub's audit writer waiting on the chain's advisory lock is not it)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE wait_event_type = 'Lock' AND wait_event <> 'advisory'"
            " AND pid <> pg_backend_pid()"
            " AND datname = current_database()"
        ).fetchone()
        if row and row[0]:
            return
        time.sleep(0.01)
    raise AssertionError("the hub's write never waited on the uncommitted row")
