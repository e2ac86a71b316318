"""The asyncio worker: claims jobs, runs their handler, keeps the heartbeat, records the end.

One job at a time per worker (a hub runs one worker per process). While the handler runs,
a heartbeat task refreshes ``job.heartbeat``; when the row says the job is no longer this
worker's (cancelled, or taken over after a stale heartbeat), the handler is cancelled.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

import psycopg

from maillage.jobs.models import Job, JobCancelled
from maillage.jobs.service import JobService

log = logging.getLogger(__name__)


class JobControl:
    """What a handler may do with its job: report progress (which also tells it whether
    it was cancelled)."""

    def __init__(self, service: JobService, job: Job, worker_id: str) -> None:
        self._service = service
        self.job = job
        self._worker_id = worker_id

    async def progress(
        self, progress: dict[str, Any], *, conn: psycopg.AsyncConnection | None = None
    ) -> None:
        """Record progress; raises ``JobCancelled`` when the job is no longer ours. With
        ``conn``, in that connection's transaction: the progress commits with the work it
        counts (a job resumed after its worker died starts from there)."""
        if not await self._service.report_progress(
            self.job.id, self._worker_id, progress, conn=conn
        ):
            raise JobCancelled(self.job.id)


JobHandler = Callable[[Job, JobControl], Coroutine[Any, Any, dict[str, Any]]]


class Worker:
    def __init__(
        self,
        service: JobService,
        handlers: Mapping[str, JobHandler],
        *,
        poll_interval_s: float = 1.0,
        heartbeat_s: float = 5.0,
        stale_after_s: float = 30.0,
        worker_id: str | None = None,
    ) -> None:
        self.service = service
        self.handlers = dict(handlers)
        self.poll_interval_s = poll_interval_s
        self.heartbeat_s = heartbeat_s
        self.stale_after_s = stale_after_s
        self.worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    def start(self) -> None:
        self._stopping = False
        self._task = asyncio.create_task(self._loop(), name=f"job-worker {self.worker_id}")

    async def stop(self) -> None:
        """Stop the loop; a job in flight is cancelled and put back in the queue."""
        self._stopping = True
        self.service.wakeup.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def run_once(self) -> bool:
        """Claim and run one job; False when there was none."""
        job = await self.service.claim(self.worker_id, list(self.handlers), self.stale_after_s)
        if job is None:
            return False
        await self._run(job)
        return True

    async def run_job(self, job_id: str) -> Job | None:
        """Claim the job ``job_id`` (queued, or abandoned by a dead worker) and run it here;
        None when it is not runnable (done, or held by a live worker)."""
        job = await self.service.claim(
            self.worker_id, list(self.handlers), self.stale_after_s, job_id=job_id
        )
        if job is None:
            return None
        await self._run(job)
        return await self.service.get(job_id)

    async def _loop(self) -> None:
        while not self._stopping:
            try:
                worked = await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception:  # the database went away: retry at the next poll
                log.exception("job worker: claiming a job failed")
                worked = False
            if worked:
                continue
            self.service.wakeup.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.service.wakeup.wait(), self.poll_interval_s)

    async def _run(self, job: Job) -> None:
        control = JobControl(self.service, job, self.worker_id)
        work = asyncio.create_task(self.handlers[job.kind](job, control))
        beating = asyncio.create_task(self._heartbeat(job, work))
        try:
            result = await work
        except asyncio.CancelledError:
            if self._stopping or asyncio.current_task().cancelling():  # type: ignore[union-attr]
                await asyncio.shield(self.service.release(job.id, self.worker_id))
                raise
            log.info("job %s (%s) was cancelled", job.id, job.kind)
        except JobCancelled:
            log.info("job %s (%s) was cancelled", job.id, job.kind)
        except Exception as error:
            log.exception("job %s (%s) failed", job.id, job.kind)
            await self.service.fail(job.id, self.worker_id, f"{type(error).__name__}: {error}")
        else:
            await self.service.finish(job.id, self.worker_id, result)
        finally:
            beating.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beating

    async def _heartbeat(self, job: Job, work: asyncio.Task[dict[str, Any]]) -> None:
        while not work.done():
            await asyncio.sleep(self.heartbeat_s)
            try:
                ours = await self.service.beat(job.id, self.worker_id)
            except Exception:
                log.warning("job %s: heartbeat failed", job.id, exc_info=True)
                continue
            if not ours:
                work.cancel()
                return
