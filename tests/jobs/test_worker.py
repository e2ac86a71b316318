"""The job queue against a real PostgreSQL: claim, progress, result, failure, cancel,
retry after a dead worker, graceful stop. Kinds are private to each test, so the running
hub's own worker (which serves ``bulk-export`` only) never takes these jobs."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import psycopg

from maillage.jobs import Job, JobControl, JobService, JobStatus, Worker
from maillage.security import RequestContext
from maillage.storage import Database

CTX = RequestContext(who="Practitioner/jobs-test", site="site-a")


@asynccontextmanager
async def opened(database_url: str) -> AsyncIterator[JobService]:
    database = Database(database_url, min_size=1, max_size=4)
    await database.open()
    try:
        yield JobService(database, max_attempts=2)
    finally:
        await database.close()


def kind() -> str:
    return f"test.{uuid.uuid4().hex[:8]}"


async def wait_for_status(
    service: JobService, job_id: str, wanted: JobStatus, deadline_s: float = 10
) -> Job:
    loop = asyncio.get_running_loop()
    end = loop.time() + deadline_s
    while True:
        job = await service.get(job_id)
        assert job is not None
        if job.status == wanted:
            return job
        assert loop.time() < end, f"job {job_id} still {job.status}, wanted {wanted}"
        await asyncio.sleep(0.02)


def run(test: Callable[[JobService], Awaitable[None]], database_url: str) -> None:
    async def main() -> None:
        async with opened(database_url) as service:
            await test(service)

    asyncio.run(main())


def test_a_job_runs_reports_progress_and_records_its_result(database_url: str) -> None:
    name = kind()

    async def handler(job: Job, control: JobControl) -> dict[str, Any]:
        await control.progress({"step": 1})
        return {"echo": job.params["value"], "who": job.request_context.who}

    async def test(service: JobService) -> None:
        job = await service.enqueue(name, {"value": 42}, CTX)
        assert job.status == JobStatus.QUEUED
        assert job.requested_by == CTX.who
        worker = Worker(service, {name: handler})
        assert await worker.run_once()
        done = await service.get(job.id)
        assert done is not None
        assert done.status == JobStatus.DONE
        assert done.result == {"echo": 42, "who": CTX.who}
        assert done.progress == {"step": 1}
        assert done.attempts == 1
        assert done.started_at is not None and done.finished_at is not None
        assert done.locked_by is None
        assert not await worker.run_once()

    run(test, database_url)


def test_a_failing_handler_fails_the_job_with_its_error(database_url: str) -> None:
    name = kind()

    async def handler(job: Job, control: JobControl) -> dict[str, Any]:
        raise ValueError("no such thing")

    async def test(service: JobService) -> None:
        job = await service.enqueue(name, {}, CTX)
        assert await Worker(service, {name: handler}).run_once()
        failed = await service.get(job.id)
        assert failed is not None
        assert failed.status == JobStatus.FAILED
        assert failed.error == "ValueError: no such thing"

    run(test, database_url)


def test_cancelling_a_running_job_stops_its_handler(database_url: str) -> None:
    name = kind()
    stopped = asyncio.Event()

    async def handler(job: Job, control: JobControl) -> dict[str, Any]:
        try:
            while True:
                await control.progress({"beat": True})
                await asyncio.sleep(0.02)
        finally:
            stopped.set()

    async def test(service: JobService) -> None:
        job = await service.enqueue(name, {}, CTX)
        worker = Worker(service, {name: handler}, poll_interval_s=0.05)
        worker.start()
        try:
            await wait_for_status(service, job.id, JobStatus.RUNNING)
            await service.cancel(job.id)
            await asyncio.wait_for(stopped.wait(), 10)
        finally:
            await worker.stop()
        cancelled = await service.get(job.id)
        assert cancelled is not None
        assert cancelled.status == JobStatus.CANCELLED
        assert cancelled.result is None

    run(test, database_url)


def _claimed_by_dead_worker(database_url: str, name: str, attempts: int) -> str:
    job_id = uuid.uuid4().hex
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO job (id, kind, params, status, requested_by, attempts, max_attempts,"
            " locked_by, heartbeat, started_at) VALUES (%s, %s, '{}', 'running', 'x', %s, 2,"
            " 'dead-worker', now() - interval '1 hour', now() - interval '1 hour')",
            (job_id, name, attempts),
        )
    return job_id


def test_a_job_of_a_dead_worker_is_claimed_again_after_its_heartbeat_expires(
    database_url: str,
) -> None:
    name = kind()
    job_id = _claimed_by_dead_worker(database_url, name, attempts=1)

    async def handler(job: Job, control: JobControl) -> dict[str, Any]:
        return {"ok": True}

    async def test(service: JobService) -> None:
        # a fresh heartbeat is respected
        worker = Worker(service, {name: handler}, stale_after_s=7200)
        assert not await worker.run_once()
        worker = Worker(service, {name: handler}, stale_after_s=60)
        assert await worker.run_once()
        job = await service.get(job_id)
        assert job is not None
        assert job.status == JobStatus.DONE
        assert job.attempts == 2

    run(test, database_url)


def test_a_job_out_of_attempts_fails_instead_of_running_again(database_url: str) -> None:
    name = kind()
    job_id = _claimed_by_dead_worker(database_url, name, attempts=2)

    async def handler(job: Job, control: JobControl) -> dict[str, Any]:
        raise AssertionError("must not run")

    async def test(service: JobService) -> None:
        assert not await Worker(service, {name: handler}, stale_after_s=60).run_once()
        job = await service.get(job_id)
        assert job is not None
        assert job.status == JobStatus.FAILED
        assert "stopped answering" in (job.error or "")

    run(test, database_url)


def test_a_stopping_worker_puts_its_job_back_in_the_queue(database_url: str) -> None:
    name = kind()
    started = asyncio.Event()

    async def handler(job: Job, control: JobControl) -> dict[str, Any]:
        started.set()
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    async def test(service: JobService) -> None:
        job = await service.enqueue(name, {}, CTX)
        worker = Worker(service, {name: handler}, poll_interval_s=0.05)
        worker.start()
        await asyncio.wait_for(started.wait(), 10)
        await worker.stop()
        queued = await service.get(job.id)
        assert queued is not None
        assert queued.status == JobStatus.QUEUED
        assert queued.locked_by is None
        assert queued.attempts == 0

    run(test, database_url)
