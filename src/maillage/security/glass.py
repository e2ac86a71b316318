"""Break-the-glass: emergency access to one patient's record, with a mandatory reason,
limited in time, flagged, and listed for the identitovigilance / security team.

Opening the glass adds a time-limited grant for the practitioner (``care_access``, source
``break-the-glass``, with the reason); the access rules then let her read the record as
if she were in the patient's care, until the grant ends. The audit records the accesses
with purpose ETREAT.
"""

from __future__ import annotations

import datetime as dt
import logging

from maillage.errors import Forbidden, InvalidRequest
from maillage.security import care_store
from maillage.security.care_store import GlassAccess
from maillage.security.context import RequestContext
from maillage.storage import Database

log = logging.getLogger(__name__)

# Who may break the glass (clinicians), and who reviews the list.
MAY_BREAK = frozenset({"physician", "midwife", "nurse", "pharmacist"})
REVIEWERS = frozenset({"identitovigilance", "administrator", "dim"})
MIN_REASON = 10


class BreakGlass:
    def __init__(self, db: Database, *, hours: float) -> None:
        self.db = db
        self.hours = hours

    async def open(self, ctx: RequestContext, patient_id: str, reason: str) -> GlassAccess:
        if not ctx.who.startswith("Practitioner/") or not MAY_BREAK & ctx.roles:
            raise Forbidden("only a clinician signed in as a Practitioner may break the glass")
        if len(reason.strip()) < MIN_REASON:
            raise InvalidRequest(
                f"breaking the glass needs a reason of at least {MIN_REASON} characters: "
                "say what emergency requires this record"
            )
        async with self.db.transaction() as conn:
            access = await care_store.open_glass(
                conn, patient_id, ctx.who, self.hours, reason.strip()
            )
        log.warning(
            "break-the-glass: %s opened Patient/%s until %s", ctx.who, patient_id, access.until
        )
        return access

    async def list(
        self, ctx: RequestContext, since: dt.datetime | None = None, limit: int = 200
    ) -> list[GlassAccess]:
        if not REVIEWERS & ctx.roles and "system" not in ctx.roles:
            raise Forbidden(
                "the break-the-glass list is for the identitovigilance and security team"
            )
        async with self.db.connection() as conn:
            return await care_store.glass_accesses(conn, since, limit)
