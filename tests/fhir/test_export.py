"""Bulk Data ``$export`` against the running hub: kick-off, polling, files, cancel, errors,
and a job left by a dead worker. Polls have a deadline; nothing sleeps blindly."""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import psycopg
import pytest

from maillage.fhir.stamping import now_instant
from tests import factories
from tests.fhir.support import assert_outcome, body, create

ASYNC = {"Prefer": "respond-async", "Accept": "application/fhir+json"}
NDJSON = "application/fhir+ndjson"


def kick_off(http: httpx.Client, path: str, **params: str) -> str:
    response = http.get(path, params=params, headers=ASYNC)
    assert response.status_code == 202, response.text
    status_url = response.headers["content-location"]
    assert "/$export-status/" in status_url
    return status_url


def wait(http: httpx.Client, status_url: str, deadline_s: float = 20) -> httpx.Response:
    """Poll the status URL until it stops answering 202."""
    end = time.monotonic() + deadline_s
    while True:
        response = http.get(status_url)
        if response.status_code != 202:
            return response
        assert "x-progress" in response.headers
        assert time.monotonic() < end, f"export still running: {response.headers}"
        time.sleep(0.05)


def finished(http: httpx.Client, status_url: str) -> dict[str, Any]:
    response = wait(http, status_url)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    return dict(response.json())


def files(http: httpx.Client, manifest: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    found = {}
    for item in manifest["output"]:
        response = http.get(item["url"])
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith(NDJSON)
        lines = [json.loads(line) for line in response.text.splitlines()]
        assert len(lines) == item["count"]
        assert {line["resourceType"] for line in lines} == {item["type"]}
        found[item["type"]] = lines
    return found


def ids(resources: list[dict[str, Any]]) -> set[str]:
    return {resource["id"] for resource in resources}


@pytest.fixture
def two_patients(http: httpx.Client) -> dict[str, Any]:
    first = create(http, factories.patient(family="Premier"))
    second = create(http, factories.patient(family="Second"))
    observations = [
        create(http, factories.observation(subject=f"Patient/{first['id']}")),
        create(http, factories.observation(subject=f"Patient/{first['id']}", value=80)),
        create(http, factories.observation(subject=f"Patient/{second['id']}")),
    ]
    encounter = create(http, factories.encounter(subject=f"Patient/{second['id']}"))
    organization = create(http, factories.organization())
    return {
        "first": first,
        "second": second,
        "observations": observations,
        "encounter": encounter,
        "organization": organization,
    }


def test_system_export_round_trip(http: httpx.Client, two_patients: dict[str, Any]) -> None:
    status_url = kick_off(http, "/$export")
    manifest = finished(http, status_url)
    assert manifest["requiresAccessToken"] is False
    assert manifest["error"] == []
    assert manifest["request"].endswith("/fhir/$export")
    datetime.fromisoformat(manifest["transactionTime"])
    exported = files(http, manifest)
    assert set(exported) == {"Patient", "Observation", "Encounter", "Organization"}
    assert ids(exported["Patient"]) == {two_patients["first"]["id"], two_patients["second"]["id"]}
    assert ids(exported["Observation"]) == ids(two_patients["observations"])
    # the stored bodies, meta included
    assert all(item["meta"]["versionId"] == "1" for item in exported["Observation"])


def test_type_and_output_format_are_honoured(
    http: httpx.Client, two_patients: dict[str, Any]
) -> None:
    status_url = kick_off(
        http, "/$export", _type="Observation,Organization", _outputFormat="application/fhir+ndjson"
    )
    exported = files(http, finished(http, status_url))
    assert set(exported) == {"Observation", "Organization"}


def test_since_keeps_only_what_changed_after(
    http: httpx.Client, two_patients: dict[str, Any]
) -> None:
    time.sleep(0.01)  # the next instant, so that the cut falls between the writes
    # lastUpdated is stamped at the millisecond: a cut at the microsecond could fall after
    # the stamp of a write made within the same millisecond
    cut = now_instant().isoformat()
    later = create(http, factories.observation(subject=f"Patient/{two_patients['first']['id']}"))
    exported = files(http, finished(http, kick_off(http, "/$export", _since=cut)))
    assert set(exported) == {"Observation"}
    assert ids(exported["Observation"]) == {later["id"]}


def test_patient_level_exports_the_patients_compartments(
    http: httpx.Client, two_patients: dict[str, Any]
) -> None:
    exported = files(http, finished(http, kick_off(http, "/Patient/$export")))
    # Organization is in no Patient compartment
    assert set(exported) == {"Patient", "Observation", "Encounter"}
    assert ids(exported["Observation"]) == ids(two_patients["observations"])


def test_group_level_exports_its_members_only(
    http: httpx.Client, two_patients: dict[str, Any]
) -> None:
    first = two_patients["first"]["id"]
    group = create(
        http,
        {
            "resourceType": "Group",
            "type": "person",
            "actual": True,
            "member": [{"entity": {"reference": f"Patient/{first}"}}],
        },
    )
    status_url = kick_off(http, f"/Group/{group['id']}/$export")
    exported = files(http, finished(http, status_url))
    # the Group itself is in its member's compartment (Group.member)
    assert set(exported) == {"Patient", "Observation", "Group"}
    assert ids(exported["Patient"]) == {first}
    assert ids(exported["Observation"]) == ids(two_patients["observations"][:2])


def test_an_unknown_group_is_not_found(http: httpx.Client, clean_database: str) -> None:
    response = http.get("/Group/nobody/$export", headers=ASYNC)
    assert_outcome(response, 404)


def test_kick_off_without_prefer_respond_async_is_refused(
    http: httpx.Client, clean_database: str
) -> None:
    response = http.get("/$export", headers={"Accept": "application/fhir+json"})
    assert_outcome(response, 400, says="respond-async")


def test_an_output_format_other_than_ndjson_is_refused(
    http: httpx.Client, clean_database: str
) -> None:
    response = http.get("/$export", params={"_outputFormat": "text/csv"}, headers=ASYNC)
    assert_outcome(response, 400, says="_outputFormat")


def test_an_unknown_type_is_refused(http: httpx.Client, clean_database: str) -> None:
    response = http.get("/Patient/$export", params={"_type": "Nonsense"}, headers=ASYNC)
    assert_outcome(response, 400, says="Nonsense")


def test_cancel_deletes_the_export(http: httpx.Client, two_patients: dict[str, Any]) -> None:
    status_url = kick_off(http, "/$export")
    manifest = finished(http, status_url)
    response = http.delete(status_url)
    assert response.status_code == 202, response.text
    assert http.get(status_url).status_code == 404
    assert http.get(manifest["output"][0]["url"]).status_code == 404
    assert http.delete(status_url).status_code == 404


def test_another_requester_cannot_see_the_export(
    http: httpx.Client, two_patients: dict[str, Any]
) -> None:
    status_url = kick_off(http, "/$export")
    finished(http, status_url)
    assert (
        http.get(status_url, headers={"X-Maillage-User": "Practitioner/other"}).status_code == 404
    )


def _job_row(database_url: str, params: dict[str, Any], **columns: Any) -> str:
    job_id = uuid.uuid4().hex
    names = ["id", "kind", "params", "requested_by", "context", *columns]
    values = [
        job_id,
        "bulk-export",
        json.dumps(params),
        "anonymous",
        json.dumps({"who": "anonymous"}),
        *columns.values(),
    ]
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            f"INSERT INTO job ({', '.join(names)}) VALUES ({', '.join(['%s'] * len(names))})",
            values,
        )
    return job_id


def test_a_failing_export_answers_an_operation_outcome(
    http: httpx.Client, clean_database: str
) -> None:
    # a job the kick-off would have refused: the handler fails on it
    job_id = _job_row(clean_database, {"level": "system", "types": ["Nonsense"], "since": None})
    response = wait(http, f"/$export-status/{job_id}")
    outcome = assert_outcome(response, 500, says="Nonsense")
    assert outcome["issue"][0]["code"] == "exception"


def test_an_export_left_by_a_dead_worker_is_run_again(
    http: httpx.Client, two_patients: dict[str, Any], clean_database: str
) -> None:
    job_id = _job_row(
        clean_database,
        {"level": "system", "types": ["Patient"], "since": None, "request": "x"},
        status="running",
        attempts=1,
        locked_by="dead-worker",
        heartbeat=datetime(2020, 1, 1, tzinfo=UTC),
        started_at=datetime(2020, 1, 1, tzinfo=UTC),
    )
    manifest = finished(http, f"/$export-status/{job_id}")
    exported = files(http, manifest)
    assert set(exported) == {"Patient"}
    with psycopg.connect(clean_database) as conn:
        row = conn.execute("SELECT attempts, locked_by FROM job WHERE id = %s", (job_id,))
        assert row.fetchone() == (2, None)


def test_export_is_in_the_capability_statement(http: httpx.Client, clean_database: str) -> None:
    statement = body(http.get("/metadata"))
    rest = statement["rest"][0]
    assert {
        "name": "export",
        "definition": "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/export",
    } in rest["operation"]
    by_type = {resource["type"]: resource for resource in rest["resource"]}
    assert "export" in [op["name"] for op in by_type["Patient"]["operation"]]
    assert "export" in [op["name"] for op in by_type["Group"]["operation"]]
