"""Custom SearchParameter resources through the API: checked when written, searchable once
their reindex has run (409 until then), advertised, removed with their resource; the
``$reindex`` operation and its status polling; pickup by another hub process."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import psycopg
import pytest

from maillage.fhir.search_definitions import PollOrder
from tests.conftest import free_port

MARITAL = "http://terminology.hl7.org/CodeSystem/v3-MaritalStatus"


def search_parameter(code: str = "marital", **changes: Any) -> dict[str, Any]:
    definition = {
        "resourceType": "SearchParameter",
        "url": f"http://example.org/SearchParameter/{code}",
        "name": code,
        "status": "active",
        "description": "Marital status of a patient",
        "code": code,
        "base": ["Patient"],
        "type": "token",
        "expression": "Patient.maritalStatus",
    }
    return {**definition, **changes}


def patient(status: str, family: str) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "name": [{"family": family}],
        "maritalStatus": {"coding": [{"system": MARITAL, "code": status}]},
    }


def families(bundle: dict[str, Any]) -> list[str]:
    return sorted(e["resource"]["name"][0]["family"] for e in bundle.get("entry", []))


def wait_for(check: Callable[[], bool], deadline_s: float = 20.0) -> None:
    end = time.monotonic() + deadline_s
    while not check():
        assert time.monotonic() < end, "condition not reached in time"
        time.sleep(0.1)


def strict_search(http: httpx.Client, query: str) -> httpx.Response:
    return http.get(f"/Patient?{query}", headers={"Prefer": "handling=strict"})


def ready(http: httpx.Client, query: str) -> Callable[[], bool]:
    return lambda: strict_search(http, query).status_code == 200


def generation(database_url: str) -> int:
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT generation FROM search_definitions").fetchone()
        assert row is not None
        return int(row[0])


def count(database_url: str, query: str) -> int:
    with psycopg.connect(database_url) as conn:
        row = conn.execute(query).fetchone()
        assert row is not None
        return int(row[0])


def test_a_custom_parameter_finds_resources_written_before_and_after_it(
    http: httpx.Client,
) -> None:
    for status, family in (("M", "Martin"), ("S", "Simon"), ("M", "Moreau")):
        assert http.post("/Patient", json=patient(status, family)).status_code == 201
    created = http.post("/SearchParameter", json=search_parameter())
    assert created.status_code == 201, created.text

    # The reindex waits for every process to take the definition: until it is done a
    # search on the new code says so instead of answering from a half-built index.
    pending = strict_search(http, "marital=M")
    assert pending.status_code == 409, pending.text
    diagnostics = pending.json()["issue"][0]["diagnostics"]
    assert "'marital' of Patient is being indexed" in diagnostics
    assert "reindex job" in diagnostics
    assert pending.json()["issue"][0]["code"] == "incomplete"

    wait_for(ready(http, "marital=M"))
    assert families(strict_search(http, "marital=M").json()) == ["Martin", "Moreau"]
    assert families(strict_search(http, f"marital={MARITAL}|S").json()) == ["Simon"]
    assert families(strict_search(http, "marital:not=M").json()) == ["Simon"]

    assert http.post("/Patient", json=patient("M", "Mercier")).status_code == 201
    assert families(strict_search(http, "marital=M").json()) == ["Martin", "Mercier", "Moreau"]


def test_an_expression_outside_the_compiled_subset_is_refused_and_nothing_stored(
    http: httpx.Client, clean_database: str
) -> None:
    before = generation(clean_database)
    refused = http.post(
        "/SearchParameter",
        json=search_parameter(
            "first-given", type="string", expression="Patient.name.given.first()"
        ),
    )
    assert refused.status_code == 422, refused.text
    issue = refused.json()["issue"][0]
    assert "outside the FHIRPath subset" in issue["diagnostics"]
    assert "first()" in issue["diagnostics"]
    assert issue["expression"] == ["SearchParameter.expression"]
    assert count(clean_database, "SELECT count(*) FROM resource") == 0
    assert count(clean_database, "SELECT count(*) FROM job") == 0
    assert generation(clean_database) == before
    # An update to an unsupported expression is refused the same way.
    assert http.put("/SearchParameter/sp1", json={**search_parameter(), "id": "sp1"}).is_success
    bad = {**search_parameter(expression="Patient.name.select(given)"), "id": "sp1"}
    assert http.put("/SearchParameter/sp1", json=bad).status_code == 422
    stored = http.get("/SearchParameter/sp1").json()
    assert stored["expression"] == "Patient.maritalStatus"
    assert stored["meta"]["versionId"] == "1"


def test_a_code_of_an_official_parameter_is_refused(http: httpx.Client) -> None:
    clash = http.post(
        "/SearchParameter", json=search_parameter("gender", expression="Patient.maritalStatus")
    )
    assert clash.status_code == 422, clash.text
    diagnostics = clash.json()["issue"][0]["diagnostics"]
    assert "already the official parameter" in diagnostics
    assert "http://hl7.org/fhir/SearchParameter/individual-gender" in diagnostics
    assert http.get("/SearchParameter").json().get("total") == 0


def test_a_code_of_another_active_custom_parameter_is_refused(http: httpx.Client) -> None:
    assert http.post("/SearchParameter", json=search_parameter()).status_code == 201
    second = search_parameter(url="http://example.org/SearchParameter/other")
    clash = http.post("/SearchParameter", json=second)
    assert clash.status_code == 422
    assert "already defined on Patient by the active SearchParameter/" in clash.text
    # A draft with the same code is only stored: it defines nothing.
    assert http.post("/SearchParameter", json={**second, "status": "draft"}).status_code == 201


def test_draft_and_retired_parameters_are_not_searchable(http: httpx.Client) -> None:
    draft = search_parameter(status="draft", expression="Patient.name.select(given)")
    created = http.post("/SearchParameter", json=draft)
    assert created.status_code == 201, created.text
    assert strict_search(http, "marital=M").status_code == 400

    sp_id = created.json()["id"]
    active = {**search_parameter(), "id": sp_id}
    assert http.put(f"/SearchParameter/{sp_id}", json=active).status_code == 200
    wait_for(ready(http, "marital=M"))
    retired = {**active, "status": "retired"}
    assert http.put(f"/SearchParameter/{sp_id}", json=retired).status_code == 200
    unknown = strict_search(http, "marital=M")
    assert unknown.status_code == 400
    assert "'marital' is not supported" in unknown.text


def test_a_deleted_parameter_stops_being_searched_advertised_and_indexed(
    http: httpx.Client, clean_database: str
) -> None:
    assert http.post("/Patient", json=patient("M", "Martin")).status_code == 201
    sp_id = http.post("/SearchParameter", json=search_parameter()).json()["id"]
    wait_for(ready(http, "marital=M"))
    statement = http.get("/metadata").json()
    patient_params = next(r for r in statement["rest"][0]["resource"] if r["type"] == "Patient")
    advertised = {p["name"]: p for p in patient_params["searchParam"]}
    assert advertised["marital"]["definition"] == "http://example.org/SearchParameter/marital"
    assert f"SearchParameter/{sp_id}" in advertised["marital"]["documentation"]
    rows = "SELECT count(*) FROM sp_token WHERE param = 'marital'"
    assert count(clean_database, rows) == 1

    assert http.delete(f"/SearchParameter/{sp_id}").status_code in (200, 204)
    assert strict_search(http, "marital=M").status_code == 400
    statement = http.get("/metadata").json()
    patient_params = next(r for r in statement["rest"][0]["resource"] if r["type"] == "Patient")
    assert "marital" not in {p["name"] for p in patient_params["searchParam"]}
    # Its reindex removes the rows the parameter left behind.
    wait_for(lambda: count(clean_database, rows) == 0)


def test_reindex_operation_reports_progress_then_its_result(http: httpx.Client) -> None:
    for index in range(3):
        assert http.post("/Patient", json=patient("M", f"P{index}")).status_code == 201
    kickoff = http.post("/$reindex", params={"_type": "Patient"})
    assert kickoff.status_code == 202, kickoff.text
    status_url = kickoff.headers["Content-Location"]
    assert "/$reindex-status/" in status_url
    seen = []

    def finished() -> bool:
        answer = http.get(status_url)
        seen.append(answer.status_code)
        if answer.status_code == 202:
            assert answer.headers["X-Progress"]
        return answer.status_code == 200

    wait_for(finished)
    done = http.get(status_url).json()["issue"][0]["diagnostics"]
    assert "done: 3 resources of Patient rewritten" in done
    assert set(seen) <= {200, 202}
    assert http.post("/$reindex", params={"_type": "Nothing"}).status_code == 400
    body = {"resourceType": "Parameters", "parameter": [{"name": "_type", "valueString": "Group"}]}
    assert http.post("/$reindex", json=body).status_code == 202
    assert http.get("/$reindex-status/unknown").status_code == 404
    statement = http.get("/metadata").json()
    assert "reindex" in {op["name"] for op in statement["rest"][0]["operation"]}


@pytest.fixture
def other_process(database_url: str) -> Iterator[str]:
    """A second hub process on the same database (as ``serve --workers 2`` runs them)."""
    port = free_port()
    env = {
        **os.environ,
        "MAILLAGE_DATABASE_URL": database_url,
        "MAILLAGE_SEARCH_DEFINITIONS_REFRESH_S": "1.0",
        # what is tested is the definitions poll, not sign-in
        "MAILLAGE_AUTH_ENABLED": "false",
        "MAILLAGE_LOG_LEVEL": "WARNING",
    }
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        "--factory",
        "maillage.app:create_app_from_env",
        "--port",
        str(port),
        "--log-level",
        "warning",
    ]
    process = subprocess.Popen(command, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _healthy(base), deadline_s=60)
        yield f"{base}/fhir"
    finally:
        process.terminate()
        process.wait(timeout=20)


def _healthy(base: str) -> bool:
    try:
        return httpx.get(f"{base}/health", timeout=1).status_code == 200
    except httpx.TransportError:
        return False


def test_another_process_takes_a_new_definition_within_its_poll(
    http: httpx.Client, other_process: str
) -> None:
    assert http.post("/Patient", json=patient("M", "Martin")).status_code == 201
    with httpx.Client(base_url=other_process, timeout=30) as other:
        assert strict_search(other, "marital=M").status_code == 400
        assert http.post("/SearchParameter", json=search_parameter()).status_code == 201
        # known after one poll (1 s; slack for a loaded runner), then pending or answered
        wait_for(lambda: strict_search(other, "marital=M").status_code != 400, deadline_s=15)
        wait_for(ready(other, "marital=M"))
        assert families(strict_search(other, "marital=M").json()) == ["Martin"]


def test_a_bulk_load_indexes_the_custom_parameters(http: httpx.Client, clean_database: str) -> None:
    from maillage.loading.service import BulkLoader

    assert http.post("/SearchParameter", json=search_parameter()).status_code == 201
    wait_for(ready(http, "marital=M"))
    report = BulkLoader(clean_database, workers=0).load_resources(
        [{**patient("M", "Loaded"), "id": "loaded"}]
    )
    assert report.loaded == 1
    assert families(strict_search(http, "marital=M").json()) == ["Loaded"]


def test_an_older_poll_is_not_applied_over_a_newer_one() -> None:
    """Refreshes overlap in a process: the one that read its snapshot first and ends
    last must not put back the pending parameters (or generation) of before."""
    order = PollOrder()
    first, second = order.take(), order.take()
    assert order.newest(second)
    assert not order.newest(first)
    assert order.newest(order.take())
