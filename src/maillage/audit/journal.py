"""The audit event of every change to the FHIR store, in the change's own transaction.

The FHIR store (``fhir/repository.py``) calls ``AuditJournal.written`` inside each write's
transaction, after the resource is stored and before COMMIT, whatever the surface (REST,
transaction Bundles, the HL7 feeds, the patient index's own writes): the events are
staged unchained (``AuditTrail.stage``), so the change and its audit commit or roll back
together, and no chain lock is held by the write. ``PendingSealer`` chains what is staged
every second (what a surface did not ask to seal, what a stopped process left); the HTTP
surface asks for a pass after a write without waiting (``AuditTrail.seal_soon``).

A caller that runs many writes in one transaction (the HL7 processor's batch) may hold
their events (``held``) and stage them all in one statement before its COMMIT
(``stage_held``); a part of the transaction rolled back to its savepoint drops the
events it held.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import psycopg

from maillage.audit.events import Interaction, patients_of
from maillage.audit.service import AuditTrail
from maillage.audit.store import PendingEvent
from maillage.jobs.periodic import Periodic
from maillage.security.context import RequestContext

# (resource id, its body as written; None when not known, e.g. nothing was deleted)
Written = tuple[str, dict[str, Any] | None]


class AuditJournal:
    def __init__(self, trail: AuditTrail) -> None:
        self.trail = trail
        # per asyncio task: the events held by the ``held`` block it runs in, if any
        self._held: ContextVar[list[PendingEvent] | None] = ContextVar("audit_held", default=None)

    @contextmanager
    def held(self) -> Iterator[list[PendingEvent]]:
        """Within: the events of the writes are kept in the list given, not staged; the
        caller stages them (``stage_held``) in the writes' transaction, or drops them
        with the writes."""
        events: list[PendingEvent] = []
        token = self._held.set(events)
        try:
            yield events
        finally:
            self._held.reset(token)

    async def stage_held(
        self, conn: psycopg.AsyncConnection, events: Sequence[PendingEvent]
    ) -> None:
        """Stage held events, in one statement, in their writes' open transaction."""
        await self.trail.stage(conn, events)

    async def written(
        self,
        conn: psycopg.AsyncConnection,
        ctx: RequestContext,
        interaction: Interaction,
        resource_type: str,
        resources: Sequence[Written],
    ) -> None:
        """Stage the events of one write (one per patient the resources are about)."""
        groups: dict[str | None, list[str]] = {}
        for resource_id, body in resources:
            if body is not None:
                patients: list[str | None] = [*sorted(patients_of(body))] or [None]
            else:
                patients = [resource_id if resource_type == "Patient" else None]
            for patient in patients:
                groups.setdefault(patient, []).append(f"{resource_type}/{resource_id}")
        events = self.trail.events(ctx, interaction, resource_type, groups=list(groups.items()))
        held = self._held.get()
        if held is not None:
            held.extend(events)
            return
        await self.trail.stage(conn, events)


class PendingSealer:
    """Every ``interval_s``, chain the staged events (a no-op pass when there are none)."""

    def __init__(self, trail: AuditTrail, interval_s: float = 1.0) -> None:
        self._loop = Periodic("audit-sealer", interval_s, trail.seal)

    def start(self) -> None:
        self._loop.start()

    async def stop(self) -> None:
        await self._loop.stop()
