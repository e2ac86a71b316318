"""The access decision point is consulted inside the store on every path, and its
refusals become 403 OperationOutcomes (reads, writes, searches, history, bundles)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from psycopg import sql

from maillage.errors import Forbidden
from maillage.fhir.repository import FhirStore
from maillage.security import Action, AllowAll, RequestContext
from tests import factories
from tests.fhir.support import assert_outcome, body, create, put

PATCH_JSON = {"Content-Type": "application/json-patch+json"}


class RecordingPolicy(AllowAll):
    """Allows everything except what ``refuse`` lists; records every consultation.

    ``refuse`` holds (who, action, resource type or None for any type). A user named
    ``blind`` sees no row at all through ``sql_filter``.
    """

    def __init__(self, refuse: set[tuple[str, Action, str | None]] | None = None) -> None:
        self.refuse = refuse or set()
        self.calls: list[tuple[str, Action, str]] = []
        self.filters: list[tuple[str, Action]] = []

    def authorize(
        self,
        ctx: RequestContext,
        action: Action,
        resource_type: str,
        resource: dict[str, Any] | None = None,
    ) -> None:
        self.calls.append((ctx.who, action, resource_type))
        if {(ctx.who, action, resource_type), (ctx.who, action, None)} & self.refuse:
            raise Forbidden(f"{ctx.who} may not {action} {resource_type}")

    def sql_filter(
        self,
        ctx: RequestContext,
        action: Action,
        table_alias: str,
        resource_type: str | None = None,
    ) -> sql.Composable:
        self.filters.append((ctx.who, action))
        return sql.SQL("FALSE") if ctx.who == "blind" else sql.SQL("TRUE")

    def consulted(self) -> set[tuple[Action, str]]:
        """(action, type) pairs authorised since the last call, then forget them."""
        seen = {(action, resource_type) for _, action, resource_type in self.calls}
        self.calls.clear()
        return seen

    def filtered(self) -> set[Action]:
        seen = {action for _, action in self.filters}
        self.filters.clear()
        return seen


@pytest.fixture
def install(store: FhirStore) -> Iterator[Callable[[RecordingPolicy], RecordingPolicy]]:
    """Put a policy in the running hub's store for one test."""
    previous = store.policy

    def put_in(policy: RecordingPolicy) -> RecordingPolicy:
        store.policy = policy
        return policy

    try:
        yield put_in
    finally:
        store.policy = previous


def _as(who: str) -> dict[str, str]:
    return {"X-Maillage-User": who}


def test_every_interaction_consults_the_policy(
    http: httpx.Client, install: Callable[[RecordingPolicy], RecordingPolicy]
) -> None:
    policy = install(RecordingPolicy())
    patient = create(http, factories.patient())
    assert (Action.CREATE, "Patient") in policy.consulted()
    url = f"/Patient/{patient['id']}"

    http.get(url)
    assert policy.consulted() == {(Action.READ, "Patient")}
    assert Action.READ in policy.filtered()
    http.get(f"{url}/_history/1")
    assert policy.consulted() == {(Action.READ, "Patient")}
    assert Action.READ in policy.filtered()
    put(http, {**patient, "gender": "male"})
    assert policy.consulted() == {(Action.UPDATE, "Patient")}
    operations = [{"op": "replace", "path": "/gender", "value": "other"}]
    http.patch(url, json=operations, headers=PATCH_JSON)
    assert policy.consulted() == {(Action.READ, "Patient"), (Action.UPDATE, "Patient")}
    assert Action.READ in policy.filtered()

    http.get("/Patient", params={"gender": "other"})
    assert policy.consulted() == {(Action.SEARCH, "Patient")}
    assert policy.filtered() == {Action.SEARCH}
    for path, scope in ((f"{url}/_history", "Patient"), ("/Patient/_history", "Patient")):
        http.get(path)
        assert (Action.HISTORY, scope) in policy.consulted()
        assert Action.HISTORY in policy.filtered()
    http.get("/_history")
    assert policy.consulted() == {(Action.HISTORY, "*")}
    assert policy.filtered() == {Action.HISTORY}

    ident = patient["identifier"][0]
    http.post(
        "/Patient",
        json=factories.patient(),
        headers={"If-None-Exist": f"identifier={ident['system']}|{ident['value']}"},
    )
    assert policy.consulted() == {(Action.SEARCH, "Patient"), (Action.CREATE, "Patient")}
    assert Action.SEARCH in policy.filtered()
    criteria = {"identifier": f"{ident['system']}|{ident['value']}"}
    http.put("/Patient", params=criteria, json={**patient, "gender": "unknown"})
    assert policy.consulted() == {(Action.SEARCH, "Patient"), (Action.UPDATE, "Patient")}

    http.delete(url)
    assert policy.consulted() == {(Action.DELETE, "Patient")}
    http.delete("/Patient", params=criteria)
    assert policy.consulted() == {(Action.SEARCH, "Patient")}


def test_bundle_entries_consult_the_policy_one_by_one(
    http: httpx.Client, install: Callable[[RecordingPolicy], RecordingPolicy]
) -> None:
    policy = install(RecordingPolicy())
    existing = create(http, factories.patient())
    policy.consulted()
    ident = existing["identifier"][0]
    for kind in ("transaction", "batch"):
        bundle = factories.bundle(
            kind,
            [
                factories.entry("POST", "Organization", factories.organization()),
                factories.entry("GET", f"Patient/{existing['id']}"),
                factories.entry("GET", f"Patient?identifier={ident['system']}|{ident['value']}"),
                factories.entry("DELETE", "Encounter/gone"),
                factories.entry("PUT", "Location/l1", {"resourceType": "Location", "id": "l1"}),
            ],
        )
        assert http.post("", json=bundle).status_code == 200
        assert policy.consulted() == {
            (Action.CREATE, "Organization"),
            (Action.READ, "Patient"),
            (Action.SEARCH, "Patient"),
            (Action.DELETE, "Encounter"),
            (Action.UPDATE, "Location"),
        }, kind


def test_refusals_are_403_operation_outcomes_on_every_path(
    http: httpx.Client,
    install: Callable[[RecordingPolicy], RecordingPolicy],
    stored_rows: Callable[[str], int],
) -> None:
    patient = create(http, factories.patient())
    refused: set[tuple[str, Action, str | None]] = {("mallory", action, None) for action in Action}
    install(RecordingPolicy(refused))
    url = f"/Patient/{patient['id']}"
    mallory = _as("mallory")
    operations = [{"op": "replace", "path": "/gender", "value": "male"}]
    requests = [
        http.build_request("GET", url, headers=mallory),
        http.build_request("GET", f"{url}/_history/1", headers=mallory),
        http.build_request("GET", "/Patient", headers=mallory),
        http.build_request("GET", f"{url}/_history", headers=mallory),
        http.build_request("GET", "/Patient/_history", headers=mallory),
        http.build_request("GET", "/_history", headers=mallory),
        http.build_request("POST", "/Patient", json=factories.patient(), headers=mallory),
        http.build_request("PUT", url, json={**patient, "gender": "male"}, headers=mallory),
        http.build_request("PATCH", url, json=operations, headers={**mallory, **PATCH_JSON}),
        http.build_request("DELETE", url, headers=mallory),
        http.build_request(
            "PUT", "/Patient", params={"_id": patient["id"]}, json=patient, headers=mallory
        ),
        http.build_request("DELETE", "/Patient", params={"_id": patient["id"]}, headers=mallory),
        http.build_request(
            "POST",
            "",
            json=factories.transaction(factories.entry("POST", "Patient", factories.patient())),
            headers=mallory,
        ),
    ]
    for request in requests:
        response = http.send(request)
        assert_outcome(response, 403, code="forbidden", says="mallory")
    # Nothing was written, and the resource is intact for others.
    assert stored_rows("resource") == 1
    assert stored_rows("resource_version") == 0
    assert body(http.get(url)) == patient


def test_a_refused_entry_fails_a_transaction_but_only_itself_in_a_batch(
    http: httpx.Client,
    install: Callable[[RecordingPolicy], RecordingPolicy],
    stored_rows: Callable[[str], int],
) -> None:
    install(RecordingPolicy({("bob", Action.CREATE, "Observation")}))
    entries = [
        factories.entry("POST", "Patient", factories.patient()),
        factories.entry("POST", "Observation", factories.observation()),
    ]
    refused = http.post("", json=factories.transaction(*entries), headers=_as("bob"))
    assert_outcome(refused, 403, code="forbidden", says="Bundle.entry[1]")
    assert stored_rows("resource") == 0
    result = body(http.post("", json=factories.batch(*entries), headers=_as("bob")))
    statuses = [item["response"]["status"] for item in result["entry"]]
    assert statuses == ["201 Created", "403 Forbidden"]
    assert result["entry"][1]["response"]["outcome"]["issue"][0]["code"] == "forbidden"
    assert stored_rows("resource") == 1


def test_rows_the_policy_hides_are_invisible_everywhere(
    http: httpx.Client, install: Callable[[RecordingPolicy], RecordingPolicy]
) -> None:
    patient = create(http, factories.patient())
    install(RecordingPolicy())
    url = f"/Patient/{patient['id']}"
    blind = _as("blind")
    assert_outcome(http.get(url, headers=blind), 404)
    assert_outcome(http.get(f"{url}/_history/1", headers=blind), 404)
    assert body(http.get("/Patient", headers=blind)).get("entry", []) == []
    assert body(http.get("/_history", headers=blind)).get("entry", []) == []
    assert body(http.get("/Patient/_history", headers=blind)).get("entry", []) == []
    ident = patient["identifier"][0]
    observation = factories.observation(
        subject=f"Patient?identifier={ident['system']}|{ident['value']}"
    )
    bundle = factories.transaction(factories.entry("POST", "Observation", observation))
    assert_outcome(http.post("", json=bundle, headers=blind), 404)
    # The same requests by someone who may see the row.
    assert http.get(url).status_code == 200
    assert body(http.get("/Patient"))["total"] == 1
