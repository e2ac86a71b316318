"""The reindex job against a real PostgreSQL: batches committed with their position, a
crash mid-walk, the job taken over and resumed from the recorded position, and at the end
the same index rows as the API's writes (the extraction of each resource) had written.
The job kinds are private to each test, so the running hub's worker (which serves
``reindex``) never takes these jobs."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import psycopg
import pytest

from maillage.fhir.reindex import ReindexService
from maillage.fhir.search_definitions import SearchDefinitions
from maillage.jobs import JobControl, JobService, JobStatus, Worker
from maillage.security import AllowAll, RequestContext
from maillage.storage import Database

CTX = RequestContext.system("reindex-test")
TABLES = (
    ("sp_token", "param, system, code, code_hash, system_code_hash"),
    ("sp_string", "param, value_norm, value_exact"),
    ("sp_date", "param, low, high"),
    ("sp_number", "param, value"),
    ("sp_quantity", "param, system, code, value"),
    ("sp_uri", "param, uri"),
    ("sp_reference", "param, target_type, target_id, target_url"),
)


class SimulatedCrash(Exception):
    pass


class CrashingControl(JobControl):
    """Lets ``batches`` batches commit, then fails inside the next one (before its
    commit), as a worker dying mid-batch would."""

    def __init__(self, service: JobService, job: Any, worker_id: str, batches: int) -> None:
        super().__init__(service, job, worker_id)
        self.batches = batches

    async def progress(
        self, progress: dict[str, Any], *, conn: psycopg.AsyncConnection | None = None
    ) -> None:
        if conn is not None:
            if self.batches == 0:
                raise SimulatedCrash()
            self.batches -= 1
        await super().progress(progress, conn=conn)


@asynccontextmanager
async def services(database_url: str) -> AsyncIterator[tuple[JobService, ReindexService]]:
    database = Database(database_url, min_size=1, max_size=4)
    await database.open()
    try:
        jobs = JobService(database, max_attempts=3)
        definitions = SearchDefinitions(database, jobs, refresh_s=0.1)
        yield jobs, ReindexService(database, jobs, definitions, AllowAll(), batch_rows=2, grace_s=0)
    finally:
        await database.close()


def stored_index(database_url: str) -> set[tuple[Any, ...]]:
    found: set[tuple[Any, ...]] = set()
    with psycopg.connect(database_url) as conn:
        for table, columns in TABLES:
            for row in conn.execute(f"SELECT rid, {columns} FROM {table}").fetchall():
                found.add((table, row[0], *(str(value) for value in row[1:])))
    return found


def load_patients(http: httpx.Client, count: int) -> None:
    for index in range(count):
        body = {
            "resourceType": "Patient",
            "name": [{"family": f"Family{index}", "given": ["Hélène"]}],
            "gender": "female" if index % 2 else "male",
            "birthDate": f"19{50 + index}-03-0{1 + index % 9}",
            "identifier": [{"system": "urn:test", "value": str(index)}],
        }
        assert http.post("/Patient", json=body).status_code == 201
    observation = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "not a Patient: left alone"},
    }
    assert http.post("/Observation", json=observation).status_code == 201


def wipe_index(database_url: str) -> None:
    with psycopg.connect(database_url) as conn:
        for table, _ in TABLES:
            conn.execute(
                f"DELETE FROM {table} r USING resource x WHERE x.rid = r.rid"
                " AND x.resource_type = 'Patient'"
            )


@pytest.mark.parametrize("crash_after", [0, 1])
def test_a_reindex_resumes_after_its_worker_died_and_rewrites_each_resource_once(
    http: httpx.Client, clean_database: str, crash_after: int
) -> None:
    load_patients(http, 7)
    # The rows the API wrote: the extraction of each resource as created.
    expected = stored_index(clean_database)
    assert any(row[0] == "sp_token" and row[2] == "gender" for row in expected)
    wipe_index(clean_database)
    assert stored_index(clean_database) < expected
    kind = f"test.reindex.{uuid.uuid4().hex[:8]}"

    async def scenario() -> None:
        async with services(clean_database) as (jobs, reindex):
            params = {"types": ["Patient"], "codes": None, "generation": None}
            job = await jobs.enqueue(kind, params, CTX)
            claimed = await jobs.claim("worker-a", [kind], stale_after_s=60)
            assert claimed is not None and claimed.id == job.id
            control = CrashingControl(jobs, claimed, "worker-a", batches=crash_after)
            with pytest.raises(SimulatedCrash):
                await reindex.run(claimed, control)
            crashed = await jobs.get(job.id)
            assert crashed is not None and crashed.progress is not None
            assert crashed.progress["done"] == 2 * crash_after
            assert crashed.progress["total"] == 7
            position = crashed.progress["position"]
            assert (position > 0) == (crash_after > 0)
            # The worker is gone: its heartbeat stops.
            async with jobs.db.connection() as conn:
                await conn.execute(
                    "UPDATE job SET heartbeat = now() - interval '1 hour' WHERE id = %s",
                    (job.id,),
                )
            taker = Worker(jobs, {kind: reindex.run}, stale_after_s=30, worker_id="worker-b")
            assert await taker.run_once()
            done = await jobs.get(job.id)
            assert done is not None and done.status == JobStatus.DONE, done
            assert done.attempts == 2
            assert done.result is not None
            assert done.result["resumed_from"] == position
            assert done.result["done"] == 7
            # Batches of 2 after the committed ones: each resource rewritten once.
            assert done.result["batches"] == -(-(7 - 2 * crash_after) // 2)
            # The first worker lost the job: whatever it tries now is refused.
            with pytest.raises(Exception, match=job.id):
                await JobControl(jobs, claimed, "worker-a").progress({"done": 0})

    asyncio.run(scenario())
    assert stored_index(clean_database) == expected


def test_a_reindex_of_some_parameters_leaves_the_others_alone(
    http: httpx.Client, clean_database: str
) -> None:
    load_patients(http, 3)
    with psycopg.connect(clean_database) as conn:
        conn.execute("DELETE FROM sp_token WHERE param = 'gender'")
        conn.execute("UPDATE sp_string SET value_norm = 'stale' WHERE param = 'family'")
    kind = f"test.reindex.{uuid.uuid4().hex[:8]}"

    async def scenario() -> None:
        async with services(clean_database) as (jobs, reindex):
            params = {"types": ["Patient"], "codes": ["gender"], "generation": None}
            job = await jobs.enqueue(kind, params, CTX)
            assert await Worker(jobs, {kind: reindex.run}).run_once()
            done = await jobs.get(job.id)
            assert done is not None
            assert done.status == JobStatus.DONE, done.error

    asyncio.run(scenario())
    with psycopg.connect(clean_database) as conn:
        gender = conn.execute("SELECT count(*) FROM sp_token WHERE param = 'gender'").fetchone()
        stale = conn.execute("SELECT count(*) FROM sp_string WHERE value_norm = 'stale'").fetchone()
    assert gender == (3,)
    assert stale == (3,)
