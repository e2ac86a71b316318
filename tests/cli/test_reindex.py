"""`maillage reindex`: a full rebuild, the resume of a job whose worker died, a failed job,
and bad input. Each test has a database of its own, out of reach of the test hub's job
worker (which would otherwise take the jobs)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from typer.testing import CliRunner

from maillage.cli.main import app
from maillage.fhir.reindex import REINDEX_KIND, ReindexService
from maillage.fhir.repository import FhirStore
from maillage.fhir.search.engine import SearchEngine
from maillage.fhir.search_definitions import SearchDefinitions
from maillage.jobs import JobService
from maillage.security import AllowAll, RequestContext
from maillage.storage import Database
from tests.conftest import fresh_database
from tests.fhir.test_reindex import CrashingControl, SimulatedCrash, stored_index, wipe_index

CTX = RequestContext.system("cli-test")


@pytest.fixture
def own_database(server_url: str) -> Iterator[str]:
    with fresh_database(server_url, "maillage_reindex") as url:
        yield url


def env(url: str) -> dict[str, str]:
    return {
        "MAILLAGE_DATABASE_URL": url,
        "MAILLAGE_REINDEX_BATCH_ROWS": "2",
        "MAILLAGE_JOB_STALE_AFTER_S": "1",
        "MAILLAGE_SEARCH_DEFINITIONS_REFRESH_S": "0.1",
    }


def write_patients(url: str, count: int) -> None:
    async def main() -> None:
        database = Database(url, min_size=1, max_size=2)
        await database.open()
        try:
            repo = FhirStore(database, AllowAll(), SearchEngine()).repository(CTX)
            for index in range(count):
                patient = {"resourceType": "Patient", "name": [{"family": f"F{index}"}]}
                await repo.create({**patient, "gender": "female"})
        finally:
            await database.close()

    asyncio.run(main())


def jobs_of(url: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT status, attempts, result ->> 'done' FROM job ORDER BY created_at"
        ).fetchall()


def test_reindex_rebuilds_a_missing_index(own_database: str) -> None:
    write_patients(own_database, 5)
    expected = stored_index(own_database)
    wipe_index(own_database)
    result = CliRunner().invoke(app, ["reindex", "--type", "Patient"], env=env(own_database))
    assert result.exit_code == 0, result.output
    assert "done" in result.output
    assert "5 resources reindexed" in result.output
    assert stored_index(own_database) == expected
    assert jobs_of(own_database) == [("done", 1, "5")]


def test_reindex_resumes_an_unfinished_job_from_its_position(own_database: str) -> None:
    write_patients(own_database, 5)
    expected = stored_index(own_database)
    wipe_index(own_database)

    async def crash_after_one_batch() -> None:
        database = Database(own_database, min_size=1, max_size=2)
        await database.open()
        try:
            jobs = JobService(database)
            definitions = SearchDefinitions(database, jobs)
            reindex = ReindexService(database, jobs, definitions, AllowAll(), batch_rows=2)
            job = await reindex.kickoff(CTX, ["Patient"])
            claimed = await jobs.claim("dead-worker", [REINDEX_KIND], 60, job_id=job.id)
            assert claimed is not None
            with pytest.raises(SimulatedCrash):
                await reindex.run(claimed, CrashingControl(jobs, claimed, "dead-worker", 1))
        finally:
            await database.close()

    asyncio.run(crash_after_one_batch())
    with psycopg.connect(own_database) as conn:
        conn.execute("UPDATE job SET heartbeat = now() - interval '1 hour'")
    result = CliRunner().invoke(app, ["reindex", "--type", "Patient"], env=env(own_database))
    assert result.exit_code == 0, result.output
    assert "resuming reindex" in result.output
    assert "at 2 of 5 resources" in result.output
    # The same job, finished by its second attempt; no new one.
    assert jobs_of(own_database) == [("done", 2, "5")]
    with psycopg.connect(own_database) as conn:
        row = conn.execute("SELECT result FROM job").fetchone()
    assert row is not None
    assert row[0]["batches"] == 2  # 3 resources left, batches of 2
    assert stored_index(own_database) == expected


def test_reindex_exits_1_when_the_job_fails(own_database: str) -> None:
    with psycopg.connect(own_database) as conn:
        conn.execute(
            "INSERT INTO job (id, kind, params, requested_by, max_attempts)"
            " VALUES ('broken', %s, %s, 'test', 1)",
            (
                REINDEX_KIND,
                psycopg.types.json.Jsonb(
                    # a generation the definitions never reached
                    {"types": ["Patient"], "codes": None, "generation": 10**6}
                ),
            ),
        )
    result = CliRunner().invoke(app, ["reindex", "--type", "Patient"], env=env(own_database))
    assert result.exit_code == 1, result.output
    assert "failed" in result.output
    assert "run `maillage reindex` again" in result.output


def test_reindex_of_an_unknown_type_says_so(own_database: str) -> None:
    result = CliRunner().invoke(app, ["reindex", "--type", "Nothing"], env=env(own_database))
    assert result.exit_code == 2
    assert "unknown resource type(s): Nothing" in result.output
