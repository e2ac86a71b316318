"""``AuditTrail``: record every access and change, verify the chain, answer "who looked
at my record", and serve the AuditEvents back to the roles allowed to read them.

How an event reaches the chain (measured in ``bench/audit_append.py``,
``docs/benchmarks.md`` "Audit chain"):

- a change (create, update, patch, delete, through any surface) is *staged* in its own
  transaction (``stage``, called by the FHIR store's journal, ``audit/journal.py``): an
  unchained row in ``audit_pending``, no lock, so a committed write always has its event
  and a rolled-back one has none, and writes are not serialised by the chain;
- any other event (reads, searches, refusals, failures) goes to the process's
  ``BatchWriter``: concurrent requests share one lock, one statement, one commit.
  ``record`` returns once the row is committed (``wait=False``: once queued; the queue is
  flushed by ``close`` at shutdown);
- staged events are chained by a ``BatchWriter`` pass under the append lock, oldest
  first: ``seal_soon`` asks for one (the HTTP surface, after a write), ``seal`` waits for
  them all, the ``PendingSealer`` runs one every second (the other surfaces, what a
  stopped process left). ``verify`` counts the events still staged.

``record(conn=...)`` still chains in the caller's transaction directly (holding the append
lock through its COMMIT: about 600–750 appends/s for the whole hub, the ``lock`` figure).
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol

import psycopg

from maillage.audit import store
from maillage.audit.chain import Break, Verifier
from maillage.audit.events import (
    ACTIONS,
    BREAK_THE_GLASS,
    Interaction,
    Outcome,
    build_events,
)
from maillage.errors import Forbidden, InvalidRequest
from maillage.security.context import RequestContext
from maillage.storage import Database

# Who may read the audit (AuditEvent searches, patient reports): the medical information
# department, identity monitoring, administrators, the security officer / DPO.
AUDIT_READERS: Final = frozenset({"dim", "identitovigilance", "administrator", "security"})
MAX_REPORT: Final = 10_000
VERIFY_BATCH: Final = 5_000

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class VerifyReport:
    intact: bool
    checked: int
    total: int
    head_seq: int
    head_hash: str  # hex
    broken: Break | None = None
    staged: int = 0  # changes' events committed but not chained yet


@dataclass(frozen=True)
class PatientAccess:
    """One line of the patient's report: who, when, what, why, with what result."""

    seq: int
    recorded: dt.datetime
    who: str
    roles: tuple[str, ...]
    site: str | None
    action: str
    interaction: str
    resources: tuple[str, ...]
    purpose: str
    break_the_glass: bool
    outcome: int
    outcome_desc: str


class AuditTrail:
    def __init__(
        self,
        db: Database,
        *,
        readers: Iterable[str] = AUDIT_READERS,
        hub: str = "maillage",
        max_batch: int = 500,
        clock: Callable[[], dt.datetime] | None = None,
    ) -> None:
        self.db = db
        self.readers = frozenset(readers)
        self.hub = hub
        self.writer = store.BatchWriter(db, max_batch=max_batch)
        self._clock = clock or (lambda: dt.datetime.now(dt.UTC))

    # -- recording ----------------------------------------------------------------
    def events(
        self,
        ctx: RequestContext,
        action: Interaction | str,
        resource_type: str,
        ids: Iterable[str] = (),
        patient_ids: Iterable[str] = (),
        outcome: Outcome | BaseException | None = Outcome.SUCCESS,
        query: str | None = None,
        *,
        groups: Sequence[tuple[str | None, Sequence[str]]] | None = None,
    ) -> list[store.PendingEvent]:
        """The events of one access: one per patient (one without patient if none), each
        naming ``ids``; or, with ``groups``, one per (patient or None, ids) group."""
        if groups is None:
            shared_ids = list(dict.fromkeys(ids))
            patients: list[str | None] = list(dict.fromkeys(patient_ids)) or [None]
            groups = [(patient, shared_ids) for patient in patients]
        return pending_events(
            ctx, action, resource_type, groups, outcome, query,
            recorded=self._clock(), hub=self.hub,
        )  # fmt: skip

    async def record(
        self,
        ctx: RequestContext,
        action: Interaction | str,
        resource_type: str,
        ids: Iterable[str] = (),
        patient_ids: Iterable[str] = (),
        outcome: Outcome | BaseException | None = Outcome.SUCCESS,
        query: str | None = None,
        *,
        groups: Sequence[tuple[str | None, Sequence[str]]] | None = None,
        conn: psycopg.AsyncConnection | None = None,
        wait: bool = True,
    ) -> None:
        """Record one access or change. ``outcome``: an ``Outcome`` or the error the
        request ended with. ``groups``: see ``events``. ``conn``: the write's open
        transaction (the event commits or rolls back with it). Without it: through the
        batching writer, awaited unless ``wait=False``."""
        events = self.events(
            ctx, action, resource_type, ids, patient_ids, outcome, query, groups=groups
        )
        if conn is not None:
            await store.append(conn, events)
            return
        waiting = [self.writer.submit(event, wait=wait) for event in events]
        if wait:
            await asyncio.gather(*(future for future in waiting if future is not None))

    async def stage(
        self, conn: psycopg.AsyncConnection, events: Sequence[store.PendingEvent]
    ) -> None:
        """Stage a change's events in its open transaction (see the module's docstring)."""
        await store.stage(conn, events)

    def seal_soon(self) -> None:
        """Ask for a seal pass with the writer's next batch, without waiting for it."""
        if not self.writer.closing:
            self.writer.seal(wait=False)

    async def seal(self) -> int:
        """Chain the staged events (all of them, in passes of ``store.SEAL_BATCH``); how
        many, once committed."""
        total = 0
        while True:
            done = self.writer.seal()
            assert done is not None
            sealed = await done
            total += sealed
            if sealed < store.SEAL_BATCH:
                return total

    async def close(self) -> None:
        """Flush what is queued (call at shutdown)."""
        await self.writer.close()

    # -- verification -------------------------------------------------------------
    async def head(self) -> tuple[int, bytes]:
        """The head ``(seq, hash)``: publish it elsewhere to anchor later verifications."""
        async with self.db.connection() as conn:
            return await store.head(conn)

    async def verify(
        self,
        progress: Progress | None = None,
        *,
        anchor: tuple[int, bytes] | None = None,
        batch: int = VERIFY_BATCH,
    ) -> VerifyReport:
        """Walk the whole chain (one snapshot: rows appended meanwhile wait for the next
        run); ``progress(done, total)`` after each batch."""
        verifier = Verifier(anchor=anchor)
        last_hash = b""
        async with self.db.connection() as conn:
            await conn.set_autocommit(False)
            try:
                await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                total = await store.count(conn)
                after, done = 0, 0
                while verifier.broken is None:
                    rows = await store.rows_after(conn, after, batch)
                    if not rows:
                        break
                    for row in rows:
                        if verifier.feed(row) is not None:
                            break
                        last_hash = row.hash
                    after = rows[-1].seq
                    done += len(rows)
                    if progress is not None:
                        progress(min(done, total), total)
                staged = await store.count_staged(conn)
            finally:
                await conn.rollback()
                await conn.set_autocommit(True)
        broken = verifier.finish()
        return VerifyReport(
            intact=broken is None,
            checked=verifier.checked,
            total=total,
            head_seq=verifier.last_seq,
            head_hash=last_hash.hex(),
            broken=broken,
            staged=staged,
        )

    # -- reading the audit ----------------------------------------------------------
    def check_reader(self, ctx: RequestContext) -> None:
        """Only the audit's readers (and the hub's own system contexts: the CLI run on
        the server) may read the audit."""
        if not (ctx.roles & self.readers or "system" in ctx.roles):
            raise Forbidden(
                "reading the audit trail is for the roles " + ", ".join(sorted(self.readers))
            )

    async def _read(
        self,
        ctx: RequestContext,
        interaction: Interaction,
        patient_id: str,
        since: dt.datetime | None,
        until: dt.datetime | None,
        limit: int,
        before_seq: int | None,
        query: str | None,
    ) -> list[store.ChainRow]:
        if not patient_id or "/" in patient_id:
            raise InvalidRequest("a patient id (without 'Patient/') is required")
        if not 0 < limit <= MAX_REPORT:
            raise InvalidRequest(f"the page size must be between 1 and {MAX_REPORT}")
        try:
            self.check_reader(ctx)
        except Forbidden as refused:
            # a refused look into the audit is itself audited
            await self.record(ctx, interaction, "AuditEvent", (), [patient_id], refused, query)
            raise
        async with self.db.connection() as conn:
            rows = await store.patient_rows(conn, patient_id, since, until, limit, before_seq)
        await self.record(
            ctx, interaction, "AuditEvent", [row.body["id"] for row in rows], [patient_id],
            Outcome.SUCCESS, query,
        )  # fmt: skip
        return rows

    async def search(
        self,
        ctx: RequestContext,
        patient_id: str,
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
        *,
        limit: int = 100,
        before_seq: int | None = None,
        query: str | None = None,
    ) -> list[tuple[int, dict[str, Any]]]:
        """``AuditEvent?patient=`` from the audit table: ``(seq, AuditEvent)`` newest
        first (``seq`` is the paging cursor)."""
        rows = await self._read(
            ctx, Interaction.SEARCH, patient_id, since, until, limit, before_seq, query
        )
        return [(row.seq, row.body) for row in rows]

    async def patient_report(
        self,
        ctx: RequestContext,
        patient_id: str,
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
        *,
        limit: int = MAX_REPORT,
    ) -> list[PatientAccess]:
        """Who looked at this patient's record (the DPO's answer to the patient)."""
        rows = await self._read(
            ctx, Interaction.OPERATION, patient_id, since, until, limit, None, None
        )
        return [_access(row) for row in rows]


class AuditEvents(Protocol):
    """What builds the events of one write, to be staged in its transaction
    (``AuditTrail.events``; ``pending_events`` with the hub's defaults)."""

    def __call__(
        self,
        ctx: RequestContext,
        action: str,
        resource_type: str,
        *,
        groups: Sequence[tuple[str | None, Sequence[str]]] | None = None,
    ) -> list[store.PendingEvent]: ...


def pending_events(
    ctx: RequestContext,
    action: Interaction | str,
    resource_type: str,
    groups: Sequence[tuple[str | None, Sequence[str]]],
    outcome: Outcome | BaseException | None = Outcome.SUCCESS,
    query: str | None = None,
    *,
    recorded: dt.datetime | None = None,
    hub: str = "maillage",
) -> list[store.PendingEvent]:
    """The events of one access, one per (patient or None, ids) group, ready to be staged
    or chained: pure (no database), for the tools that write without a trail."""
    interaction = Interaction(action)
    recorded = recorded or dt.datetime.now(dt.UTC)
    bodies = build_events(
        ctx, interaction, resource_type, groups, outcome, query, recorded=recorded, hub=hub
    )
    return [
        store.PendingEvent(
            recorded=recorded,
            patient_id=patient,
            who=ctx.who,
            action=ACTIONS[interaction],
            outcome=int(body["outcome"]),
            body=body,
        )
        for (patient, _), body in zip(groups, bodies, strict=True)
    ]


def _access(row: store.ChainRow) -> PatientAccess:
    body = row.body
    user = body["agent"][0]
    roles = tuple(role["coding"][0]["code"] for role in user.get("role", ()))
    site = user.get("location", {}).get("identifier", {}).get("value")
    purpose_codes = [coding["code"] for coding in body["purposeOfEvent"][0]["coding"]]
    resources = tuple(
        entity["what"]["reference"]
        for entity in body.get("entity", ())
        if "what" in entity and entity["role"]["code"] != "1"
    )
    if not resources and body.get("entity"):
        resources = tuple(
            base64.b64decode(entity["query"]).decode()
            for entity in body["entity"]
            if "query" in entity
        )
    return PatientAccess(
        seq=row.seq,
        recorded=row.recorded,
        who=row.who,
        roles=roles,
        site=site,
        action=row.action,
        interaction=body["subtype"][0]["code"],
        resources=resources,
        purpose=purpose_codes[0],
        break_the_glass=BREAK_THE_GLASS in purpose_codes,
        outcome=row.outcome,
        outcome_desc=body.get("outcomeDesc", ""),
    )
