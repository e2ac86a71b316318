"""Movements of a batch written together (``MovementsHandler.many``): each visit's
Encounter and care grants are the ones processing each message alone gives; what the
group cannot take (another message naming the same visit, an unknown patient, A44) is
processed alone. Messages
are stored first, then one batch claimed (``conftest.one_batch``)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from maillage.fhir.repository import FhirStore
from maillage.fhir.search.engine import SearchEngine
from maillage.security import AllowAll
from maillage.security.care_hooks import care_hooks
from maillage.storage import Database
from tests.hl7v2.conftest import (
    GroupCalls,
    gateway_settings,
    one_batch,
    rows,
    store_messages,
    watch_groups,
)
from tests.hl7v2.test_movements import MovementsGateway, Stay, places


class CareGateway(MovementsGateway):
    """The movements gateway over a FHIR store with the care hooks, as the hub builds it:
    each Encounter written grants its care relationships."""

    def fhir_store(self, database: Database) -> FhirStore:
        hooks = care_hooks(recent_days=30)
        return FhirStore(database, AllowAll(), SearchEngine(), write_hooks=hooks)


@pytest.fixture
def adt(hl7_database: str, http: httpx.Client) -> Iterator[MovementsGateway]:
    # ``http`` first: the FHIR tables are emptied before the gateway writes.
    running = CareGateway(hl7_database, settings=gateway_settings(hl7_workers=0)).start()
    try:
        yield running
    finally:
        running.stop()


def _status(adt: MovementsGateway, control_id: str) -> tuple[str, str | None]:
    (found,) = rows(
        adt.conninfo, "SELECT status, error FROM hl7_message WHERE control_id = %s", (control_id,)
    )
    return str(found[0]), found[1]


def _shape(stay: Stay) -> dict[str, Any]:
    """The visit's Encounter without what differs between two stays (ids, visit and
    account numbers), with its care grants."""
    found = stay.encounter()
    assert found["subject"] == {"reference": f"Patient/{stay.patient_id}"}
    kept = {k: v for k, v in found.items() if k not in ("id", "meta", "subject", "identifier")}
    grants = rows(
        stay.gateway.conninfo,
        "SELECT patient_id, principal, until FROM care_access"
        " WHERE source_type = 'Encounter' AND source_id = %s ORDER BY principal",
        (found["id"],),
    )
    assert grants and all(patient == stay.patient_id for patient, _, _ in grants)
    return {
        "encounter": kept,
        "places": places(found),
        "grants": [(principal, until) for _, principal, until in grants],
    }


def test_a_batch_of_movements_is_written_together_as_each_alone_would(
    adt: MovementsGateway, http: httpx.Client
) -> None:
    calls: GroupCalls = []
    watch_groups(adt, "ADT", ("A01", "A02"), calls)
    together = [Stay(adt, http) for _ in range(4)]
    alone = [Stay(adt, http) for _ in range(4)]
    unknown = Stay(adt, http, known=False)
    intruder = Stay(adt, http)  # names the first stay's visit
    intruder.visit = together[0].visit
    intruder.sent = 10  # its control id: {visit}-11

    admissions = [s.payload("A01", "M1", "20260110080000", room="101") for s in together]
    store_messages(adt, [*admissions, unknown.payload("A01", "M1", "20260110080000")])
    store_messages(adt, [intruder.payload("A01", "M9", "20260110090000")])
    assert one_batch(adt) == 6
    # one group of the six (one site): the four admissions were written together; the
    # unknown patient and the second message of the first visit were processed alone
    assert calls == [(6, 4)]
    for stay in together:
        assert _status(adt, f"{stay.visit}-1") == ("processed", None)
    status, error = _status(adt, f"{unknown.visit}-1")
    assert status == "received" and error and "no Patient carries this IPP" in error
    status, error = _status(adt, f"{intruder.visit}-11")
    assert status == "dead" and error and "belongs to another patient" in error

    # transfers of the same stays, together again (updates of their Encounters)
    store_messages(adt, [s.payload("A02", "M2", "20260111100000", unit="3020") for s in together])
    # the unknown patient's retry may come in the batch too, when it is due: a retry is
    # processed alone, never in a group
    assert one_batch(adt) in (4, 5)
    assert calls[-1] == (4, 4)

    # the twin stays, each message alone
    for stay in alone:
        for trigger, movement, start, fields in (
            ("A01", "M1", "20260110080000", {"room": "101"}),
            ("A02", "M2", "20260111100000", {"unit": "3020"}),
        ):
            store_messages(adt, [stay.payload(trigger, movement, start, **fields)])
            while _status(adt, f"{stay.visit}-{stay.sent}")[0] == "received":
                assert one_batch(adt, size=1) == 1
            assert _status(adt, f"{stay.visit}-{stay.sent}") == ("processed", None)

    for grouped, single in zip(together, alone, strict=True):
        written = _shape(grouped)
        assert [place[0] for place in written["places"]] == ["M1", "M2"]
        assert written == _shape(single)
