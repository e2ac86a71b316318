"""Lab results of a batch written together (``ResultsHandler.many``): the outcome of each
message is the one processing it alone gives; a message the group cannot take is
processed alone; a group that fails leaves nothing and its messages are processed alone. Messages
are stored first, then one batch claimed (``conftest.one_batch``)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from maillage.audit import AuditTrail
from maillage.audit.journal import AuditJournal
from maillage.fhir.repository import FhirStore, Repository
from maillage.fhir.search.engine import SearchEngine
from maillage.hl7v2.processing import MessageContext
from maillage.security import AllowAll, RequestContext
from maillage.storage import Database
from tests.factories import patient
from tests.hl7v2.conftest import (
    GroupCalls,
    gateway_settings,
    one_batch,
    rows,
    store_messages,
    watch_groups,
)
from tests.hl7v2.test_results import (
    ResultsGateway,
    _encounter,
    _ipp,
    _known_patient,
    _oru,
    _search,
)


class JournaledGateway(ResultsGateway):
    """The ORU conversion over a FHIR store that audits its writes, as the hub's gateway
    builds it (no sealer here: the events wait in ``audit_pending``, or are chained by
    the HTTP hub's sealer)."""

    def fhir_store(self, database: Database) -> FhirStore:
        journal = AuditJournal(AuditTrail(database))
        return FhirStore(database, AllowAll(), SearchEngine(), journal=journal)


@pytest.fixture
def lab(hl7_database: str, http: httpx.Client) -> Iterator[ResultsGateway]:
    # ``http`` first: the FHIR tables are emptied before the gateway writes.
    running = JournaledGateway(hl7_database, settings=gateway_settings(hl7_workers=0)).start()
    try:
        yield running
    finally:
        running.stop()


def _watch_groups(lab: ResultsGateway, calls: GroupCalls, *, fail: bool = False) -> None:
    """Count the group handler's calls; with ``fail``, write a marker Patient in the
    group's transaction after the results, then fail the group."""

    async def marker_then_failure(contexts: list[MessageContext]) -> None:
        repo = Repository(_store_of(lab), RequestContext.system("test"), contexts[0].conn)
        await repo.create(patient(identifiers=[{"system": "urn:test:marker", "value": "G"}]))
        raise RuntimeError("the group broke after its writes")

    watch_groups(lab, "ORU", ("R01",), calls, after=marker_then_failure if fail else None)


def _store_of(lab: ResultsGateway) -> Any:
    # the FHIR store the ORU handler writes through
    assert lab.gateway is not None
    handler = lab.gateway.processor.handlers.resolve("ORU", "R01").handler
    return handler.store  # type: ignore[attr-defined]


def _audited(lab: ResultsGateway) -> Counter[tuple[str, str]]:
    """The audit events of the lab feed's writes, staged or chained: (action, type of the
    resource) of each resource an event names."""
    found: Counter[tuple[str, str]] = Counter()
    for action, body in rows(
        lab.conninfo,
        "SELECT action, body FROM audit_pending WHERE who = 'system:hl7:CHM'"
        " UNION ALL SELECT action, body FROM audit_event WHERE who = 'system:hl7:CHM'",
    ):
        for entity in body.get("entity", []):
            if entity["role"]["code"] != "1":  # not the patient the event is about
                found[action, entity["what"]["reference"].split("/")[0]] += 1
    return found


def _status(lab: ResultsGateway, control_id: str) -> tuple[str, int, str | None]:
    (found,) = rows(
        lab.conninfo,
        "SELECT status, attempts, error FROM hl7_message WHERE control_id = %s",
        (control_id,),
    )
    return str(found[0]), int(found[1]), found[2]


def _written(http: httpx.Client, patient_id: str) -> dict[str, Any]:
    """A patient's report and results, references checked, then reduced to what does not
    depend on ids or order numbers (to compare two patients' equal results)."""
    (report,) = _search(http, "DiagnosticReport", subject=f"Patient/{patient_id}")
    observations = _search(http, "Observation", subject=f"Patient/{patient_id}")
    assert sorted(r["reference"] for r in report["result"]) == sorted(
        f"Observation/{o['id']}" for o in observations
    )
    for found in [report, *observations]:
        assert found["meta"]["versionId"] == "1"
        assert found["encounter"] == report["encounter"]

    def shape(resource: dict[str, Any]) -> dict[str, Any]:
        dropped = ("id", "meta", "subject", "encounter", "result", "identifier")
        kept = {k: v for k, v in resource.items() if k not in dropped}
        value = resource["identifier"][0]["value"]
        # an order's results differ by their position after the order number
        kept["identifier"] = value.rsplit("-", 1)[1] if resource is not report else ""
        return kept

    return {
        "report": shape(report),
        "results": sorted((shape(o) for o in observations), key=lambda o: o["identifier"]),
        "encounter": report["encounter"]["reference"],
    }


def test_a_batch_of_results_is_written_together_as_each_alone_would(
    lab: ResultsGateway, http: httpx.Client
) -> None:
    calls: GroupCalls = []
    _watch_groups(lab, calls)
    together: list[tuple[str, str, str, str, str]] = []
    alone: list[tuple[str, str, str, str, str]] = []
    for number in range(4):
        for kept, prefix in ((together, "G"), (alone, "S")):
            ipp, patient_id = _known_patient(http)
            visit = f"V-{prefix}{number}"
            encounter_id = _encounter(http, patient_id, visit)
            kept.append((ipp, patient_id, encounter_id, visit, f"{prefix}{number}"))
    unknown = _ipp()

    store_messages(
        lab, [_oru(f"ORU-{o}", ipp, f"RES-{o}", visit) for ipp, _, _, visit, o in together]
    )
    store_messages(lab, [_oru("ORU-UNKNOWN", unknown, "RES-UNKNOWN")])
    assert one_batch(lab) == 5
    # one group of the five (one site); the unknown patient's message was left out of it
    assert calls == [(5, 4)]
    for *_, order in together:
        assert _status(lab, f"ORU-{order}")[:2] == ("processed", 1)
    status, attempts, error = _status(lab, "ORU-UNKNOWN")
    assert (status, attempts) == ("received", 1)  # processed alone: failed, to be retried
    assert error and "PID-3: no Patient carries this IPP of site CHM" in error
    # each resource written is audited once, with the batch (the failed message wrote
    # nothing, so it has no event)
    assert _audited(lab) == Counter({("C", "Observation"): 12, ("C", "DiagnosticReport"): 4})

    # the same results for the twin patients, each message processed alone (a batch of
    # one: the unknown patient's retries come in some of them, until it is dead)
    for ipp, _, _, visit, order in alone:
        store_messages(lab, [_oru(f"ORU-{order}", ipp, f"RES-{order}", visit)])
        for _ in range(5):
            if _status(lab, f"ORU-{order}")[0] == "processed":
                break
            assert one_batch(lab, size=1) == 1
        assert _status(lab, f"ORU-{order}")[0] == "processed"
    assert calls == [(5, 4)]

    for grouped, single in zip(together, alone, strict=True):
        written = _written(http, grouped[1])
        assert written["encounter"] == f"Encounter/{grouped[2]}"
        twin = _written(http, single[1])
        assert twin["encounter"] == f"Encounter/{single[2]}"
        assert len(written["results"]) == 3
        assert {**written, "encounter": ""} == {**twin, "encounter": ""}


def test_a_group_that_fails_leaves_nothing_and_each_message_is_processed_alone(
    lab: ResultsGateway, http: httpx.Client
) -> None:
    calls: GroupCalls = []
    _watch_groups(lab, calls, fail=True)
    patients = []
    for number in range(3):
        ipp, patient_id = _known_patient(http)
        encounter_id = _encounter(http, patient_id, f"V-F{number}")
        patients.append((ipp, patient_id, encounter_id, f"V-F{number}", f"F{number}"))
    store_messages(
        lab, [_oru(f"ORU-{o}", ipp, f"RES-{o}", visit) for ipp, _, _, visit, o in patients]
    )

    assert one_batch(lab) == 3
    assert calls == [(3, 3)]  # the group wrote everything, then failed
    # its writes were rolled back with it: the marker is gone ...
    assert _search(http, "Patient", identifier="urn:test:marker|G") == []
    # ... and each message was processed alone, once
    for _, patient_id, encounter_id, _, order in patients:
        assert _status(lab, f"ORU-{order}")[:2] == ("processed", 1)
        written = _written(http, patient_id)
        assert written["encounter"] == f"Encounter/{encounter_id}"
        assert len(written["results"]) == 3
    assert len(_search(http, "DiagnosticReport", _count="50")) == 3
    # the group's audit events went with its writes: each resource has the one event of
    # its write alone, and the marker none
    assert _audited(lab) == Counter({("C", "Observation"): 9, ("C", "DiagnosticReport"): 3})
