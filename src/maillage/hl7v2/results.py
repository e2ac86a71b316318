"""The ORU^R01 handler (IHE LAB-3): lab results to DiagnosticReport + Observations.

The patient is the one carrying PID-3's IPP for the sending site (an unknown IPP fails
the message: it is retried, then dead-lettered; patients are never created here); the
encounter the one carrying PV1-19 as the site's visit number, when there is one. Each
OBR gives one DiagnosticReport (identifier: the site's filler order number, OBR-3) and
each of its OBX one Observation (identifier: filler order + OBX-1 [+ OBX-4]).

Every write is a conditional update by identifier through the FHIR repository (an
order's specimens, then its results, each group in a few statements), on the message's
own transaction: a replay leaves the same resources (an identical content
makes no new version), a correction (OBX-11 = C) is a new version of the same
Observation, and a failure anywhere writes nothing. Each SPM gives a Specimen (identifier:
SPM-2, else filler order + position), referenced by the report and its results.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import hl7

from maillage.fhir.matching import identifier_criteria as criteria
from maillage.fhir.model import StoredResource
from maillage.fhir.repository import FhirStore, Repository
from maillage.hl7v2.parsing import segment_value
from maillage.hl7v2.processing import PROCESSED, HandlerRegistry, MessageContext, Outcome
from maillage.hl7v2.results_mapping import (
    Order,
    ResultDataError,
    diagnostic_report,
    leaf,
    observation,
    read_order,
    repetition_count,
    specimen,
)
from maillage.hl7v2.sites import SiteConfig
from maillage.security import RequestContext

log = logging.getLogger(__name__)


class UnknownPatient(Exception):
    """No Patient carries the message's IPP (yet: the identity feed may bring it)."""


@dataclass
class _Planned:
    """One message's resources, mapped and linked, ready to write."""

    context: MessageContext
    # per order (OBR): its OBR, the order, its Observations and Specimens
    orders: list[tuple[hl7.Segment, Order, list[dict[str, Any]], list[dict[str, Any]]]]
    links: dict[str, Any]


@dataclass
class _Read:
    context: MessageContext
    ipp: str
    visit: str | None
    groups: list[Group]  # segments of the parsed message: read before it is released


class ResultsHandler:
    """ORU^R01 → FHIR, through ``store``'s repositories bound to the message's transaction.
    ``many`` writes several messages' results together: one patient lookup, one
    encounter lookup and one group write per resource type for all of them."""

    def __init__(self, store: FhirStore) -> None:
        self.store = store

    async def __call__(self, context: MessageContext) -> Outcome:
        site = _site(context)
        read = _read(context)
        repo = self._repo(context, site)
        patient_id = one_patient(
            await repo.find_identified("Patient", site.ipp_system, read.ipp), site
        )
        encounter_id = None
        if read.visit:
            visits = await repo.find_identified("Encounter", site.visit_number_system, read.visit)
            encounter_id = _one_encounter(visits, context.id)
        planned = _plan(read, site, patient_id, encounter_id)
        written = await _write(repo, [planned])
        log.debug("hl7 message %d: %d resources written or changed", context.id, written)
        return PROCESSED

    async def many(self, contexts: list[MessageContext]) -> dict[int, Outcome]:
        """Several messages of one site; a message that cannot be read, mapped or linked
        to one patient is left out (processed alone, it fails with its reason)."""
        site = _site(contexts[0])
        reads = []
        for context in contexts:
            await asyncio.sleep(0)  # each parse is ~1 ms of CPU: the listener's ACKs go on
            try:
                reads.append(_read(context))
            except Exception:  # left to be processed alone
                continue
        repo = self._repo(contexts[0], site)
        patients = await repo.find_identified_many(
            "Patient", site.ipp_system, [read.ipp for read in reads]
        )
        visits = [read.visit for read in reads if read.visit]
        encounters = await repo.find_identified_many("Encounter", site.visit_number_system, visits)
        plans = []
        for read in reads:
            await asyncio.sleep(0)  # between messages: the listener's ACKs go on
            try:
                patient_id = one_patient(patients.get(read.ipp, []), site)
                encounter_id = (
                    _one_encounter(encounters.get(read.visit, []), read.context.id)
                    if read.visit
                    else None
                )
                plans.append(_plan(read, site, patient_id, encounter_id))
            except Exception:
                continue
            # mapped: the parsed message is no longer needed (each OBR is kept, see _write)
            read.context.release()
            read.groups = []
        if not plans:
            return {}
        written = await _write(repo, plans)
        log.debug("hl7 messages: %d together, %d resources written or changed", len(plans), written)
        return {planned.context.id: PROCESSED for planned in plans}

    def _repo(self, context: MessageContext, site: SiteConfig) -> Repository:
        return Repository(self.store, RequestContext.system(f"hl7:{site.code}"), context.conn)


def _site(context: MessageContext) -> SiteConfig:
    if context.site is None:
        raise ResultDataError("MSH-4: the message has no configured site")
    return context.site


def _read(context: MessageContext) -> _Read:
    """What the lookups need: PID-3's IPP, PV1-19's visit, the orders."""
    site = _site(context)
    message = context.message
    ipp = site_ipp_of(message, site)
    if not ipp:
        raise ResultDataError(f"PID-3: no IPP of site {site.code}")
    try:
        visit = leaf(message.segment("PV1"), 19) or None
    except KeyError:
        visit = None
    return _Read(context, ipp, visit, _order_groups(message))


def one_patient(found: Sequence[StoredResource], site: SiteConfig) -> str:
    """The one Patient carrying the site's IPP; ``UnknownPatient`` (retried, then
    dead-lettered) when none or several do (the movements' rule too)."""
    if not found:
        raise UnknownPatient(
            f"PID-3: no Patient carries this IPP of site {site.code} ({site.ipp_system})"
        )
    if len(found) > 1:
        raise UnknownPatient(
            f"PID-3: several Patients carry this IPP of site {site.code} ({site.ipp_system})"
        )
    return found[0].id


def _one_encounter(visits: Sequence[StoredResource], message_id: int) -> str | None:
    if len(visits) != 1:
        log.info(
            "hl7 message %d: PV1-19 matches %s encounters: no encounter referenced",
            message_id,
            len(visits) or "no",
        )
        return None
    return visits[0].id


def _plan(read: _Read, site: SiteConfig, patient_id: str, encounter_id: str | None) -> _Planned:
    """Everything mapped first: a data error fails the message before any write."""
    links: dict[str, Any] = {"subject": {"reference": f"Patient/{patient_id}"}}
    if encounter_id is not None:
        links["encounter"] = {"reference": f"Encounter/{encounter_id}"}
    if not read.groups:
        raise ResultDataError("OBR: the message has no order (OBR segment)")
    orders = []
    for position, (obr, results, samples) in enumerate(read.groups, start=1):
        order = read_order(obr, position)
        observations = [
            observation(obx, order, number, site, links)
            for number, obx in enumerate(results, start=1)
        ]
        specimens = [
            specimen(spm, order, number, site, links["subject"])
            for number, spm in enumerate(samples, start=1)
        ]
        diagnostic_report(obr, order, site, links, [])  # checks the OBR's own fields
        orders.append((obr, order, observations, specimens))
    return _Planned(read.context, orders, links)


async def _write(repo: Repository, plans: list[_Planned]) -> int:
    """Each order's Specimens, then its Observations (referencing the first Specimen),
    then its DiagnosticReport (referencing both): by conditional update, one group per
    resource type for all the orders of ``plans``. How many resources were written or
    changed."""
    orders = [(planned, *order) for planned in plans for order in planned.orders]
    specimens = [body for *_, found in orders for body in found]
    outcomes = await repo.conditional_update_many(
        "Specimen", [(_criteria(body), body) for body in specimens]
    )
    written = sum(o.changed for o in outcomes)
    specimen_refs: list[list[dict[str, str]]] = []
    for *_, found in orders:
        taken, outcomes = outcomes[: len(found)], outcomes[len(found) :]
        specimen_refs.append([{"reference": f"Specimen/{o.resource.id}"} for o in taken])
    for (_, _, _, observations, _), refs in zip(orders, specimen_refs, strict=True):
        for body in observations:
            if refs:
                body["specimen"] = refs[0]
    observations = [body for _, _, _, found, _ in orders for body in found]
    outcomes = await repo.conditional_update_many(
        "Observation", [(_criteria(body), body) for body in observations]
    )
    written += sum(o.changed for o in outcomes)
    reports = []
    for (planned, obr, order, found, _), refs in zip(orders, specimen_refs, strict=True):
        taken, outcomes = outcomes[: len(found)], outcomes[len(found) :]
        site = _site(planned.context)
        report = diagnostic_report(obr, order, site, planned.links, [o.resource.id for o in taken])
        if refs:
            report["specimen"] = refs
        reports.append(report)
    outcomes = await repo.conditional_update_many(
        "DiagnosticReport", [(_criteria(body), body) for body in reports]
    )
    return written + sum(o.changed for o in outcomes)


def _criteria(resource: dict[str, Any]) -> list[tuple[str, str]]:
    first = resource["identifier"][0]
    return criteria(first["system"], first["value"])


Group = tuple[hl7.Segment, list[hl7.Segment], list[hl7.Segment]]


def _order_groups(message: hl7.Message) -> list[Group]:
    """Each OBR with the OBX and SPM that follow it (before the next OBR)."""
    groups: list[Group] = []
    for segment in message:
        name = str(segment[0])
        if name in ("OBX", "SPM") and not groups:
            raise ResultDataError(f"{name}: a segment comes before any OBR")
        if name == "OBR":
            groups.append((segment, [], []))
        elif name == "OBX":
            groups[-1][1].append(segment)
        elif name == "SPM":
            groups[-1][2].append(segment)
    return groups


def site_ipp_of(message: hl7.Message, site: SiteConfig) -> str:
    """PID-3's IPP assigned by the site (CX-4.2 its OID, or CX-4.1 its namespace), else
    the first identifier of type PI: the rule the intake's patient key follows."""
    try:
        pid = message.segment("PID")
    except KeyError:
        raise ResultDataError("PID: the message has no patient (PID segment)") from None
    first_pi = ""
    for number in range(1, repetition_count(pid, 3) + 1):
        value, namespace, oid, kind = (
            segment_value(pid, 3, number, component, sub)
            for component, sub in ((1, 1), (4, 1), (4, 2), (5, 1))
        )
        if not value or value == '""':
            continue
        if oid == site.ipp_oid or (site.ipp_namespace and namespace == site.ipp_namespace):
            return value
        if kind == "PI" and not first_pi:
            first_pi = value
    return first_pi


def register_results(registry: HandlerRegistry, store: FhirStore) -> None:
    handler = ResultsHandler(store)
    registry.register("ORU", "R01", handler, writes=True, many=handler.many)
