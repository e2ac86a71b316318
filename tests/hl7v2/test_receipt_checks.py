"""Fields checked before the ACK: a message processing would refuse is answered AE with
the field and why (HL7 table 0357), not AA then a dead letter. Pure: no I/O."""

from __future__ import annotations

import pytest

from maillage.demo.senders import demo_senders
from maillage.hl7v2.intake import Accepted, Rejected, analyze
from maillage.hl7v2.sites import SiteRegistry
from tests.hl7v2.messages import message

SITES = SiteRegistry(demo_senders())
MOVEMENT = {
    "trigger": "A01",
    "sent": "202605010800",
    "account": "NDA-1",
    "class": "I",
    "location": "2010",
    "attending": "10001^Lenoir^Agathe",
    "visit": "V0001",
    "admitted": "",
    "discharged": "",
    "movement": "M1",
    "start": "202605010800",
    "action": "INSERT",
    "historic": "N",
    "original": "",
    "medical": "2010",
    "care": "",
    "nature": "",
}
RESULTS = {
    "order": "4711",
    "visit": "V0001",
    "report_status": "F",
    "nm_value": "2.10",
    "nm_status": "F",
    "extra_obx": "",
}


_IDENTITY = {
    "ins": "",
    "used_name": "",
    "first_names": "Anaïs",
    "prefix": "Mme",
    "birth_date": "19610714",
    "sex": "F",
    "address": "3 rue des Essais^^Maillebourg^^99100^FRA^H",
    "birth_city": "Ardenval",
    "birthplace": "99100",
    "phone": "0199000001^PRN^PH",
    "death_date": "",
    "death": "",
    "reliability": "PROV",
}


def _identity(**changes: str) -> bytes:
    return message("adt_identity", fields={"trigger": "A28", **_IDENTITY, **changes})


def _movement(**changes: str) -> bytes:
    return message("movements/adt_movement", fields={**MOVEMENT, **changes})


def _results(**changes: str) -> bytes:
    return message("oru_r01_lab", fields={**RESULTS, **changes})


def _refused(raw: bytes) -> tuple[str, str, int, str]:
    found = analyze(raw, SITES)
    assert isinstance(found, Rejected), found
    return found.ack_code, str(found.error.location), found.error.code, found.error.text


def test_well_formed_messages_are_accepted() -> None:
    for raw in (
        _movement(),
        _movement(trigger="Z99", action="UPDATE", original="A01", nature="L"),
        _movement(trigger="A12", action="CANCEL", original="A02", historic="Y"),
        _results(),
        message("adt_a28"),
        _identity(),
        message("adt_a40", fields={"absorbed": "IPP2002"}),
        message("adt_a08"),  # not processed (ignored with its reason): not checked
    ):
        assert isinstance(analyze(raw, SITES), Accepted)


@pytest.mark.parametrize(
    ("raw", "where", "code", "says"),
    [
        (_movement(visit=""), "PV1-19", 101, "the visit number is empty"),
        (_movement(**{"class": "Q"}), "PV1-2", 103, "patient class 'Q'"),
        (_movement(start="2026-05-01"), "ZBE-2", 102, "not an HL7 date/time"),
        (_movement(start="20260231"), "ZBE-2", 102, "not a valid date/time"),
        (_movement(movement=""), "ZBE-1", 101, "the movement id is empty"),
        (_movement(action="CANCEL"), "ZBE-4", 103, "does not go with A01"),
        (_movement(historic="X"), "ZBE-5", 103, "historic indicator 'X'"),
        (_movement(nature="Q"), "ZBE-9", 103, "nature 'Q'"),
        (_movement(discharged="tomorrow"), "PV1-45", 102, "PV1-45"),
        (_movement(sent="yesterday"), "MSH-7", 102, "MSH-7"),
        (
            _movement(trigger="Z99", action="UPDATE", original=""),
            "ZBE-6", 101, "original trigger event",
        ),
        (_results(nm_value="high"), "OBX-5", 102, "'high' is not a number"),
        (_results(nm_status="Z"), "OBX-11", 103, "result status 'Z'"),
        (_results(report_status=""), "OBR-25", 101, "result status '' is not one of"),
        (
            _results(extra_obx="OBX|4|XX|X1^Other^L||1||||||F"),
            "OBX-2", 103, "value type 'XX' is not handled",
        ),
        (_identity(sex="X"), "PID-8", 103, "administrative sex 'X'"),
        (_identity(trigger="A31", birth_date="1961-07-14"), "PID-7", 102, "not an HL7 date"),
    ],
)  # fmt: skip
def test_a_wrong_field_is_answered_ae_naming_it(
    raw: bytes, where: str, code: int, says: str
) -> None:
    ack, location, found_code, text = _refused(raw)
    assert (ack, location, found_code) == ("AE", where, code)
    assert says in text


def test_missing_segments_are_named() -> None:
    no_zbe = _movement().replace(b"\rZBE|", b"\rZZZ|")
    assert _refused(no_zbe)[:3] == ("AE", "ZBE", 100)
    no_obr = _results().replace(b"\rOBR|", b"\rZZZ|")
    assert _refused(no_obr)[:3] == ("AE", "OBR", 100)
    no_mrg = message("adt_a40", fields={"absorbed": "IPP2002"}).replace(b"\rMRG|", b"\rZZZ|")
    assert _refused(no_mrg)[:3] == ("AE", "MRG", 100)
    one_pid = message(
        "adt_a24", fields={"trigger": "A24", "structure": "ADT_A24", "other": "IPP2"}
    ).replace(b"\rPID|2|", b"\rZZZ|2|")
    assert _refused(one_pid)[:3] == ("AE", "PID", 100)
