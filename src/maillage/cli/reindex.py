"""``maillage reindex``: rebuild the search index in the foreground, with a progress bar.

Unfinished reindex jobs of the types asked (left by a change of custom search
parameters, an interrupted run, or a hub that stopped) are resumed first, from their
recorded position; then, unless one of them already was a full reindex of those types,
a new one runs. A job a live hub worker is running is followed rather than taken.
"""

from __future__ import annotations

import asyncio
import contextlib

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from maillage.fhir.definitions import resource_types
from maillage.fhir.reindex import REINDEX_KIND, ReindexService
from maillage.fhir.search_definitions import SearchDefinitions
from maillage.jobs import Job, JobService, JobStatus, Worker
from maillage.security import AllowAll, RequestContext
from maillage.settings import Settings
from maillage.storage import Database

EXIT_OK = 0
EXIT_FAILED = 1
_POLL_S = 0.3


def _covers(job: Job, types: set[str]) -> bool:
    return job.params.get("codes") is None and types <= set(job.params.get("types") or ())


async def run_reindex(
    conninfo: str, types: list[str] | None, settings: Settings, console: Console
) -> int:
    """Run (or resume) the reindex of ``types`` (all when None); the exit code."""
    asked = set(types) if types else set(resource_types())
    database = Database(conninfo, min_size=1, max_size=4)
    await database.open()
    try:
        jobs = JobService(database, max_attempts=settings.job_max_attempts)
        definitions = SearchDefinitions(
            database, jobs, refresh_s=settings.search_definitions_refresh_s
        )
        await definitions.refresh()
        service = ReindexService(
            database, jobs, definitions, AllowAll(), batch_rows=settings.reindex_batch_rows
        )
        worker = Worker(
            jobs,
            {REINDEX_KIND: service.run},
            heartbeat_s=settings.job_heartbeat_s,
            stale_after_s=settings.job_stale_after_s,
        )
        unfinished = [
            job for job in await _unfinished(jobs) if asked & set(job.params.get("types") or ())
        ]
        covered = any(_covers(job, asked) for job in unfinished)
        if not covered:
            unfinished.append(await service.kickoff(RequestContext.system("cli"), types))
        code = EXIT_OK
        for job in unfinished:
            code = max(code, await _run_one(job, worker, jobs, console))
        return code
    finally:
        await database.close()


async def _unfinished(jobs: JobService) -> list[Job]:
    async with jobs.db.connection() as conn:
        cursor = await conn.execute(
            "SELECT id FROM job WHERE kind = %s AND status IN ('queued', 'running')"
            " ORDER BY created_at",
            (REINDEX_KIND,),
        )
        ids = [row[0] for row in await cursor.fetchall()]
    found = [await jobs.get(job_id) for job_id in ids]
    return [job for job in found if job is not None]


def _describe(job: Job) -> str:
    types = job.params.get("types") or []
    shown = ", ".join(types) if len(types) <= 4 else f"{len(types)} types"
    codes = job.params.get("codes")
    what = f"parameters {', '.join(codes)} of {shown}" if codes else shown
    return f"reindex {job.id[:8]} ({what})"


async def _run_one(job: Job, worker: Worker, jobs: JobService, console: Console) -> int:
    progress = job.progress or {}
    if progress.get("position"):
        console.print(
            f"resuming {_describe(job)} at {progress.get('done', 0)} of"
            f" {progress.get('total', '?')} resources",
            highlight=False,
            soft_wrap=True,
        )
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=False) as bar:
        task = bar.add_task(_describe(job), total=progress.get("total"))

        async def follow() -> None:
            while True:
                current = await jobs.get(job.id)
                if current is not None and current.progress:
                    bar.update(
                        task,
                        total=current.progress.get("total"),
                        completed=current.progress.get("done", 0),
                    )
                await asyncio.sleep(_POLL_S)

        watcher = asyncio.create_task(follow())
        try:
            finished = await worker.run_job(job.id)
            if finished is None:
                console.print(f"{_describe(job)} is running in a hub process; following it")
                finished = await _wait(jobs, job.id)
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
        if finished is not None and finished.progress:
            bar.update(task, completed=finished.progress.get("done", 0))
    return _report(finished, console)


async def _wait(jobs: JobService, job_id: str) -> Job | None:
    while True:
        job = await jobs.get(job_id)
        if job is None or job.status not in (JobStatus.QUEUED, JobStatus.RUNNING):
            return job
        await asyncio.sleep(_POLL_S)


def _report(job: Job | None, console: Console) -> int:
    if job is not None and job.status == JobStatus.DONE:
        result = job.result or {}
        console.print(
            f"[green]done[/green]: {_describe(job)}: {result.get('done', 0)} resources reindexed",
            highlight=False,
            soft_wrap=True,
        )
        return EXIT_OK
    if job is None:
        console.print("[red]failed[/red]: the reindex job disappeared", highlight=False)
        return EXIT_FAILED
    console.print(
        f"[red]{job.status}[/red]: {_describe(job)}: {job.error or 'no error recorded'};"
        " run `maillage reindex` again for a new one",
        highlight=False,
        soft_wrap=True,
    )
    return EXIT_FAILED
