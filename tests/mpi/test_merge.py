"""Merge of a duplicate identity and its exact undoing (unmerge), over HTTP."""

from __future__ import annotations

from typing import Any

import httpx
import psycopg

from tests import factories
from tests.factories import source_identity
from tests.mpi.support import create, identity_api, territorial_of


def _ref(resource: dict[str, Any]) -> str:
    return f"{resource['resourceType']}/{resource['id']}"


def _subject(http: httpx.Client, resource: dict[str, Any]) -> str:
    current = http.get(f"/{resource['resourceType']}/{resource['id']}").json()
    return str(current["subject"]["reference"])


def _index_row(database_url: str, patient_id: str) -> tuple[Any, ...]:
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "SELECT territorial_id, link_kind, active, score FROM mpi_source WHERE patient_id = %s",
            (patient_id,),
        ).fetchone()
    assert row is not None
    return tuple(row)


def _without_meta(resource: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in resource.items() if key != "meta"}


def _duplicate_with_records(http: httpx.Client) -> dict[str, Any]:
    keep = create(http, source_identity(site=0, birth_name="Chevalier", given=("Inès",)))
    duplicate = create(http, source_identity(site=0, birth_name="CHEVALIER", given=("Ines",)))
    return {
        "keep": keep,
        "duplicate": duplicate,
        "kept_obs": create(http, factories.observation(subject=_ref(keep), value=1)),
        "dup_obs": create(http, factories.observation(subject=_ref(duplicate), value=2)),
        "dup_encounter": create(http, factories.encounter(subject=_ref(duplicate))),
    }


def test_merge_moves_the_duplicates_records_to_the_survivor(http: httpx.Client) -> None:
    record = _duplicate_with_records(http)
    keep, duplicate = record["keep"], record["duplicate"]
    with identity_api(http) as api:
        answer = api.post(
            "/merges",
            json={"survivor": keep["id"], "merged": duplicate["id"], "reason": "doublon"},
            headers={"X-Maillage-User": "Practitioner/iv-1"},
        )
        assert answer.status_code == 201, answer.text
    for name in ("kept_obs", "dup_obs", "dup_encounter"):
        assert _subject(http, record[name]) == _ref(keep)
    merged = http.get(f"/Patient/{duplicate['id']}").json()
    assert merged["active"] is False
    assert {"other": {"reference": _ref(keep)}, "type": "replaced-by"} in merged["link"]
    survivor = http.get(f"/Patient/{keep['id']}").json()
    assert {"other": {"reference": _ref(duplicate)}, "type": "replaces"} in survivor["link"]
    golden = http.get(f"/Patient/{territorial_of(keep)}").json()
    assert [link["other"]["reference"] for link in golden["link"]] == [_ref(keep)]
    # the duplicate's record is now found under the survivor
    found = http.get("/Observation", params={"subject": _ref(keep), "_summary": "count"})
    assert found.json()["total"] == 2
    # history: the moves are versions of the resources
    history = http.get(f"/Observation/{record['dup_obs']['id']}/_history").json()
    assert len(history["entry"]) == 2


def test_unmerge_restores_exactly_the_state_before_the_merge(
    http: httpx.Client, database_url: str
) -> None:
    record = _duplicate_with_records(http)
    keep, duplicate = record["keep"], record["duplicate"]
    before_patient = _without_meta(http.get(f"/Patient/{duplicate['id']}").json())
    before_survivor = _without_meta(http.get(f"/Patient/{keep['id']}").json())
    before_row = _index_row(database_url, duplicate["id"])
    with identity_api(http) as api:
        merge_id = api.post(
            "/merges", json={"survivor": keep["id"], "merged": duplicate["id"], "reason": "r"}
        ).json()["merge"]
        # written after the merge, for the survivor: stays with the survivor
        later = create(http, factories.observation(subject=_ref(keep), value=3))
        undone = api.post(f"/merges/{merge_id}/unmerge", json={"reason": "two people after all"})
        assert undone.status_code == 200, undone.text
        again = api.post(f"/merges/{merge_id}/unmerge", json={"reason": "twice"})
        assert again.status_code == 409
        history = api.get("/history", params={"patient": duplicate["id"]}).json()["items"]
    assert _subject(http, record["kept_obs"]) == _ref(keep)
    assert _subject(http, record["dup_obs"]) == _ref(duplicate)
    assert _subject(http, record["dup_encounter"]) == _ref(duplicate)
    assert _subject(http, later) == _ref(keep)
    assert _without_meta(http.get(f"/Patient/{duplicate['id']}").json()) == before_patient
    assert _without_meta(http.get(f"/Patient/{keep['id']}").json()) == before_survivor
    assert _index_row(database_url, duplicate["id"]) == before_row
    golden = http.get(f"/Patient/{territorial_of(keep)}").json()
    assert len(golden["link"]) == 2
    assert [event["action"] for event in history][-2:] == ["merged", "unmerged"]
    assert history[-1]["reason"] == "two people after all"


def test_bad_merges_are_refused_and_change_nothing(http: httpx.Client) -> None:
    record = _duplicate_with_records(http)
    keep, duplicate = record["keep"], record["duplicate"]
    with identity_api(http) as api:
        itself = api.post(
            "/merges", json={"survivor": keep["id"], "merged": keep["id"], "reason": "r"}
        )
        assert itself.status_code == 400
        unknown = api.post(
            "/merges", json={"survivor": keep["id"], "merged": "no-such-id", "reason": "r"}
        )
        assert unknown.status_code == 404
        no_reason = api.post("/merges", json={"survivor": keep["id"], "merged": duplicate["id"]})
        assert no_reason.status_code == 400
        first = api.post(
            "/merges", json={"survivor": keep["id"], "merged": duplicate["id"], "reason": "r"}
        )
        assert first.status_code == 201
        twice = api.post(
            "/merges", json={"survivor": keep["id"], "merged": duplicate["id"], "reason": "r"}
        )
        assert twice.status_code == 409
        unknown_merge = api.post("/merges/999999/unmerge", json={"reason": "r"})
        assert unknown_merge.status_code == 404
    assert _subject(http, record["dup_obs"]) == _ref(keep)
