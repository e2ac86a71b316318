"""Background jobs on a PostgreSQL table: enqueue, poll, cancel, and an asyncio worker."""

from maillage.jobs.models import Job, JobCancelled, JobStatus
from maillage.jobs.service import JobService
from maillage.jobs.worker import JobControl, JobHandler, Worker

__all__ = ["Job", "JobCancelled", "JobControl", "JobHandler", "JobService", "JobStatus", "Worker"]
