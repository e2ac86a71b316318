"""IHE PAM FR movements (ITI-31) end to end: ADT messages over a real MLLP socket to the
gateway, the movement handlers writing the visit's Encounter through the FHIR store,
FHIR reads over HTTP from the running hub.

The worked examples are those of IHE PAM FR 2.11.2 (``shared/specs``): 5.3.7 (historic
movements: a deleted transfer, a forgotten one, sessions, leaves of absence), 5.4.1
(A05 → A01 → A11 leaves the preadmission) and 5.3.5 (the A06/A07 switches).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from maillage.demo.senders import demo_senders
from maillage.demo.sites import site_by_code
from maillage.fhir.repository import FhirStore
from maillage.fhir.search.engine import SearchEngine
from maillage.hl7v2 import parsing
from maillage.hl7v2.movements_mapping import (
    MOVEMENT_ID_URL,
    MOVEMENT_URL,
    encounter,
    movements_of,
    read_movement,
)
from maillage.security import AllowAll
from maillage.storage import Database
from tests.factories import patient
from tests.hl7v2.conftest import (
    MllpConnection,
    RunningGateway,
    ack_code,
    refused_at_receipt,
    rows,
    wait_for,
)
from tests.hl7v2.messages import message

CHM = site_by_code("CHM")
VISITS = f"urn:oid:{CHM.visit_oid}"
UFS = CHM.uf_system
PI_TYPE = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "PI"}]}
DONE = ("processed", "ignored", "dead")
UNIT_NAMES = {unit.code: unit.name for unit in CHM.units}


class MovementsGateway(RunningGateway):
    """The gateway with the default handlers and the FHIR conversions (``build_gateway``
    given a FHIR store over the gateway's own pool)."""

    def fhir_store(self, database: Database) -> FhirStore:
        return FhirStore(database, AllowAll(), SearchEngine())


@pytest.fixture
def adt(hl7_database: str, http: httpx.Client) -> Iterator[MovementsGateway]:
    # ``http`` first: the FHIR tables are emptied before the gateway writes.
    running = MovementsGateway(hl7_database).start()
    try:
        yield running
    finally:
        running.stop()


class Stay:
    """One synthetic patient of CHM and one visit: sends its movements, reads its Encounter."""

    def __init__(self, gateway: MovementsGateway, http: httpx.Client, *, known: bool = True):
        self.gateway, self.http = gateway, http
        self.ipp = f"9{uuid.uuid4().int % 10**7:07d}"
        self.visit = f"V{uuid.uuid4().int % 10**8:08d}"
        self.sent = 0
        self.patient_id = ""
        if known:
            ipp = {"use": "usual", "type": PI_TYPE, "system": CHM.ipp_system, "value": self.ipp}
            response = http.post("/Patient", json=patient(identifiers=[ipp]))
            assert response.status_code == 201, response.text
            self.patient_id = response.json()["id"]

    def send(
        self,
        trigger: str,
        movement: str,
        start: str,
        *,
        unit: str = "2010",
        room: str = "",
        medical: str | None = None,
        **fields: str,
    ) -> tuple[str, str | None]:
        """Send one ADT message and wait for its outcome: (status, reason)."""
        payload = self.payload(trigger, movement, start, unit=unit, room=room, medical=medical,
                               **fields)  # fmt: skip
        return self.deliver(payload, f"{self.visit}-{self.sent}")

    def payload(
        self,
        trigger: str,
        movement: str,
        start: str,
        *,
        unit: str = "2010",
        room: str = "",
        medical: str | None = None,
        **fields: str,
    ) -> bytes:
        """The next ADT message of this stay (control id ``{visit}-{number}``)."""
        self.sent += 1
        medical = unit if medical is None else medical
        values = {
            "trigger": trigger,
            "sent": start,
            "account": f"NDA-{self.visit}",
            "class": "I",
            "location": f"{unit}^{room}" if room else unit,
            "attending": "10001^Lenoir^Agathe",
            "visit": self.visit,
            "admitted": "",
            "discharged": "",
            "movement": movement,
            "start": start,
            "action": "INSERT",
            "historic": "N",
            "original": "",
            "medical": uf(medical),
            "care": "",
            "nature": "",
            **fields,
        }
        control_id = f"{self.visit}-{self.sent}"
        return message("movements/adt_movement", control_id=control_id, ipp=self.ipp, fields=values)

    def deliver(self, payload: bytes, control_id: str) -> tuple[str, str | None]:
        with MllpConnection(self.gateway.port) as client:
            assert ack_code(client.exchange(payload)) == "AA"
        query = "SELECT status, error FROM hl7_message WHERE control_id = %s"

        def done() -> bool:
            found = rows(self.gateway.conninfo, query, (control_id,))
            return bool(found) and found[0][0] in DONE

        wait_for(done, what=f"message {control_id} processed")
        status, reason = rows(self.gateway.conninfo, query, (control_id,))[0]
        return str(status), reason

    def ok(self, trigger: str, movement: str, start: str, **fields: str) -> dict[str, Any]:
        """Send, expect it processed, and return the visit's Encounter."""
        assert self.send(trigger, movement, start, **fields) == ("processed", None)
        return self.encounter()

    def encounters(self) -> list[dict[str, Any]]:
        response = self.http.get("/Encounter", params={"identifier": f"{VISITS}|{self.visit}"})
        assert response.status_code == 200, response.text
        return [entry["resource"] for entry in response.json().get("entry", [])]

    def encounter(self) -> dict[str, Any]:
        found = self.encounters()
        assert len(found) == 1, found
        return found[0]


def uf(code: str) -> str:
    """ZBE-7/8 as IHE PAM FR 6.13.7 fills it: label, assigning authority, UF, code."""
    if not code:
        return ""
    authority = f"{CHM.sending_facility}&{CHM.uf_oid}&ISO"
    return f"{UNIT_NAMES.get(code, 'UF ' + code)}^^^^^{authority}^UF^^^{code}"


def places(encounter: dict[str, Any]) -> list[tuple[str, str, str, str | None, str]]:
    """Encounter.location as (movement id, place, start, end, status)."""
    assert all(
        entry["extension"][0]["url"] == MOVEMENT_ID_URL for entry in encounter.get("location", [])
    )
    return [
        (
            entry["extension"][0]["valueString"],
            entry["location"]["identifier"]["value"],
            entry["period"]["start"],
            entry["period"].get("end"),
            entry["status"],
        )
        for entry in encounter.get("location", [])
    ]


def movements(encounter: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The movement extensions by movement id, each as {sub-extension url: value}."""
    found = {}
    for ext in encounter.get("extension", []):
        if ext["url"] != MOVEMENT_URL:
            continue
        parts = {
            part["url"]: next(v for k, v in part.items() if k != "url") for part in ext["extension"]
        }
        found[parts["movementId"]] = parts
    return found


def statuses(encounter: dict[str, Any]) -> dict[str, str]:
    return {mid: parts["status"] for mid, parts in movements(encounter).items()}


def unit_ref(code: str) -> dict[str, Any]:
    return {"type": "Organization", "identifier": {"system": UFS, "value": code}}


# -- admission, transfer, discharge --------------------------------------------------------
def test_admission_transfer_discharge_give_one_encounter_with_its_history(
    adt: MovementsGateway, http: httpx.Client
) -> None:
    stay = Stay(adt, http)
    admitted = stay.ok("A01", "M1", "202601100800", room="12", admitted="202601100800")
    assert admitted["status"] == "in-progress"
    assert admitted["class"]["code"] == "IMP"
    assert admitted["subject"] == {"reference": f"Patient/{stay.patient_id}"}
    assert admitted["serviceProvider"] == {"reference": "Organization/chm"}
    assert admitted["period"] == {"start": "2026-01-10T08:00:00+01:00"}
    assert places(admitted) == [("M1", "2010^12", "2026-01-10T08:00:00+01:00", None, "active")]

    transfer = {"care": uf("2020"), "nature": "HMS", "attending": "10002^Morel^Basile"}
    moved = stay.ok("A02", "M2", "202601121530", unit="2020", room="4", **transfer)
    assert moved["status"] == "in-progress"
    assert places(moved) == [
        ("M1", "2010^12", "2026-01-10T08:00:00+01:00", "2026-01-12T15:30:00+01:00", "completed"),
        ("M2", "2020^4", "2026-01-12T15:30:00+01:00", None, "active"),
    ]

    done = stay.ok("A03", "M3", "202601151100", unit="2020", discharged="202601151100")
    assert done["id"] == admitted["id"]
    assert len(stay.encounters()) == 1
    assert done["status"] == "finished"
    assert done["period"] == {
        "start": "2026-01-10T08:00:00+01:00",
        "end": "2026-01-15T11:00:00+01:00",
    }
    assert places(done) == [
        ("M1", "2010^12", "2026-01-10T08:00:00+01:00", "2026-01-12T15:30:00+01:00", "completed"),
        ("M2", "2020^4", "2026-01-12T15:30:00+01:00", "2026-01-15T11:00:00+01:00", "completed"),
    ]
    assert done["location"][1]["location"]["display"] == "UF 2020, chambre 4"
    # the UF history: medical (ZBE-7), care (ZBE-8), hosting (PV1-3.1) per movement
    history = movements(done)
    assert list(history) == ["M1", "M2", "M3"]
    assert history["M1"]["medicalUnit"] == {**unit_ref("2010"), "display": "Cardiologie"}
    assert history["M1"]["hostingUnit"] == unit_ref("2010")
    assert "careUnit" not in history["M1"]
    assert history["M2"]["medicalUnit"] == {**unit_ref("2020"), "display": "Médecine polyvalente"}
    assert history["M2"]["careUnit"]["identifier"] == {"system": UFS, "value": "2020"}
    assert history["M2"]["nature"] == "HMS"
    assert history["M2"]["period"] == {
        "start": "2026-01-12T15:30:00+01:00",
        "end": "2026-01-15T11:00:00+01:00",
    }
    assert [parts["event"] for parts in history.values()] == ["A01", "A02", "A03"]
    assert statuses(done) == {"M1": "completed", "M2": "completed", "M3": "completed"}
    # the attending doctors (PV1-7) with their periods
    assert [
        (p["type"][0]["coding"][0]["code"], p["individual"]["identifier"]["value"], p["period"])
        for p in done["participant"]
    ] == [
        (
            "ATND",
            "10001",
            {"start": "2026-01-10T08:00:00+01:00", "end": "2026-01-12T15:30:00+01:00"},
        ),
        (
            "ATND",
            "10002",
            {"start": "2026-01-12T15:30:00+01:00", "end": "2026-01-15T11:00:00+01:00"},
        ),
    ]
    # searchable by the visit number and the patient
    found = http.get("/Encounter", params={"subject": f"Patient/{stay.patient_id}"}).json()
    assert [entry["resource"]["id"] for entry in found["entry"]] == [done["id"]]


def test_emergency_and_outpatient_classes_and_the_switches(
    adt: MovementsGateway, http: httpx.Client
) -> None:
    """IHE PAM FR 5.3.5 and 7.1.3: A04 (E) then A06 (E → I); the A07 cancelling the A06
    (ZBE-4 = CANCEL, ZBE-1 of the A06) brings the emergency class back."""
    stay = Stay(adt, http)
    emergency = stay.ok("A04", "U1", "202601010500", unit="1010", **{"class": "E"})
    assert emergency["class"]["code"] == "EMER"
    assert emergency["status"] == "in-progress"
    switched = stay.ok("A06", "U2", "202601011000", unit="2010", room="101F", nature="HM")
    assert switched["class"]["code"] == "IMP"
    assert [(h["class"]["code"], h["period"]) for h in switched["classHistory"]] == [
        ("EMER", {"start": "2026-01-01T05:00:00+01:00", "end": "2026-01-01T10:00:00+01:00"}),
        ("IMP", {"start": "2026-01-01T10:00:00+01:00"}),
    ]
    cancel = {"action": "CANCEL", "original": "A06", "class": "E"}
    undone = stay.ok("A07", "U2", "202601011000", unit="1010", **cancel)
    assert undone["class"]["code"] == "EMER"
    assert "classHistory" not in undone
    assert places(undone) == [("U1", "1010", "2026-01-01T05:00:00+01:00", None, "active")]
    assert statuses(undone) == {"U1": "active", "U2": "entered-in-error"}

    outpatient = Stay(adt, http)
    visit = outpatient.ok("A04", "O1", "202601020900", unit="5020", **{"class": "O"})
    assert visit["class"]["code"] == "AMB"


# -- cancels -------------------------------------------------------------------------------
def test_each_cancel_undoes_exactly_its_movement(adt: MovementsGateway, http: httpx.Client) -> None:
    stay = Stay(adt, http)
    stay.ok("A01", "C1", "202602010800", room="1")
    stay.ok("A54", "C2", "202602011200", room="1", attending="10002^Morel^Basile")
    stay.ok("A02", "C3", "202602021000", unit="2020")
    done = stay.ok("A03", "C4", "202602051000", unit="2020")
    assert done["status"] == "finished"

    # A13 cancels the discharge: the stay is open again in its last place
    reopened = stay.ok("A13", "C4", "202602051000", unit="2020", action="CANCEL", original="A03")
    assert reopened["status"] == "in-progress"
    assert "end" not in reopened["period"]
    assert places(reopened)[-1] == ("C3", "2020", "2026-02-02T10:00:00+01:00", None, "active")
    assert statuses(reopened)["C4"] == "entered-in-error"

    # A12 cancels the transfer: back in the first unit, the A54's place still there
    back = stay.ok("A12", "C3", "202602021000", room="1", action="CANCEL", original="A02")
    assert [p[0] for p in places(back)] == ["C1", "C2"]
    assert places(back)[-1] == ("C2", "2010^1", "2026-02-01T12:00:00+01:00", None, "active")
    assert [p["individual"]["identifier"]["value"] for p in back["participant"]] == [
        "10001",
        "10002",
    ]

    # A55 cancels the change of attending doctor
    doctor = stay.ok("A55", "C2", "202602011200", room="1", action="CANCEL", original="A54")
    assert [p["individual"]["identifier"]["value"] for p in doctor["participant"]] == ["10001"]
    assert places(doctor) == [("C1", "2010^1", "2026-02-01T08:00:00+01:00", None, "active")]

    # A11 cancels the admission: nothing is left of the visit
    gone = stay.ok("A11", "C1", "202602010800", room="1", action="CANCEL", original="A01")
    assert gone["status"] == "cancelled"
    assert "location" not in gone
    assert set(statuses(gone).values()) == {"entered-in-error"}
    assert len(stay.encounters()) == 1


def test_a_cancelled_admission_leaves_the_preadmission(
    adt: MovementsGateway, http: httpx.Client
) -> None:
    """IHE PAM FR 5.4.1: A05 → A01 → A11 leaves the patient preadmitted; A38 cancels the
    preadmission."""
    stay = Stay(adt, http)
    planned = stay.ok("A05", "P1", "202603010900")
    assert planned["status"] == "planned"
    assert "period" not in planned
    assert stay.ok("A01", "P2", "202603050800")["status"] == "in-progress"
    again = stay.ok("A11", "P2", "202603050800", action="CANCEL", original="A01")
    assert again["status"] == "planned"
    assert statuses(again) == {"P1": "planned", "P2": "entered-in-error"}
    cancelled = stay.ok("A38", "P1", "202603010900", action="CANCEL", original="A05")
    assert cancelled["status"] == "cancelled"


def test_a_leave_of_absence_and_its_cancel(adt: MovementsGateway, http: httpx.Client) -> None:
    """IHE PAM FR 5.3.7, "Cas des permissions": A01 1, A21 2, A22 3, A03 4; then A53
    (ZBE-1 = 3) and A52 (ZBE-1 = 2), both historic."""
    stay = Stay(adt, http)
    stay.ok("A01", "1", "201310101800", unit="6000")
    away = stay.ok("A21", "2", "201310110730", unit="", medical="6000")
    assert away["status"] == "onleave"
    assert places(away)[-1][0] == "1" and places(away)[-1][3] == "2013-10-11T07:30:00+02:00"
    assert stay.ok("A22", "3", "201310111500", unit="6000")["status"] == "in-progress"
    stay.ok("A03", "4", "201310121500", unit="6000")
    historic = {"action": "CANCEL", "historic": "Y"}
    stay.ok("A53", "3", "201310111500", unit="", medical="6000", original="A22", **historic)
    after = stay.ok("A52", "2", "201310110730", unit="6000", original="A21", **historic)
    assert after["status"] == "finished"
    assert places(after) == [
        ("1", "6000", "2013-10-10T18:00:00+02:00", "2013-10-12T15:00:00+02:00", "completed")
    ]
    assert statuses(after) == {
        "1": "completed",
        "2": "entered-in-error",
        "3": "entered-in-error",
        "4": "completed",
    }


def test_pending_events_are_planned_movements(adt: MovementsGateway, http: httpx.Client) -> None:
    """A14/A15/A16 (5.3.2, 5.3.6) are movements of their own, planned: they neither open
    nor close a period; A27/A26/A25 cancel them."""
    stay = Stay(adt, http)
    expected = stay.ok("A14", "W1", "202608010800")
    assert expected["status"] == "planned"
    assert stay.ok("A27", "W1", "202608010800", action="CANCEL")["status"] == "cancelled"

    stay = Stay(adt, http)
    stay.ok("A01", "W1", "202608010800")
    pending = stay.ok("A15", "W2", "202608020800", unit="2020")
    assert pending["status"] == "in-progress"
    assert statuses(pending) == {"W1": "active", "W2": "planned"}
    assert [p[0] for p in places(pending)] == ["W1"]
    assert statuses(stay.ok("A26", "W2", "202608020800", action="CANCEL"))["W2"] == (
        "entered-in-error"
    )
    assert statuses(stay.ok("A16", "W3", "202608030800"))["W3"] == "planned"
    done = stay.ok("A03", "W4", "202608041000")
    assert done["status"] == "finished"
    assert statuses(done) == {
        "W1": "completed",
        "W2": "entered-in-error",
        "W3": "completed",
        "W4": "completed",
    }


def test_legacy_z80_to_z89_are_read_as_the_a02_that_replaced_them(
    adt: MovementsGateway, http: httpx.Client
) -> None:
    """CP-ITI-FR-2013-079: Z80-Z89 (UF changes) became A02 with ZBE-9; an old feed that
    still sends them (ZBE-4 and ZBE-9 left empty, as before) gets the same visit."""
    stay = Stay(adt, http)
    stay.ok("A01", "L1", "202609010800")
    legacy = {"action": "", "nature": ""}
    medical = stay.ok("Z80", "L2", "202609020800", medical="2020", **legacy)
    assert statuses(medical) == {"L1": "completed", "L2": "active"}
    assert movements(medical)["L2"]["event"] == "A02"
    assert movements(medical)["L2"]["nature"] == "M"
    assert movements(medical)["L2"]["medicalUnit"]["identifier"]["value"] == "2020"
    cancelled = stay.ok("Z81", "L2", "202609020800", medical="2020", **legacy)
    assert statuses(cancelled) == {"L1": "active", "L2": "entered-in-error"}
    care = stay.ok("Z84", "L3", "202609030800", care=uf("2020"), **legacy)
    assert movements(care)["L3"]["nature"] == "S"
    pending = stay.ok("Z86", "L4", "202609040800", **legacy)
    assert statuses(pending)["L4"] == "planned"
    assert statuses(stay.ok("Z87", "L4", "202609040800", **legacy))["L4"] == "entered-in-error"
    # a ZBE-9 the sender did fill wins over the event's own nature
    both = stay.ok("Z88", "L5", "202609050800", action="INSERT", nature="LD")
    assert movements(both)["L5"]["nature"] == "LD"


# -- the worked examples of 5.3.7: historic movements --------------------------------------
BLOC_EXAMPLE = [
    ("A01", "1", "201310101800", "6000"),  # cardio
    ("A02", "2", "201310110730", "6050"),  # bloc
    ("A02", "3", "201310111130", "6055"),  # réa
    ("A02", "4", "201310111500", "6050"),  # bloc: the movement in excess
    ("A02", "5", "201310111501", "6000"),  # cardio
    ("A03", "6", "201310151100", "6000"),
]


def test_pam_fr_537_a_historic_cancel_after_the_discharge_leaves_later_movements(
    adt: MovementsGateway, http: httpx.Client
) -> None:
    """IHE PAM FR 5.3.7, "Suppression d'une erreur dans les mouvements": the A02 with
    ZBE-1 = 4 is removed after the discharge by an A12 (ZBE-1 = 4, ZBE-2 its date,
    ZBE-4 = CANCEL, ZBE-5 = Y, PV1-3 = 6055, the previous place)."""
    stay = Stay(adt, http)
    for trigger, movement, start, unit in BLOC_EXAMPLE:
        before = stay.ok(trigger, movement, start, unit=unit)
    cancel = {"action": "CANCEL", "original": "A02", "unit": "6055"}
    # not historic: movement 4 is not the last one
    status, reason = stay.send("A12", "4", "201310111500", **cancel)
    assert status == "dead"
    assert reason is not None and reason.startswith("ZBE-5: movement '4'"), reason
    assert stay.encounter()["meta"]["versionId"] == before["meta"]["versionId"]

    after = stay.ok("A12", "4", "201310111500", historic="Y", **cancel)
    assert after["status"] == "finished"
    assert places(after) == [
        ("1", "6000", "2013-10-10T18:00:00+02:00", "2013-10-11T07:30:00+02:00", "completed"),
        ("2", "6050", "2013-10-11T07:30:00+02:00", "2013-10-11T11:30:00+02:00", "completed"),
        ("3", "6055", "2013-10-11T11:30:00+02:00", "2013-10-11T15:01:00+02:00", "completed"),
        ("5", "6000", "2013-10-11T15:01:00+02:00", "2013-10-15T11:00:00+02:00", "completed"),
    ]
    assert statuses(after) == {
        **{m: "completed" for m in ("1", "2", "3", "5", "6")},
        "4": "entered-in-error",
    }
    assert after["period"] == {
        "start": "2013-10-10T18:00:00+02:00",
        "end": "2013-10-15T11:00:00+02:00",
    }


def test_pam_fr_537_a_forgotten_movement_is_inserted_in_the_history(
    adt: MovementsGateway, http: httpx.Client
) -> None:
    """IHE PAM FR 5.3.7, "Ajout d'un mouvement historique": the A02 to réa (6055) was
    forgotten; it comes after the discharge with ZBE-1 = 5, ZBE-5 = Y."""
    stay = Stay(adt, http)
    for trigger, movement, start, unit in [
        ("A01", "1", "201310101800", "6000"),
        ("A02", "2", "201310110730", "6050"),
        ("A02", "3", "201310111500", "6000"),
        ("A03", "4", "201310151100", "6000"),
    ]:
        stay.ok(trigger, movement, start, unit=unit)
    after = stay.ok("A02", "5", "201310111130", unit="6055", historic="Y")
    assert after["status"] == "finished"
    assert [(p[0], p[1], p[2], p[3]) for p in places(after)] == [
        ("1", "6000", "2013-10-10T18:00:00+02:00", "2013-10-11T07:30:00+02:00"),
        ("2", "6050", "2013-10-11T07:30:00+02:00", "2013-10-11T11:30:00+02:00"),
        ("5", "6055", "2013-10-11T11:30:00+02:00", "2013-10-11T15:00:00+02:00"),
        ("3", "6000", "2013-10-11T15:00:00+02:00", "2013-10-15T11:00:00+02:00"),
    ]


def test_pam_fr_537_a_session_not_done_is_removed(
    adt: MovementsGateway, http: httpx.Client
) -> None:
    """IHE PAM FR 5.3.7, "Suppression d'une séance non faite" (sessions without their own
    visit number): A13 (ZBE-1 = 4) and A11 (ZBE-1 = 3), both historic."""
    stay = Stay(adt, http)
    for trigger, movement, start in [
        ("A01", "1", "201310101000"),
        ("A03", "2", "201310101800"),
        ("A01", "3", "201310121000"),
        ("A03", "4", "201310121800"),
        ("A01", "5", "201310141000"),
        ("A03", "6", "201310141800"),
    ]:
        stay.ok(trigger, movement, start, unit="6100", **{"class": "R"})
    historic = {"action": "CANCEL", "historic": "Y", "unit": "6100", "class": "R"}
    stay.ok("A13", "4", "201310121800", original="A03", **historic)
    after = stay.ok("A11", "3", "201310121000", original="A01", **historic)
    assert [p[0] for p in places(after)] == ["1", "5"]
    assert statuses(after)["3"] == statuses(after)["4"] == "entered-in-error"
    assert after["status"] == "finished"
    assert after["period"] == {
        "start": "2013-10-10T10:00:00+02:00",
        "end": "2013-10-14T18:00:00+02:00",
    }


# -- corrections (Z99) ---------------------------------------------------------------------
def test_z99_corrects_a_movement_in_place(adt: MovementsGateway, http: httpx.Client) -> None:
    stay = Stay(adt, http)
    stay.ok("A01", "Z1", "202604010800", room="1")
    stay.ok("A02", "Z2", "202604021000", unit="2020", room="7")
    update = {"action": "UPDATE", "original": "A02", "historic": "N", "nature": "L"}
    # (each Z99 sent after the message it corrects: MSH-7 later)
    fixed = stay.ok(
        "Z99", "Z2", "202604020945", unit="2020", room="8", sent="202604021100", **update
    )
    assert places(fixed) == [
        ("Z1", "2010^1", "2026-04-01T08:00:00+02:00", "2026-04-02T09:45:00+02:00", "completed"),
        ("Z2", "2020^8", "2026-04-02T09:45:00+02:00", None, "active"),
    ]
    assert movements(fixed)["Z2"]["event"] == "A02"
    # a Z99 of the admission, historic: the class changes, the rest stays
    update = {"action": "UPDATE", "original": "A01", "historic": "Y", "nature": "C"}
    status = stay.ok(
        "Z99", "Z1", "202604010800", room="1", sent="202604021200", **update, **{"class": "R"}
    )
    assert movements(status)["Z1"]["patientClass"]["code"] == "R"
    assert len(places(status)) == 2
    # ZBE-6 must name the trigger that inserted the movement
    status_, reason = stay.send("Z99", "Z2", "202604020945", unit="2020", **update)
    assert status_ == "dead"
    assert reason == f"ZBE-6: movement 'Z2' of visit '{stay.visit}' was inserted by A02, not A01"


def test_an_old_z99_replayed_alone_does_not_undo_a_later_correction(
    adt: MovementsGateway, http: httpx.Client
) -> None:
    stay = Stay(adt, http)
    stay.ok("A01", "Y1", "202604010800", room="1")
    update = {"action": "UPDATE", "original": "A01", "historic": "N", "nature": "L"}
    stay.ok("Z99", "Y1", "202604010800", room="2", sent="202604011000", **update)
    latest = stay.ok("Z99", "Y1", "202604010800", room="3", sent="202604011100", **update)
    assert places(latest)[0][1] == "2010^3"
    # the operator replays the first correction alone (by its message id)
    [(first_z99,)] = rows(
        adt.conninfo,
        "SELECT id FROM hl7_message WHERE control_id = %s",
        (f"{stay.visit}-2",),
    )
    report = adt.call(adt.gateway.replay(message_id=first_z99))  # type: ignore[union-attr]
    assert report.requeued == 1
    wait_for(
        lambda: not rows(adt.conninfo, "SELECT 1 FROM hl7_message WHERE status = 'received'"),
        what="nothing waiting",
    )
    assert stay.encounter() == latest
    [(note,)] = rows(adt.conninfo, "SELECT note FROM hl7_message WHERE id = %s", (first_z99,))
    assert note is not None and "older than the last message" in note


# -- replays -------------------------------------------------------------------------------
def test_replays_change_nothing(adt: MovementsGateway, http: httpx.Client) -> None:
    stay = Stay(adt, http)
    stay.ok("A01", "R1", "202605010800")
    stay.ok("A02", "R2", "202605020800", unit="2020")
    stay.ok("A02", "R3", "202605030800", unit="2010")
    before = stay.ok("A12", "R3", "202605030800", unit="2020", action="CANCEL", original="A02")
    # every message again, in order (the operator's replay): nothing changes
    report = adt.call(adt.gateway.replay(site="CHM", statuses=("processed",)))  # type: ignore[union-attr]
    assert report.requeued == 4
    wait_for(
        lambda: not rows(adt.conninfo, "SELECT 1 FROM hl7_message WHERE status = 'received'"),
        what="nothing waiting",
    )
    assert [r[1] for r in rows(adt.conninfo)] == ["processed"] * 4
    after = stay.encounter()
    assert after["meta"]["versionId"] == before["meta"]["versionId"]
    assert after == before
    # the sender resending an insert under a new control id: nothing changes either
    assert stay.ok("A02", "R2", "202605020800", unit="2020") == before


def test_a_movements_pid_never_changes_the_identity(
    adt: MovementsGateway, http: httpx.Client
) -> None:
    """IHE PAM FR: demographic updates come only from ITI-30's A31."""
    stay = Stay(adt, http)
    before = http.get(f"/Patient/{stay.patient_id}").json()
    stay.ok("A01", "P1", "202605010800")  # its PID carries another name and birth date
    after = http.get(f"/Patient/{stay.patient_id}").json()
    assert after["meta"]["versionId"] == before["meta"]["versionId"]
    assert (after["name"], after.get("birthDate")) == (before["name"], before.get("birthDate"))


# -- data errors and unknown patients ------------------------------------------------------
def test_a_movement_for_an_unknown_visit_or_movement_fails_naming_the_field(
    adt: MovementsGateway, http: httpx.Client
) -> None:
    stay = Stay(adt, http)
    status, reason = stay.send("A02", "X1", "202606010800", unit="2020")
    assert status == "dead"  # a data error is permanent: no retries
    assert reason == (
        f"PV1-19: no visit '{stay.visit}' at site CHM: A02 needs the visit opened first "
        "(A05, A14, A01 or A04)"
    )
    assert stay.encounters() == []
    stay.ok("A01", "X2", "202606010800")
    status, reason = stay.send("A12", "X9", "202606010800", action="CANCEL", original="A02")
    assert status == "dead"
    assert reason == f"ZBE-1: no movement 'X9' of visit '{stay.visit}' to cancel (A12)"
    # a cancel of a movement another event inserted
    status, reason = stay.send("A12", "X2", "202606010800", action="CANCEL")
    assert status == "dead"
    assert reason is not None and reason.startswith("ZBE-1: movement 'X2'"), reason
    assert "was inserted by A01; A12 cancels A02" in reason
    assert stay.encounter()["meta"]["versionId"] == "1"


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"action": "MOVE"}, "ZBE-4: action 'MOVE' is not one of INSERT, UPDATE, CANCEL"),
        ({"action": "CANCEL"}, "ZBE-4: action 'CANCEL' does not go with A01 (INSERT)"),
        ({"class": "Z"}, "PV1-2: patient class 'Z' is not one of I, R, O, E, V"),
        ({"start": "20261340"}, "ZBE-2: '20261340' is not"),
        ({"movement": ""}, "ZBE-1: the movement id is empty"),
        ({"visit": ""}, "PV1-19: the visit number is empty"),
        ({"unit": ""}, "PV1-3: the hosting unit (PV1-3.1) is empty; A01 requires it"),
        ({"nature": "XY"}, "ZBE-9: nature 'XY' is not one of"),
        ({"historic": "O"}, "ZBE-5: historic indicator 'O' is not Y or N"),
    ],
)
def test_data_errors_are_answered_ae_naming_their_field(
    adt: MovementsGateway, http: httpx.Client, fields: dict[str, str], field: str
) -> None:
    """Refused before the ACK (receipt_checks), kept with the error, nothing written."""
    stay = Stay(adt, http)
    fields = dict(fields)
    movement, start = fields.pop("movement", "E1"), fields.pop("start", "202606010800")
    fields.setdefault("sent", "202606010800")  # MSH-7 (by default the movement's start)
    payload = stay.payload("A01", movement, start, **fields)
    error = refused_at_receipt(adt.port, adt.conninfo, payload, f"{stay.visit}-{stay.sent}")
    assert error.startswith(field), error
    assert stay.encounters() == []


def test_an_unknown_patient_is_retried_then_dead_lettered(
    adt: MovementsGateway, http: httpx.Client
) -> None:
    """As for ORU^R01: no Patient with PID-3's IPP yet (the identity feed may bring it):
    retried ``hl7_max_attempts`` times, then dead-lettered; nothing is written."""
    stay = Stay(adt, http, known=False)
    status, reason = stay.send("A01", "N1", "202606010800")
    assert status == "dead"
    assert reason is not None
    assert reason.startswith("dead after 3 attempts")
    assert "PID-3: no Patient carries this IPP of site CHM" in reason
    assert stay.encounters() == []


def test_a44_moves_the_account_to_another_patient(
    adt: MovementsGateway, http: httpx.Client
) -> None:
    stay = Stay(adt, http)
    first = stay.ok("A01", "A1", "202607010800")
    other = Stay(adt, http)
    fields = {"sent": "202607020800", "account": f"NDA-{stay.visit}", "prior_ipp": stay.ipp}
    payload = message("movements/adt_a44", control_id="A44-1", ipp=other.ipp, fields=fields)
    assert stay.deliver(payload, "A44-1") == ("processed", None)
    moved = stay.encounter()
    assert moved["id"] == first["id"]
    assert moved["subject"] == {"reference": f"Patient/{other.patient_id}"}
    # the visit's next movements come under the new patient
    other.visit = stay.visit
    assert other.ok("A02", "A2", "202607030800", unit="2020")["status"] == "in-progress"


def test_the_movements_stored_in_the_encounter_read_back_as_they_were() -> None:
    """Pure: every field of a movement survives the Encounter (what replays compare)."""
    site = next(found for found in demo_senders() if found.code == "CHM")
    fields = {
        "trigger": "A02",
        "sent": "202609011000",
        "account": "NDA-9",
        "class": "I",
        "location": "2020^12^B",
        "attending": "10003^Rivière^Zoé^^^^^^RPPS&1.2.250.1.71.4.2.1&ISO",
        "visit": "V-9",
        "admitted": "202609010800",
        "discharged": "",
        "movement": "M-9",
        "start": "202609011000",
        "action": "INSERT",
        "historic": "N",
        "original": "",
        "medical": uf("2020"),
        "care": uf("2010"),
        "nature": "MH",
    }
    raw = message("movements/adt_movement", control_id="P-9", ipp="91", fields=fields)
    read = read_movement(parsing.parse(raw.decode("iso-8859-15")), "A02", site)
    movement = read.movement
    assert movement.attending is not None
    assert movement.attending.system == "urn:oid:1.2.250.1.71.4.2.1"
    assert movement.attending.display == "Zoé Rivière"
    assert (movement.room, movement.bed, movement.nature) == ("12", "B", "MH")
    assert movement.admitted == "2026-09-01T08:00:00+02:00"
    assert movement.care is not None and movement.care.value == "2010"
    built = encounter([movement], visit="V-9", account="NDA-9", subject="Patient/p", site=site)
    assert movements_of(built) == [movement]
    assert built["location"][0]["location"]["display"] == "UF 2020, chambre 12, lit B"
