"""The audit event of every change to the FHIR store, in the change's own transaction.

The FHIR store (``fhir/repository.py``) calls ``AuditJournal.written`` inside each write's
transaction, after the resource is stored and before COMMIT, whatever the surface (REST,
transaction Bundles, the HL7 feeds, the patient index's own writes): the events are
staged unchained (``AuditTrail.stage``), so the change and its audit commit or roll back
together, and no chain lock is held by the write. ``PendingSealer`` chains what is staged
every second (what a surface did not ask to seal, what a stopped process left); the HTTP
surface asks for a pass after a write without waiting (``AuditTrail.seal_soon``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg

from maillage.audit.events import Interaction, patients_of
from maillage.audit.service import AuditTrail
from maillage.jobs.periodic import Periodic
from maillage.security.context import RequestContext

# (resource id, its body as written; None when not known, e.g. nothing was deleted)
Written = tuple[str, dict[str, Any] | None]


class AuditJournal:
    def __init__(self, trail: AuditTrail) -> None:
        self.trail = trail

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
        await self.trail.stage(conn, events)


class PendingSealer:
    """Every ``interval_s``, chain the staged events (a no-op pass when there are none)."""

    def __init__(self, trail: AuditTrail, interval_s: float = 1.0) -> None:
        self._loop = Periodic("audit-sealer", interval_s, trail.seal)

    def start(self) -> None:
        self._loop.start()

    async def stop(self) -> None:
        await self._loop.stop()
