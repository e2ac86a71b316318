"""A job as stored in the ``job`` table."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from maillage.security import RequestContext


class JobStatus(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


class JobCancelled(Exception):
    """Raised inside a handler when its job was cancelled (or taken from its worker)."""


COLUMNS = (
    "id, kind, params, status, progress, result, error, requested_by, context,"
    " created_at, started_at, finished_at, attempts, max_attempts, locked_by, heartbeat"
)


def _json(value: Any) -> Any:
    # The pool loads jsonb as text (bodies are served as stored).
    return orjson.loads(value) if isinstance(value, str | bytes) else value


def context_to_json(ctx: RequestContext) -> dict[str, Any]:
    return {
        "who": ctx.who,
        "site": ctx.site,
        "purpose": ctx.purpose,
        "roles": sorted(ctx.roles),
        "sites": sorted(ctx.sites),
        "scopes": sorted(ctx.scopes),
        "organisation": ctx.organisation,
        "issuer": ctx.issuer,
        "request_id": ctx.request_id,
    }


@dataclass(frozen=True)
class Job:
    id: str
    kind: str
    params: dict[str, Any]
    status: JobStatus
    progress: dict[str, Any] | None
    result: dict[str, Any] | None
    error: str | None
    requested_by: str
    context: dict[str, Any]
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    attempts: int
    max_attempts: int
    locked_by: str | None
    heartbeat: datetime | None

    @classmethod
    def from_row(cls, row: tuple[Any, ...]) -> Job:
        values = list(row)
        for index in (2, 4, 5, 8):
            values[index] = _json(values[index])
        values[3] = JobStatus(values[3])
        return cls(*values)

    @property
    def request_context(self) -> RequestContext:
        """The context of the requester: the job reads and writes as them."""
        data = self.context
        return RequestContext(
            who=data.get("who", self.requested_by),
            site=data.get("site"),
            purpose=data.get("purpose", "TREAT"),
            roles=frozenset(data.get("roles") or ()),
            sites=frozenset(data.get("sites") or ()),
            scopes=frozenset(data.get("scopes") or ()),
            organisation=data.get("organisation"),
            issuer=data.get("issuer"),
            request_id=data.get("request_id") or self.id,
        )
