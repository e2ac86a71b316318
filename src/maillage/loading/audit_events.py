"""The audit events of a bulk load: what each chunk wrote, in the chunk's transaction.

A load bypasses the repository (COPY and one merge per chunk), so it cannot go through
the store's journal; it stages the same kind of events itself, in the chunk's own
transaction, so that a chunk and its events commit or roll back together. One event
per patient and per kind of change (create, or a new version of a stored resource)
names every resource of the chunk about that patient, as a REST write of those
resources would (``audit/journal.py``); resources about no patient share one event.
A resource found unchanged is no change: no event.
"""

from __future__ import annotations

from maillage.audit.service import pending_events
from maillage.audit.store import PendingEvent
from maillage.loading.prepare import PreparedChunk
from maillage.loading.writer import ChunkResult
from maillage.security import RequestContext

__all__ = ["chunk_events"]


def chunk_events(
    ctx: RequestContext, prepared: PreparedChunk, result: ChunkResult
) -> list[PendingEvent]:
    """The events of what ``result`` says a chunk wrote."""
    by_change: dict[bool, dict[str | None, list[str]]] = {True: {}, False: {}}
    for seq, _, created in result.written:
        reference = f"{prepared.types[seq]}/{prepared.ids[seq]}"
        groups = by_change[created]
        for patient in prepared.patients[seq] or (None,):
            groups.setdefault(patient, []).append(reference)
    events: list[PendingEvent] = []
    for created, groups in by_change.items():
        if groups:
            action = "create" if created else "update"
            # resource_type names ids without a type only: every id here has one
            events += pending_events(ctx, action, "Bundle", list(groups.items()))
    return events
