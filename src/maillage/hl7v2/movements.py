"""The IHE PAM FR movement handlers (ITI-31): ADT events to one Encounter per visit.

Inserts (A05, A14, A01, A04, A06, A07, A54, A02, A15, A03, A16, A21, A22), their cancels
(A38, A27, A11, A12, A26, A13, A25, A52, A53, A55; A06/A07 with ZBE-4 = CANCEL) and the
correction Z99 read the message (``movements_mapping.read_movement``), apply it to the
movements the visit's Encounter records (``apply``: pure), and write the Encounter
rebuilt from them by conditional update on the site's visit number (PV1-19), in the
message's transaction. A cancel marks exactly its movement (ZBE-1) cancelled — the
periods around it close up —, a historic one (ZBE-5 = Y) leaves the later movements as
they are; a non-historic one must cancel the last movement. A Z99 replaces its
movement's data (ZBE-6 must name the trigger that inserted it), unless it is older
(MSH-7) than the message that last wrote that movement: an old Z99 replayed alone does
not undo a later correction (processed, with a note). A replayed message
changes nothing: an insert finds its movement (ZBE-1, same trigger) already recorded —
cancelled or corrected since, maybe —, a cancel finds it cancelled, and the same
Encounter writes no new version. ZBE-1's first repetition is the movement id. A44 moves
the visits of an account (PID-18) to PID-3's patient.

The patient is the one carrying PID-3's IPP for the sending site, as for ORU^R01
(``results.py``): an unknown IPP fails the message, which is retried, then
dead-lettered; patients are never created here, and the rest of PID is not read: IHE PAM
FR 2.11.2 (ITI-31, A08 excluded) says demographic updates are made "exclusivement par
l'événement A31 de la transaction ITI-30", so a movement's PID never changes the
identity (its traits may lag behind the last A31).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import hl7
import orjson

from maillage.fhir.matching import identifier_criteria as criteria
from maillage.fhir.model import StoredResource
from maillage.fhir.repository import FhirStore, Repository
from maillage.hl7v2.movements_mapping import (
    CANCELS,
    INSERTS,
    LEGACY,
    OPENING,
    Movement,
    MovementDataError,
    MovementMessage,
    account_system,
    encounter,
    moment,
    movements_of,
    read_movement,
    segment,
)
from maillage.hl7v2.parsing import segment_value
from maillage.hl7v2.processing import PROCESSED, HandlerRegistry, MessageContext, Outcome
from maillage.hl7v2.results import one_patient, site_ipp_of
from maillage.hl7v2.sites import SiteConfig
from maillage.security import RequestContext

log = logging.getLogger(__name__)

TRIGGERS = (*sorted(INSERTS), *sorted(set(CANCELS) - INSERTS), "Z99", *sorted(LEGACY))


def apply(movements: list[Movement], read: MovementMessage) -> list[Movement]:
    """The visit's movements after the message (the same list for a replay)."""
    new = read.movement
    found = next((m for m in movements if m.id == new.id), None)
    where = f"movement {new.id!r} of visit {read.visit!r}"
    if read.action == "INSERT":
        if found is None:
            return reordered(movements, new)
        if found.event == new.event:
            # a replay (or a resend): the movement is recorded already, maybe corrected
            # by a Z99 or cancelled since; nothing changes
            return movements
        raise MovementDataError(
            f"ZBE-1: {where} was inserted by {found.event}: movement ids are not reused "
            "(IHE PAM FR 5.4.1)"
        )
    if found is None:
        raise MovementDataError(f"ZBE-1: no {where} to {read.action.lower()} ({read.trigger})")
    if read.original and read.original != found.event:
        raise MovementDataError(
            f"ZBE-6: {where} was inserted by {found.event}, not {read.original}"
        )
    if read.action == "UPDATE":
        if found.cancelled:
            raise MovementDataError(f"ZBE-1: {where} is cancelled: a Z99 cannot correct it")
        if stale(found, new):
            return movements  # an older correction replayed alone: the newer one stays
            # (the handler says so in the message's note)
        corrected = replace(new, event=found.event)
        return movements if corrected == found else reordered(without(movements, new.id), corrected)
    if found.cancelled:
        return movements  # a replay
    if found.event not in CANCELS[read.trigger]:
        raise MovementDataError(
            f"ZBE-1: {where} was inserted by {found.event}; {read.trigger} cancels "
            f"{' or '.join(CANCELS[read.trigger])}"
        )
    live = [m for m in movements if not m.cancelled]
    if not read.historic and live[-1].id != found.id:
        raise MovementDataError(
            f"ZBE-5: {where} is not the visit's last movement: its cancel must be historic "
            "(ZBE-5 = Y, IHE PAM FR 5.3.7)"
        )
    return [cancelled(m) if m.id == found.id else m for m in movements]


def stale(found: Movement, new: Movement) -> bool:
    """Whether ``new`` comes from a message older (MSH-7) than the one ``found`` was last
    written by: a replay of an old Z99 must not undo a later correction."""
    if not found.recorded or not new.recorded:
        return False
    return moment(new.recorded) < moment(found.recorded)


def reordered(movements: list[Movement], new: Movement) -> list[Movement]:
    """``movements`` with ``new`` placed by its start (after those starting at that time)."""
    at = moment(new.start)
    position = len(movements)
    while position and moment(movements[position - 1].start) > at:
        position -= 1
    return [*movements[:position], new, *movements[position:]]


def without(movements: list[Movement], movement_id: str) -> list[Movement]:
    return [m for m in movements if m.id != movement_id]


def cancelled(m: Movement) -> Movement:
    return replace(m, cancelled=True)


class MovementsHandler:
    """ITI-31 movements → the visit's Encounter, through ``store``'s repositories bound to
    the message's transaction."""

    def __init__(self, store: FhirStore) -> None:
        self.store = store

    async def __call__(self, context: MessageContext) -> Outcome:
        site = _site(context)
        repo = Repository(self.store, RequestContext.system(f"hl7:{site.code}"), context.conn)
        if context.trigger_event == "A44":
            return await self._move_account(repo, context.message, site)
        read = _read(context, site)  # data errors before any read
        patient_id = one_patient(
            await repo.find_identified("Patient", site.ipp_system, read.ipp), site
        )
        visits = await repo.find_identified("Encounter", site.visit_number_system, read.visit)
        decided = _decide(read, site, patient_id, visits)
        if isinstance(decided, Outcome):
            return decided
        (outcome,) = await repo.conditional_update_many("Encounter", [decided])
        _logged(read, outcome.changed)
        return PROCESSED

    async def many(self, contexts: list[MessageContext]) -> dict[int, Outcome]:
        """Several movements of one site, each of another visit: one patient lookup, one
        visit lookup and one group write of the Encounters. A message that cannot be
        read or decided this way (A44, an unknown patient, a data error, a visit another
        message of the group also names) is left out: processed alone."""
        site = _site(contexts[0])
        reads: list[_Read] = []
        visits_seen: set[str] = set()
        for context in contexts:
            if context.trigger_event == "A44":
                continue
            try:
                read = _read(context, site)
            except Exception:  # left to be processed alone
                continue
            if read.movement.visit not in visits_seen:
                visits_seen.add(read.movement.visit)
                reads.append(read)
        if not reads:
            return {}
        repo = Repository(self.store, RequestContext.system(f"hl7:{site.code}"), contexts[0].conn)
        patients = await repo.find_identified_many(
            "Patient", site.ipp_system, [read.ipp for read in reads]
        )
        encounters = await repo.find_identified_many(
            "Encounter", site.visit_number_system, [read.visit for read in reads]
        )
        outcomes: dict[int, Outcome] = {}
        writes: list[tuple[_Read, tuple[list[tuple[str, str]], dict[str, Any]]]] = []
        for read in reads:
            await asyncio.sleep(0)  # between messages: the listener's ACKs go on
            try:
                patient_id = one_patient(patients.get(read.ipp, []), site)
                decided = _decide(read, site, patient_id, encounters.get(read.visit, []))
            except Exception:
                continue
            if isinstance(decided, Outcome):
                outcomes[read.context.id] = decided
            else:
                writes.append((read, decided))
        written = await repo.conditional_update_many("Encounter", [item for _, item in writes])
        for (read, _), outcome in zip(writes, written, strict=True):
            _logged(read, outcome.changed)
            outcomes[read.context.id] = PROCESSED
        return outcomes

    async def _move_account(
        self, repo: Repository, message: hl7.Message, site: SiteConfig
    ) -> Outcome:
        """A44 (IHE PAM FR 5.1.2): the visits of account PID-18 (MRG-3 when PID-18 is
        empty) now belong to PID-3's patient."""
        pid = segment(message, "PID", "patient")
        mrg = segment(message, "MRG", "prior patient")
        account = segment_value(pid, 18) or segment_value(mrg, 3)
        if not account:
            raise MovementDataError("PID-18: the account number to move is empty")
        patient_id = await patient_of(repo, message, site)
        page = await repo.search(
            "Encounter", [*criteria(account_system(site), account), ("_count", "100")]
        )
        if not page.entries:
            raise MovementDataError(
                f"PID-18: no visit of site {site.code} carries account number {account!r}"
            )
        for stored in page.entries:
            body = orjson.loads(stored.body or "{}")
            body.pop("meta", None)
            body["subject"] = {"reference": f"Patient/{patient_id}"}
            await repo.update("Encounter", stored.id, body)
        return PROCESSED


@dataclass
class _Read:
    context: MessageContext
    movement: MovementMessage
    ipp: str

    @property
    def visit(self) -> str:
        return self.movement.visit


def _site(context: MessageContext) -> SiteConfig:
    if context.site is None:
        raise MovementDataError("MSH-4: the message has no configured site")
    return context.site


def _read(context: MessageContext, site: SiteConfig) -> _Read:
    """The movement and PID-3's IPP (the ORU handler's rule, shared)."""
    movement = read_movement(context.message, context.trigger_event, site)
    ipp = site_ipp_of(context.message, site)
    if not ipp:
        raise MovementDataError(f"PID-3: no IPP of site {site.code}")
    return _Read(context, movement, ipp)


Write = tuple[list[tuple[str, str]], dict[str, Any]]


def _decide(
    read: _Read, site: SiteConfig, patient_id: str, visits: Sequence[StoredResource]
) -> Outcome | Write:
    """The visit's Encounter after the movement, to write by conditional update on the
    visit number; or the outcome when nothing is to be written (a stale Z99)."""
    movement = read.movement
    trigger = read.context.trigger_event
    subject = f"Patient/{patient_id}"
    if len(visits) > 1:
        raise MovementDataError(f"PV1-19: several Encounters carry visit {read.visit!r}")
    current: dict[str, Any] = orjson.loads(visits[0].body or "{}") if visits else {}
    if not current and not (movement.action == "INSERT" and trigger in OPENING):
        raise MovementDataError(
            f"PV1-19: no visit {read.visit!r} at site {site.code}: {trigger} needs the "
            "visit opened first (A05, A14, A01 or A04)"
        )
    if current and current.get("subject", {}).get("reference") != subject:
        raise MovementDataError(
            f"PV1-19: visit {read.visit!r} belongs to another patient (an A44 moves it)"
        )
    recorded = movements_of(current)
    movements = apply(recorded, movement)
    if movement.action == "UPDATE" and movements is recorded:
        found = next(m for m in recorded if m.id == movement.movement.id)
        if stale(found, movement.movement):
            return Outcome(
                "processed",
                f"MSH-7: this Z99 is older than the last message that wrote movement "
                f"{found.id!r} ({found.recorded}): not applied",
            )
    account = movement.account or _account_of(current, site)
    body = encounter(movements, visit=read.visit, account=account, subject=subject, site=site)
    if "id" in current:
        body["id"] = current["id"]
    return criteria(site.visit_number_system, read.visit), body


def _logged(read: _Read, changed: bool) -> None:
    log.debug(
        "hl7 message %d: %s movement %s (changed: %s)",
        read.context.id,
        read.movement.action,
        read.context.trigger_event,
        changed,
    )


def _account_of(current: dict[str, Any], site: SiteConfig) -> str:
    system = account_system(site)
    return next(
        (i["value"] for i in current.get("identifier", []) if i.get("system") == system), ""
    )


async def patient_of(repo: Repository, message: hl7.Message, site: SiteConfig) -> str:
    """The Patient carrying PID-3's IPP of the site (see ``results.one_patient``)."""
    ipp = site_ipp_of(message, site)  # the ORU handler's rule, shared
    if not ipp:
        raise MovementDataError(f"PID-3: no IPP of site {site.code}")
    return one_patient(await repo.find_identified("Patient", site.ipp_system, ipp), site)


def register_movements(registry: HandlerRegistry, store: FhirStore) -> None:
    handler = MovementsHandler(store)
    for trigger in TRIGGERS:
        registry.register("ADT", trigger, handler, writes=True, many=handler.many)
    registry.register("ADT", "A44", handler, writes=True)
