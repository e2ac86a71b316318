"""The IHE PAM FR identity feed (ITI-30): A28 (create), A31 (update), A47 (change of the
patient identifier list, IPP or INS), A40 (merge) and, with the Link/Unlink option, A24
(link) and A37 (unlink), written through the FHIR store.

A28/A31 write the site's source identity (``identity_mapping.source_identity``) as a
conditional update on the site's IPP does: found under that identifier's criteria lock,
then created, or updated at the version read (a merge committed meanwhile fails the
write, retried), on the message's own transaction: the patient
index's write hook matches and places it in the same transaction, and a replay changes
nothing (the same content makes no new version). A known Patient keeps what the message
does not carry: other systems' identifiers, its merge state (``active``, links). What
the sender said but the hub does not keep (an INS without PID-32 = VALI) is recorded as
the message's note.

A47 (IHE PAM FR 4.1, 4.4.2-4.4.4) moves the Patient found by MRG-1's IPP to PID-3's IPP,
or replaces its INS by PID-3's (``""``: removed) with the status PID-32 gives. A40 merges
the Patient of MRG-1's IPP into the one of PID-3's IPP (``mpi.merging.merge``: records
re-pointed, the absorbed identity retired); a pair already merged is a replay, processed
with a note.

A Patient the message names but the hub does not know (yet: the sender's A28 may be
waiting behind another patient's messages) fails the message as results.py does: retried,
then dead-lettered with the field in the reason. The PID of the movement messages (A01,
A04...) never updates the identity: only A31 does (IHE PAM FR, see ``movements.py``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import orjson

from maillage.fhir.repository import FhirStore, Repository
from maillage.hl7v2.identity_mapping import (
    IdentityDataError,
    control_id,
    ins_decision,
    ipp_identifier,
    prior_identifiers,
    reliability_extension,
    segment,
    site_ipp,
    source_identity,
)
from maillage.hl7v2.processing import PROCESSED, HandlerRegistry, MessageContext, Outcome
from maillage.hl7v2.sites import SiteConfig
from maillage.identity.checks import IDENTITY_RELIABILITY_URL
from maillage.identity.ins import INS_SYSTEMS
from maillage.mpi import linking, merging
from maillage.mpi.index import PatientIndex
from maillage.security import RequestContext

log = logging.getLogger(__name__)


class UnknownIdentity(Exception):
    """No Patient carries an identifier the message names (retried: it may come)."""


def _outcome(notes: list[str]) -> Outcome:
    return Outcome("processed", "; ".join(notes)) if notes else PROCESSED


@dataclass(frozen=True, slots=True)
class Found:
    """A Patient found by an identifier: its id, stored body and version."""

    id: str
    body: dict[str, Any]
    version: int


class _Handler:
    def __init__(self, store: FhirStore) -> None:
        self.store = store

    def _repo(self, context: MessageContext) -> tuple[Repository, SiteConfig]:
        site = context.site
        if site is None:
            raise IdentityDataError("MSH-4: the message has no configured site")
        return Repository(self.store, RequestContext.system(f"hl7:{site.code}"), context.conn), site

    @staticmethod
    async def _find(
        repo: Repository, system: str, value: str, where: str, *, lock: bool = False
    ) -> Found | None:
        found = await repo.find_identified("Patient", system, value, lock=lock)
        if len(found) > 1:
            raise IdentityDataError(f"{where}: several Patients carry this identifier")
        entry = found[0] if found else None
        if entry is None or entry.body is None:
            return None
        return Found(entry.id, dict(orjson.loads(entry.body)), entry.version_id)


class IdentityUpdate(_Handler):
    """A28 and A31: the source identity, created or replaced."""

    async def __call__(self, context: MessageContext) -> Outcome:
        repo, site = self._repo(context)
        mapped = source_identity(context.message, site)
        body = mapped.patient
        # Found under the IPP's criteria lock (held to the end of the message's
        # transaction): a create when none is found is the conditional create.
        stored = await self._find(repo, site.ipp_system, mapped.ipp, "PID-3", lock=True)
        if stored is None:
            if context.trigger_event == "A31":
                mapped.notes.append("A31 for an IPP the hub did not know: the identity was created")
            outcome = await repo.create(body)
        else:
            # The version read: a merge committed meanwhile (another patient key's A40)
            # fails this write (412), and the retry carries the merge state over.
            body = {**_carry_over(body, stored.body, site), "id": stored.id}
            outcome = await repo.update("Patient", stored.id, body, if_match=stored.version)
        log.debug(
            "hl7 message %d: Patient/%s %s",
            context.id,
            outcome.resource.id,
            "written" if outcome.changed else "unchanged",
        )
        return _outcome(mapped.notes)


class IdentifierChange(_Handler):
    """A47: an IPP changed (MRG-1 the old one, PID-3 the new), or the INS changed or
    removed (MRG-1 the old INS, PID-3 the IPP and the new INS or ``""``: 4.4.2-4.4.4)."""

    async def __call__(self, context: MessageContext) -> Outcome:
        repo, site = self._repo(context)
        message = context.message
        pid = segment(message, "PID", "patient")
        new_ipp = site_ipp(pid, site)
        prior = prior_identifiers(message, site)
        if len(prior.old_ipps) > 1:
            raise IdentityDataError(
                f"MRG-1: several IPPs of site {site.code}: send one A47 per identifier "
                "(IHE PAM FR 4.1)"
            )
        notes: list[str] = []
        by_new = await self._find(repo, site.ipp_system, new_ipp, "PID-3")
        found = by_new
        if prior.old_ipps and prior.old_ipps[0] != new_ipp:
            by_old = await self._find(repo, site.ipp_system, prior.old_ipps[0], "MRG-1")
            if by_old is not None and by_new is not None:
                raise IdentityDataError(
                    "PID-3: the new IPP already identifies another Patient: merge them with "
                    "an A40 (IHE PAM FR 4.1)"
                )
            if by_old is None and by_new is None:
                raise UnknownIdentity(
                    f"MRG-1: no Patient carries this IPP of site {site.code} ({site.ipp_system})"
                )
            if by_old is None:
                notes.append("MRG-1's IPP is already replaced by PID-3's (a replay)")
            found = by_old or by_new
        # An INS change or removal (4.4.2-4.4.4): PID-3 carries the patient's IPP, which
        # names the site's own source identity (the INS of MRG-1 may be on other sites'
        # identities of the same person, or nowhere when it was never qualified here).
        if found is None:
            raise UnknownIdentity(
                f"PID-3: no Patient carries this IPP of site {site.code} ({site.ipp_system})"
            )
        body = _with_ipp(found.body, site, new_ipp)
        if prior.old_ins:
            decision = ins_decision(message)
            notes.extend(decision.notes)
            kept = [i for i in body.get("identifier", []) if i.get("system") not in INS_SYSTEMS]
            body["identifier"] = [*kept, *([decision.identifier] if decision.identifier else [])]
            others = [
                e for e in body.get("extension", []) if e.get("url") != IDENTITY_RELIABILITY_URL
            ]
            body["extension"] = [*others, reliability_extension(decision.status)]
        await repo.update("Patient", found.id, body, if_match=found.version)
        return _outcome(notes)


class Merge(_Handler):
    """A40: MRG-1's IPP merged into PID-3's (the survivor), on the message's transaction."""

    async def __call__(self, context: MessageContext) -> Outcome:
        repo, site = self._repo(context)
        message = context.message
        survivor_ipp = site_ipp(segment(message, "PID", "patient"), site)
        prior = prior_identifiers(message, site)
        if not prior.old_ipps:
            raise IdentityDataError(f"MRG-1: no IPP of site {site.code} ({site.ipp_system})")
        survivor = await self._find(repo, site.ipp_system, survivor_ipp, "PID-3")
        if survivor is None:
            raise UnknownIdentity(
                f"PID-3: no Patient carries this IPP of site {site.code} ({site.ipp_system})"
            )
        notes: list[str] = []
        for old in prior.old_ipps:
            merged = await self._find(repo, site.ipp_system, old, "MRG-1")
            if merged is None:
                raise UnknownIdentity(
                    f"MRG-1: no Patient carries this IPP of site {site.code} ({site.ipp_system})"
                )
            if merged.id == survivor.id:
                raise IdentityDataError("MRG-1: the absorbed IPP is the survivor's (PID-3)")
            replaced_by = _replaced_by(merged.body)
            if replaced_by == survivor.id:
                notes.append(f"Patient/{merged.id} is already merged into Patient/{survivor.id}")
                continue
            if replaced_by is not None:
                raise IdentityDataError(
                    f"MRG-1: the absorbed Patient is already merged into Patient/{replaced_by}"
                )
            index = self.store.write_hooks.get("Patient")
            if not isinstance(index, PatientIndex):
                raise IdentityDataError("A40: the patient index is off: merges need it")
            await merging.merge(
                index,
                repo,
                survivor_id=survivor.id,
                merged_id=merged.id,
                who=f"hl7:{site.code}",
                reason=f"A40 {control_id(message)}",
            )
        return _outcome(notes)


class LinkChange(_Handler):
    """A24 / A37 (ITI-30's Link/Unlink option): the first PID's IPP and the second's name
    the same person (A24: the second joins the first's territorial identity as a verified
    link, a decision of the site's identity desk) or not (A37: the second leaves it for a
    territorial identity of its own, never to be linked back by the machine). Nothing is
    merged: both identities stay, with their records."""

    def __init__(self, store: FhirStore, *, unlink: bool) -> None:
        super().__init__(store)
        self.unlink = unlink

    async def __call__(self, context: MessageContext) -> Outcome:
        repo, site = self._repo(context)
        message = context.message
        trigger = "A37" if self.unlink else "A24"
        pids = message.segments("PID") if _has(message, "PID") else []
        if len(pids) < 2:
            raise IdentityDataError(f"PID: an {trigger} carries two PID segments (two identities)")
        first_ipp, second_ipp = site_ipp(pids[0], site), site_ipp(pids[1], site)
        if first_ipp == second_ipp:
            raise IdentityDataError("PID-3: both PID segments carry the same IPP")
        first = await self._find(repo, site.ipp_system, first_ipp, "PID-3")
        second = await self._find(repo, site.ipp_system, second_ipp, "PID-3 (second PID)")
        if first is None or second is None:
            where = "PID-3" if first is None else "PID-3 (second PID)"
            raise UnknownIdentity(
                f"{where}: no Patient carries this IPP of site {site.code} ({site.ipp_system})"
            )
        index = self.store.write_hooks.get("Patient")
        if not isinstance(index, PatientIndex):
            raise IdentityDataError(f"{trigger}: the patient index is off: links need it")
        reason = f"{trigger} {control_id(message)}"
        joined, _ = await linking.link_of(repo, first.id)
        territorial, kind = await linking.link_of(repo, second.id)
        linked = territorial == joined
        if self.unlink:
            if not linked:
                return _outcome(["the two identities were not linked: nothing to unlink"])
            await linking.leave(index, repo, second.id, reason, who=f"hl7:{site.code}")
            return PROCESSED
        if linked and kind == "verified":
            return _outcome(["the two identities were already linked (verified)"])
        await linking.place(index, repo, second.id, joined, None, reason, who=f"hl7:{site.code}")
        return PROCESSED


def _has(message: Any, name: str) -> bool:
    try:
        message.segment(name)
    except KeyError:
        return False
    return True


def _carry_over(body: dict[str, Any], stored: dict[str, Any], site: SiteConfig) -> dict[str, Any]:
    """What the message does not carry and the stored Patient keeps: identifiers of other
    systems, the merge state (``active``, links other than the index's ``refer``)."""
    mine = {site.ipp_system, *INS_SYSTEMS}
    others = [i for i in stored.get("identifier", []) if i.get("system") not in mine]
    result = {**body, "identifier": [*body["identifier"], *others]}
    links = [link for link in stored.get("link", []) if link.get("type") != "refer"]
    if links:
        result["link"] = links
    if stored.get("active") is False:
        result["active"] = False
    return result


def _with_ipp(body: dict[str, Any], site: SiteConfig, ipp: str) -> dict[str, Any]:
    kept = [i for i in body.get("identifier", []) if i.get("system") != site.ipp_system]
    return {**body, "identifier": [ipp_identifier(site, ipp), *kept]}


def _replaced_by(patient: dict[str, Any]) -> str | None:
    for link in patient.get("link", []):
        if link.get("type") == "replaced-by" and patient.get("active") is False:
            return str(link.get("other", {}).get("reference", "")).removeprefix("Patient/")
    return None


def register_identity(registry: HandlerRegistry, store: FhirStore) -> None:
    update = IdentityUpdate(store)
    registry.register("ADT", "A28", update, writes=True)
    registry.register("ADT", "A31", update, writes=True)
    registry.register("ADT", "A47", IdentifierChange(store), writes=True)
    registry.register("ADT", "A40", Merge(store), writes=True)
    registry.register("ADT", "A24", LinkChange(store, unlink=False), writes=True)
    registry.register("ADT", "A37", LinkChange(store, unlink=True), writes=True)
