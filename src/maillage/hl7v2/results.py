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

import logging
from typing import Any

import hl7

from maillage.fhir.matching import identifier_criteria as criteria
from maillage.fhir.repository import FhirStore, Repository
from maillage.hl7v2.parsing import segment_value
from maillage.hl7v2.processing import PROCESSED, HandlerRegistry, MessageContext, Outcome
from maillage.hl7v2.results_mapping import (
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


class ResultsHandler:
    """ORU^R01 → FHIR, through ``store``'s repositories bound to the message's transaction."""

    def __init__(self, store: FhirStore) -> None:
        self.store = store

    async def __call__(self, context: MessageContext) -> Outcome:
        site = context.site
        if site is None:
            raise ResultDataError("MSH-4: the message has no configured site")
        message = context.message
        repo = Repository(self.store, RequestContext.system(f"hl7:{site.code}"), context.conn)
        patient_id = await self._patient(repo, message, site)
        links: dict[str, Any] = {"subject": {"reference": f"Patient/{patient_id}"}}
        encounter_id = await self._encounter(repo, message, site, context.id)
        if encounter_id is not None:
            links["encounter"] = {"reference": f"Encounter/{encounter_id}"}
        groups = _order_groups(message)
        if not groups:
            raise ResultDataError("OBR: the message has no order (OBR segment)")
        # Map everything first: a data error fails the message before any write.
        planned = []
        for position, (obr, results, samples) in enumerate(groups, start=1):
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
            planned.append((obr, order, observations, specimens))
        written = 0
        for obr, order, observations, specimens in planned:
            outcomes = await repo.conditional_update_many(
                "Specimen", [(_criteria(body), body) for body in specimens]
            )
            specimen_refs = [{"reference": f"Specimen/{o.resource.id}"} for o in outcomes]
            written += sum(o.changed for o in outcomes)
            for body in observations:
                if specimen_refs:
                    body["specimen"] = specimen_refs[0]
            outcomes = await repo.conditional_update_many(
                "Observation", [(_criteria(body), body) for body in observations]
            )
            result_ids = [o.resource.id for o in outcomes]
            written += sum(o.changed for o in outcomes)
            report = diagnostic_report(obr, order, site, links, result_ids)
            if specimen_refs:
                report["specimen"] = specimen_refs
            outcome = await repo.conditional_update("DiagnosticReport", _criteria(report), report)
            written += outcome.changed
        log.debug("hl7 message %d: %d resources written or changed", context.id, written)
        return PROCESSED

    async def _patient(self, repo: Repository, message: hl7.Message, site: SiteConfig) -> str:
        ipp = site_ipp_of(message, site)
        if not ipp:
            raise ResultDataError(f"PID-3: no IPP of site {site.code}")
        found = await repo.find_identified("Patient", site.ipp_system, ipp)
        if not found:
            raise UnknownPatient(
                f"PID-3: no Patient carries this IPP of site {site.code} ({site.ipp_system})"
            )
        if len(found) > 1:
            raise UnknownPatient(
                f"PID-3: several Patients carry this IPP of site {site.code} ({site.ipp_system})"
            )
        return found[0].id

    async def _encounter(
        self, repo: Repository, message: hl7.Message, site: SiteConfig, message_id: int
    ) -> str | None:
        try:
            pv1 = message.segment("PV1")
        except KeyError:
            return None
        visit = leaf(pv1, 19)
        if not visit:
            return None
        visits = await repo.find_identified("Encounter", site.visit_number_system, visit)
        if len(visits) != 1:
            log.info(
                "hl7 message %d: PV1-19 matches %s encounters: no encounter referenced",
                message_id,
                len(visits) or "no",
            )
            return None
        return visits[0].id


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
    registry.register("ORU", "R01", ResultsHandler(store), writes=True)
