"""The identitovigilance cell's review queue, decisions and history, over HTTP."""

from __future__ import annotations

from typing import Any

import httpx

from tests.factories import source_identity
from tests.mpi.support import create, identity_api, territorial_of

CELL = {"X-Maillage-User": "Practitioner/iv-cell-1"}


def _pair_to_review(http: httpx.Client) -> tuple[dict[str, Any], dict[str, Any]]:
    """Two identities close enough to be reviewed, not to be linked: a letter of the
    birth name and a digit of the birth day differ, no birthplace, no address."""
    first = create(
        http, source_identity(site=0, birth_name="Marchand", given=("Anaïs",), birthplace=None)
    )
    second = create(
        http,
        source_identity(
            site=2,
            birth_name="Marchant",
            given=("Anaïs",),
            birthplace=None,
            birth_date="1980-02-13",
        ),
    )
    return first, second


def test_a_doubtful_pair_waits_in_the_queue_with_its_explanation(http: httpx.Client) -> None:
    first, second = _pair_to_review(http)
    assert territorial_of(first) != territorial_of(second)
    with identity_api(http) as api:
        queue = api.get("/candidates").json()["items"]
        assert len(queue) == 1
        item = queue[0]
        assert {item["patient_id"], item["matched_patient_id"]} == {first["id"], second["id"]}
        fields = {entry["field"] for entry in item["explanation"]["explanation"]}
        assert {"name", "birth_date"} <= fields
        detail = api.get(f"/candidates/{item['id']}").json()
        assert detail["patient"]["id"] == item["patient_id"]
        assert detail["matched"]["id"] == item["matched_patient_id"]
        assert detail["territorial"]["id"] == item["territorial_id"]


def test_linking_a_candidate_makes_one_territorial_identity_and_records_who_and_why(
    http: httpx.Client,
) -> None:
    _pair_to_review(http)
    with identity_api(http) as api:
        item = api.get("/candidates").json()["items"][0]
        decided = api.post(
            f"/candidates/{item['id']}/decision",
            json={"decision": "link", "reason": "same person: ID card seen"},
            headers=CELL,
        )
        assert decided.status_code == 200, decided.text
        assert decided.json()["status"] == "linked"
        assert decided.json()["decided_by"] == "Practitioner/iv-cell-1"
        patient = http.get(f"/Patient/{item['patient_id']}").json()
        assert territorial_of(patient) == item["territorial_id"]
        golden = http.get(f"/Patient/{item['territorial_id']}").json()
        assert len(golden["link"]) == 2
        history = api.get("/history", params={"patient": item["patient_id"]}).json()["items"]
        verified = [event for event in history if event["action"] == "link-verified"]
        assert verified and verified[-1]["who"] == "Practitioner/iv-cell-1"
        assert verified[-1]["reason"] == "same person: ID card seen"
        # decided once: a second decision is a conflict
        again = api.post(
            f"/candidates/{item['id']}/decision", json={"decision": "never", "reason": "x"}
        )
        assert again.status_code == 409


def test_a_verified_link_is_never_undone_by_the_machine(http: httpx.Client) -> None:
    _pair_to_review(http)
    with identity_api(http) as api:
        item = api.get("/candidates").json()["items"][0]
        api.post(
            f"/candidates/{item['id']}/decision",
            json={"decision": "link", "reason": "checked"},
        ).raise_for_status()
    moved = http.get(f"/Patient/{item['patient_id']}").json()
    # a new registration detail: the machine re-scores but leaves the person's decision
    moved["telecom"] = [{"system": "phone", "value": "0600000000"}]
    updated = http.put(f"/Patient/{moved['id']}", json=moved)
    assert updated.status_code == 200, updated.text
    assert territorial_of(updated.json()) == item["territorial_id"]


def test_never_link_keeps_the_pair_apart_on_later_writes(http: httpx.Client) -> None:
    _pair_to_review(http)
    with identity_api(http) as api:
        item = api.get("/candidates").json()["items"][0]
        api.post(
            f"/candidates/{item['id']}/decision",
            json={"decision": "never", "reason": "different people (mother and daughter)"},
        ).raise_for_status()
        assert api.get("/candidates").json()["items"] == []
    patient = http.get(f"/Patient/{item['patient_id']}").json()
    resent = http.put(f"/Patient/{patient['id']}", json={**patient, "gender": "female"})
    assert resent.status_code == 200
    assert territorial_of(resent.json()) != item["territorial_id"]


def test_unlink_gives_the_source_its_own_territorial_identity(http: httpx.Client) -> None:
    first = create(http, source_identity(site=0, birth_name="Perrin"))
    second = create(http, source_identity(site=1, birth_name="Perrin"))
    shared = territorial_of(first)
    assert territorial_of(second) == shared
    with identity_api(http) as api:
        answer = api.post(
            "/unlinks", json={"patient": second["id"], "reason": "two people, one typo"}
        )
        assert answer.status_code == 200, answer.text
        own = answer.json()["territorial"]
    assert own != shared
    assert territorial_of(http.get(f"/Patient/{second['id']}").json()) == own
    golden = http.get(f"/Patient/{shared}").json()
    assert [link["other"]["reference"] for link in golden["link"]] == [f"Patient/{first['id']}"]


def test_decisions_need_a_reason_and_a_known_candidate(http: httpx.Client) -> None:
    _pair_to_review(http)
    with identity_api(http) as api:
        item = api.get("/candidates").json()["items"][0]
        missing = api.post(f"/candidates/{item['id']}/decision", json={"decision": "link"})
        assert missing.status_code == 400
        assert "reason" in missing.text
        assert missing.json()["resourceType"] == "OperationOutcome"
        wrong = api.post(
            f"/candidates/{item['id']}/decision", json={"decision": "maybe", "reason": "r"}
        )
        assert wrong.status_code == 400
        unknown = api.post("/candidates/999999/decision", json={"decision": "link", "reason": "r"})
        assert unknown.status_code == 404
        # nothing changed
        assert api.get("/candidates").json()["items"][0]["status"] == "open"


def test_a_territorial_identity_shows_its_sources_and_where_each_trait_came_from(
    http: httpx.Client,
) -> None:
    provisional = create(http, source_identity(site=0, birth_name="Lemoine", status="PROV"))
    validated = create(
        http,
        source_identity(
            site=1, birth_name="Lemoine", used_name="Brun", status="VALI", birth_date="1980-02-03"
        ),
    )
    territorial = territorial_of(provisional)
    assert territorial_of(validated) == territorial
    with identity_api(http) as api:
        view = api.get(f"/territorial/{territorial}").json()
        assert api.get("/territorial/no-such-id").status_code == 404
    assert {source["patient_id"] for source in view["sources"]} == {
        provisional["id"],
        validated["id"],
    }
    assert {source["link_kind"] for source in view["sources"]} == {"auto"}
    # the validated identity is the more reliable: its traits win
    assert view["trait_sources"]["official_name"] == validated["id"]
    assert view["trait_sources"]["usual_name"] == validated["id"]
    linked = [s for s in view["sources"] if s["matched_patient_id"]]
    assert linked and linked[0]["explanation"]["decision"] == "link"
