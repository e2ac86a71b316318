"""The IHE PAM FR identity feed end to end: A28, A31, A47, A40, A24, A37 over a real MLLP socket to
the gateway, written through the FHIR store with the patient index's write hook, read
back over HTTP from the running hub (index on). Every identity is synthetic, except the
worked examples of IHE PAM FR 2.11.2 4.4 (themselves fictional), sent as printed."""

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
from maillage.hl7v2.identity_mapping import source_identity
from maillage.identity.model import default_model
from maillage.mpi.index import PatientIndex
from maillage.security import AllowAll
from maillage.storage import Database
from tests.factories import synthetic_nir
from tests.hl7v2.conftest import (
    MllpConnection,
    RunningGateway,
    ack_code,
    refused_at_receipt,
    rows,
    wait_for,
)
from tests.hl7v2.messages import message

CHM, CHA = site_by_code("CHM"), site_by_code("CHA")
BIRTH_PLACE = "http://hl7.org/fhir/StructureDefinition/patient-birthPlace"
INSEE_CODE = "https://hl7.fr/ig/fhir/core/StructureDefinition/fr-core-address-insee-code"
RELIABILITY = "https://hl7.fr/ig/fhir/core/StructureDefinition/fr-core-identity-reliability"
NIR, NIA = "urn:oid:1.2.250.1.213.1.4.8", "urn:oid:1.2.250.1.213.1.4.9"
TEST_NIR_OID = "1.2.250.1.213.1.4.10"
V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"
DONE = ("processed", "ignored", "dead")
QUALIFIED_INS = f"~{synthetic_nir('2610799100123')}^^^INS-NIR-TEST&{TEST_NIR_OID}&ISO^INS"


class IdentityGateway(RunningGateway):
    """The gateway as the hub builds it: ``build_gateway`` given a FHIR store whose
    Patient writes go through the patient index."""

    def fhir_store(self, database: Database) -> FhirStore:
        index = PatientIndex(default_model())
        return FhirStore(database, AllowAll(), SearchEngine(), write_hooks={"Patient": index})


@pytest.fixture
def http(indexed_http: httpx.Client) -> httpx.Client:
    return indexed_http


@pytest.fixture
def feed(hl7_database: str, http: httpx.Client) -> Iterator[IdentityGateway]:
    # ``http`` first: the FHIR and index tables are emptied before the gateway writes.
    running = IdentityGateway(hl7_database).start()
    try:
        yield running
    finally:
        running.stop()


def _ipp() -> str:
    return f"8{uuid.uuid4().int % 10**7:07d}"


def _identity(control_id: str, ipp: str, *, site: str = "CHM", **fields: str) -> bytes:
    """ADT^A28 (``trigger``: another ITI-30 event) from ``adt_identity.hl7``."""
    values = {
        "trigger": "A28",
        "ins": "",
        "used_name": "",
        "first_names": "Anaïs Perrine",
        "prefix": "Mme",
        "birth_date": "19610714",
        "sex": "F",
        "address": "3 rue des Essais^Bâtiment B^Maillebourg^^99100^FRA^H",
        "birth_city": "Ardenval",
        "birthplace": "99100",
        "phone": "0199000001^PRN^PH",
        "death_date": "",
        "death": "",
        "reliability": "PROV",
        **fields,
    }
    return message(
        "adt_identity",
        control_id=control_id,
        ipp=ipp,
        site=site,
        family="Quenouillé",
        given="Anaïs",
        fields=values,
    )


def _send(feed: IdentityGateway, payload: bytes, control_id: str) -> tuple[str, str | None, Any]:
    """Send one message, wait until processed, ignored or dead: (status, error, note)."""
    with MllpConnection(feed.port) as client:
        assert ack_code(client.exchange(payload)) == "AA"
    query = "SELECT status, error, note FROM hl7_message WHERE control_id = %s ORDER BY id DESC"

    def done() -> bool:
        found = rows(feed.conninfo, query, (control_id,))
        return bool(found) and found[0][0] in DONE

    wait_for(done, what=f"message {control_id} processed")
    status, error, note = rows(feed.conninfo, query, (control_id,))[0]
    return str(status), error, note


def _by_ipp(http: httpx.Client, ipp: str, site: Any = CHM) -> list[dict[str, Any]]:
    response = http.get("/Patient", params={"identifier": f"{site.ipp_system}|{ipp}"})
    assert response.status_code == 200, response.text
    return [entry["resource"] for entry in response.json().get("entry", [])]


def _one(http: httpx.Client, ipp: str, site: Any = CHM) -> dict[str, Any]:
    found = _by_ipp(http, ipp, site)
    assert len(found) == 1, found
    return found[0]


def _status(patient: dict[str, Any]) -> str:
    [extension] = [e for e in patient["extension"] if e["url"] == RELIABILITY]
    return str(extension["extension"][0]["valueCoding"]["code"])


def _territorial(patient: dict[str, Any]) -> str:
    [refer] = [link for link in patient.get("link", []) if link["type"] == "refer"]
    return str(refer["other"]["reference"])


def _ins(patient: dict[str, Any]) -> list[tuple[str, str]]:
    return [
        (i["system"], i["value"])
        for i in patient.get("identifier", [])
        if i["system"].startswith("urn:oid:1.2.250.1.213.1.4.")
    ]


def test_an_a28_creates_the_source_identity_in_the_fr_core_shape(
    feed: IdentityGateway, http: httpx.Client
) -> None:
    ipp = _ipp()
    used = {"used_name": "Dupont-Lagarde^Anaïs^^^^^D~"}
    assert _send(feed, _identity("ID-A1", ipp, **used), "ID-A1") == ("processed", None, None)

    patient = _one(http, ipp)
    assert patient["identifier"] == [
        {
            "use": "usual",
            "type": {
                "coding": [
                    {"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "PI"}
                ]
            },
            "system": CHM.ipp_system,
            "value": ipp,
        }
    ]
    official, usual = patient["name"]
    assert official == {
        "use": "official",
        "family": "Quenouillé",
        "given": ["Anaïs", "Perrine"],
        "prefix": ["Mme"],
    }
    assert usual == {"use": "usual", "family": "Dupont-Lagarde", "given": ["Anaïs"]}
    assert patient["gender"] == "female"
    assert patient["birthDate"] == "1961-07-14"
    [birthplace] = [e for e in patient["extension"] if e["url"] == BIRTH_PLACE]
    assert birthplace["valueAddress"] == {
        "extension": [{"url": INSEE_CODE, "valueCoding": {"code": "99100"}}],
        "city": "Ardenval",
        "country": "FRA",
    }
    assert _status(patient) == "PROV"
    assert patient["address"] == [
        {
            "use": "home",
            "line": ["3 rue des Essais", "Bâtiment B"],
            "city": "Maillebourg",
            "postalCode": "99100",
            "country": "FRA",
        }
    ]
    assert patient["telecom"] == [{"system": "phone", "value": "0199000001", "use": "home"}]
    assert "deceasedBoolean" not in patient
    assert _territorial(patient).startswith("Patient/")  # matched online by the index

    # the same identity again (a resend under another control id): nothing new
    assert _send(feed, _identity("ID-A2", ipp, **used), "ID-A2") == ("processed", None, None)
    again = _one(http, ipp)
    assert again["id"] == patient["id"] and again["meta"]["versionId"] == "1"


def test_the_same_person_at_two_sites_gets_one_territorial_identity(
    feed: IdentityGateway, http: httpx.Client
) -> None:
    first, second = _ipp(), _ipp()
    assert _send(feed, _identity("ID-B1", first), "ID-B1")[0] == "processed"
    other_site = _identity("ID-B2", second, site="CHA", address="", phone="")
    assert _send(feed, other_site, "ID-B2")[0] == "processed"

    at_chm, at_cha = _one(http, first), _one(http, second, CHA)
    assert at_chm["id"] != at_cha["id"]
    assert _territorial(at_chm) == _territorial(at_cha)
    golden = http.get(f"/{_territorial(at_chm)}").json()
    assert sorted(link["other"]["reference"] for link in golden["link"]) == sorted(
        [f"Patient/{at_chm['id']}", f"Patient/{at_cha['id']}"]
    )


def test_an_a31_updates_the_identity(feed: IdentityGateway, http: httpx.Client) -> None:
    ipp = _ipp()
    used = {"used_name": "Dupont^Anaïs^^^^^D~"}
    assert _send(feed, _identity("ID-C1", ipp, **used), "ID-C1")[0] == "processed"
    created = _one(http, ipp)

    moved = {
        "trigger": "A31",
        "used_name": '""^Anaïs^^^^^D~',  # divorce: no used name any more (6.6.2)
        "address": "12 avenue du Test^^Lormecourt^^99300^FRA^H",
        "death": "N",
    }
    assert _send(feed, _identity("ID-C2", ipp, **moved), "ID-C2")[0] == "processed"
    updated = _one(http, ipp)
    assert updated["id"] == created["id"]
    assert updated["meta"]["versionId"] == "2"
    assert [name.get("family") for name in updated["name"]] == ["Quenouillé", None]
    assert updated["address"][0]["city"] == "Lormecourt"
    assert updated["deceasedBoolean"] is False
    assert _territorial(updated) == _territorial(created)


def test_an_ins_is_stored_only_when_pid32_says_vali(
    feed: IdentityGateway, http: httpx.Client
) -> None:
    ipp, nir = _ipp(), synthetic_nir("2610799100123")
    ins = f"~{nir}^^^ASIP-SANTE-INS-NIR-TEST&{TEST_NIR_OID}&ISO^INS"
    status, error, note = _send(feed, _identity("ID-D1", ipp, ins=ins), "ID-D1")
    assert (status, error) == ("processed", None)
    assert note == "PID-3: the INS is not kept: PID-32 does not say VALI (IHE PAM FR 6.6.15)"
    provisional = _one(http, ipp)
    assert _ins(provisional) == [] and _status(provisional) == "PROV"

    qualified = _identity("ID-D2", ipp, trigger="A31", ins=ins, reliability="VALI")
    assert _send(feed, qualified, "ID-D2") == ("processed", None, None)
    patient = _one(http, ipp)
    assert _ins(patient) == [(f"urn:oid:{TEST_NIR_OID}", nir)]
    assert _status(patient) == "QUAL"  # VALI with an INS: qualified by the sender (6.6.1)

    other = _ipp()
    validated = _identity("ID-D3", other, reliability="VALI")  # VALI, no INS: validated
    assert _send(feed, validated, "ID-D3")[0] == "processed"
    assert _status(_one(http, other)) == "VALI"


def test_an_a47_changes_the_ipp_and_its_replay_is_harmless(
    feed: IdentityGateway, http: httpx.Client
) -> None:
    old, new = _ipp(), _ipp()
    assert _send(feed, _identity("ID-E1", old), "ID-E1")[0] == "processed"
    before = _one(http, old)
    mrg = f"{old}^^^{CHM.sending_facility}&{CHM.ipp_oid}&ISO^PI"
    fields = {"mrg": mrg, "ins": "", "reliability": "PROV"}
    a47 = message("adt_a47", control_id="ID-E2", ipp=new, fields=fields)
    assert _send(feed, a47, "ID-E2") == ("processed", None, None)

    assert _by_ipp(http, old) == []
    after = _one(http, new)
    assert after["id"] == before["id"]
    assert after["name"] == before["name"]  # A47 changes identifiers only

    replay = message("adt_a47", control_id="ID-E3", ipp=new, fields=fields)
    status, error, note = _send(feed, replay, "ID-E3")
    assert (status, error) == ("processed", None)
    assert "already replaced" in note
    assert _one(http, new)["meta"]["versionId"] == after["meta"]["versionId"]


def test_an_a40_merges_and_its_replay_is_harmless(
    feed: IdentityGateway, http: httpx.Client
) -> None:
    survivor_ipp, absorbed_ipp = _ipp(), _ipp()
    assert _send(feed, _identity("ID-F1", survivor_ipp), "ID-F1")[0] == "processed"
    duplicate = _identity("ID-F2", absorbed_ipp, birth_date="19610715", first_names="")
    assert _send(feed, duplicate, "ID-F2")[0] == "processed"
    survivor, absorbed = _one(http, survivor_ipp), _one(http, absorbed_ipp)
    record = http.post(
        "/Observation",
        json={
            "resourceType": "Observation",
            "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
            "subject": {"reference": f"Patient/{absorbed['id']}"},
        },
    )
    assert record.status_code == 201, record.text

    fields = {"absorbed": absorbed_ipp}
    a40 = message("adt_a40", control_id="ID-F3", ipp=survivor_ipp, fields=fields)
    assert _send(feed, a40, "ID-F3") == ("processed", None, None)
    retired = _one(http, absorbed_ipp)
    assert retired["active"] is False
    assert {"other": {"reference": f"Patient/{survivor['id']}"}, "type": "replaced-by"} in (
        retired["link"]
    )
    moved = http.get(f"/Observation/{record.json()['id']}").json()
    assert moved["subject"] == {"reference": f"Patient/{survivor['id']}"}
    merges = rows(feed.conninfo, "SELECT who, reason FROM mpi_merge")
    assert merges == [("hl7:CHM", "A40 ID-F3")]

    replay = message("adt_a40", control_id="ID-F4", ipp=survivor_ipp, fields=fields)
    status, error, note = _send(feed, replay, "ID-F4")
    assert (status, error) == ("processed", None)
    assert note == f"Patient/{absorbed['id']} is already merged into Patient/{survivor['id']}"
    assert len(rows(feed.conninfo, "SELECT id FROM mpi_merge")) == 1
    # an A31 of the absorbed IPP afterwards keeps it retired
    late = _identity("ID-F5", absorbed_ipp, trigger="A31", first_names="")
    assert _send(feed, late, "ID-F5")[0] == "processed"
    assert _one(http, absorbed_ipp)["active"] is False


def _link(control_id: str, first: str, second: str, trigger: str = "A24") -> bytes:
    structure = {"A24": "ADT_A24", "A37": "ADT_A37"}[trigger]
    fields = {"trigger": trigger, "structure": structure, "other": second}
    return message("adt_a24", control_id=control_id, ipp=first, fields=fields)


def test_an_a24_links_two_identities_and_an_a37_unlinks_them_for_good(
    feed: IdentityGateway, http: httpx.Client
) -> None:
    first_ipp, second_ipp = _ipp(), _ipp()
    assert _send(feed, _identity("ID-L1", first_ipp), "ID-L1")[0] == "processed"
    other = _identity("ID-L2", second_ipp, birth_date="19750102", first_names="Brigitte")
    assert _send(feed, other, "ID-L2")[0] == "processed"
    first, second = _one(http, first_ipp), _one(http, second_ipp)
    assert _territorial(first) != _territorial(second)  # the machine kept them apart

    assert _send(feed, _link("ID-L3", first_ipp, second_ipp), "ID-L3") == (
        "processed", None, None,
    )  # fmt: skip
    assert _territorial(_one(http, second_ipp)) == _territorial(first)
    decisions = rows(
        feed.conninfo,
        "SELECT who, action, reason FROM mpi_event WHERE patient_id = %s"
        " AND action IN ('link-verified', 'unlinked') ORDER BY id",
        (second["id"],),
    )
    assert decisions == [("hl7:CHM", "link-verified", "A24 ID-L3")]
    replay = _send(feed, _link("ID-L4", first_ipp, second_ipp), "ID-L4")
    assert replay == ("processed", None, "the two identities were already linked (verified)")

    a37 = _link("ID-L5", first_ipp, second_ipp, trigger="A37")
    assert _send(feed, a37, "ID-L5") == ("processed", None, None)
    assert _territorial(_one(http, second_ipp)) != _territorial(_one(http, first_ipp))
    assert ("hl7:CHM", "unlinked", "A37 ID-L5") in rows(
        feed.conninfo, "SELECT who, action, reason FROM mpi_event WHERE patient_id = %s",
        (second["id"],),
    )  # fmt: skip
    # the machine does not link them back on the next update
    again = _identity("ID-L6", second_ipp, trigger="A31", birth_date="19750102",
                      first_names="Brigitte")  # fmt: skip
    assert _send(feed, again, "ID-L6")[0] == "processed"
    assert _territorial(_one(http, second_ipp)) != _territorial(_one(http, first_ipp))
    unlinked = _send(feed, _link("ID-L7", first_ipp, second_ipp, trigger="A37"), "ID-L7")
    assert unlinked == ("processed", None, "the two identities were not linked: nothing to unlink")


def test_an_a24_naming_an_unknown_identity_is_dead_lettered_naming_the_pid(
    feed: IdentityGateway, http: httpx.Client
) -> None:
    known = _ipp()
    assert _send(feed, _identity("ID-M1", known), "ID-M1")[0] == "processed"
    status, error, _ = _send(feed, _link("ID-M2", known, _ipp()), "ID-M2")
    assert status == "dead"
    assert error is not None and "PID-3 (second PID): no Patient carries this IPP" in error


def test_an_unknown_mrg1_ipp_is_dead_lettered_naming_the_field(
    feed: IdentityGateway, http: httpx.Client
) -> None:
    survivor_ipp = _ipp()
    assert _send(feed, _identity("ID-G1", survivor_ipp), "ID-G1")[0] == "processed"
    a40 = message("adt_a40", control_id="ID-G2", ipp=survivor_ipp, fields={"absorbed": _ipp()})
    status, error, _ = _send(feed, a40, "ID-G2")
    assert status == "dead"  # retried (its A28 may be late), then dead-lettered
    assert error is not None and "MRG-1: no Patient carries this IPP of site CHM" in error


def test_the_worked_examples_of_pam_fr_4_4(feed: IdentityGateway, http: httpx.Client) -> None:
    """4.4.1 (A31: NIA and NIR sent, the NIR kept), 4.4.2 (A47: the printed new NIR has a
    wrong control key: refused), 4.4.4 (A47: qualified → provisional, INS removed). Only
    the sender (MSH-4) and the IPP's assigning authority are the demo site's."""
    ipp = "1900068"
    a31 = message("pam_fr_441_a31", control_id="PAM-441", ipp=ipp, charset="UNICODE UTF-8")
    status, error, note = _send(feed, a31, "PAM-441")
    assert (status, error) == ("processed", None)
    assert note == "A31 for an IPP the hub did not know: the identity was created"
    patient = _one(http, ipp)
    assert _ins(patient) == [(NIR, "260058815400233")]
    assert _status(patient) == "QUAL"
    assert patient["name"] == [
        {
            "use": "official",
            "family": "DARK",
            "given": ["JEANNE", "MARIE", "CECILE"],
            "prefix": ["Mme"],
        },
        {"use": "usual", "given": ["MARIE-CECILE"]},
    ]
    assert patient["birthDate"] == "1960-05-30" and patient["gender"] == "female"
    [birthplace] = [e for e in patient["extension"] if e["url"] == BIRTH_PLACE]
    assert birthplace["valueAddress"]["extension"][0]["valueCoding"]["code"] == "88154"
    assert patient["deceasedBoolean"] is False

    a47 = message("pam_fr_442_a47", control_id="PAM-442", ipp=ipp, charset="UNICODE UTF-8")
    status, error, _ = _send(feed, a47, "PAM-442")
    assert status == "dead"
    assert error is not None and error.startswith(
        "PID-3: the INS (NIR) is invalid: the control key"
    )
    assert _ins(_one(http, ipp)) == [(NIR, "260058815400233")]

    downgrade = message("pam_fr_444_a47", control_id="PAM-444", ipp=ipp, charset="UNICODE UTF-8")
    assert _send(feed, downgrade, "PAM-444") == ("processed", None, None)
    after = _one(http, ipp)
    assert _ins(after) == [] and _status(after) == "PROV"
    assert after["id"] == patient["id"]


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"birth_date": "2999"}, "PID-7: the birth date is in the future"),
        ({"used_name": "Dupont^Anaïs^^^^^Z~"}, "PID-5 repetition 1: name type (XPN-7) 'Z'"),
        ({"birthplace": "9910"}, "PID-11 repetition 2 (BDL): XAD-9 is not a 5-character"),
        (
            {"ins": QUALIFIED_INS, "reliability": "VALI", "birth_date": ""},
            "PID-7: required with an INS (IHE PAM FR 6.6.4)",
        ),
        (
            {
                "ins": f"~261079910012300^^^INS-NIR-TEST&{TEST_NIR_OID}&ISO^INS",
                "reliability": "VALI",
            },
            "PID-3: the INS (NIR-TEST) is invalid: the control key",
        ),
    ],
)
def test_malformed_pid_fields_are_dead_lettered_naming_the_field(
    feed: IdentityGateway, http: httpx.Client, fields: dict[str, str], reason: str
) -> None:
    ipp = _ipp()
    status, error, _ = _send(feed, _identity("ID-H1", ipp, **fields), "ID-H1")
    assert status == "dead"
    assert error is not None and error.startswith(reason), error
    query = "SELECT attempts FROM hl7_message WHERE control_id = 'ID-H1'"
    assert rows(feed.conninfo, query) == [(1,)]  # a data error: no retries
    assert _by_ipp(http, ipp) == []


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"birth_date": "19611332"}, "PID-7: '19611332' is not a valid date/time"),
        ({"sex": "X"}, "PID-8: administrative sex 'X' is not one of F, M, U"),
        ({"death": "P"}, "PID-30: death indicator 'P' is not Y or N"),
    ],
)
def test_malformed_pid_fields_are_answered_ae_naming_the_field(
    feed: IdentityGateway, http: httpx.Client, fields: dict[str, str], reason: str
) -> None:
    """What needs neither the store nor the clock is refused before the ACK."""
    ipp = _ipp()
    payload = _identity("ID-H2", ipp, **fields)
    error = refused_at_receipt(feed.port, feed.conninfo, payload, "ID-H2")
    assert error.startswith(reason), error
    assert _by_ipp(http, ipp) == []


def test_a_pid3_without_the_sites_ipp_is_dead_lettered(
    feed: IdentityGateway, http: httpx.Client
) -> None:
    foreign = _identity("ID-I1", "IGNORED").replace(
        f"IGNORED^^^{CHM.sending_facility}&{CHM.ipp_oid}&ISO^PI".encode(),
        b"77001^^^ELSEWHERE&1.2.250.1.999.9&ISO^NH",
    )
    status, error, _ = _send(feed, foreign, "ID-I1")
    assert status == "dead"
    assert error == f"PID-3: no IPP of site CHM ({CHM.ipp_system})"


# -- the mapping alone (pure) ------------------------------------------------------------------
def _mapped(**fields: str) -> dict[str, Any]:
    raw = _identity("PURE-1", "4242", **fields).decode("iso-8859-15")
    [site] = [site for site in demo_senders() if site.code == "CHM"]
    return source_identity(parsing.parse(raw), site).patient


def test_the_mapping_reads_pseudonyms_deaths_emails_mailing_addresses_and_an_nia() -> None:
    nia = synthetic_nir("3610799100123")
    patient = _mapped(
        used_name="Comète^Lune^^^^^S~",
        death_date="20260110083000",
        death="Y",
        phone="^NET^Internet^anais@example.invalid~0699000002^PRN^CP",
        address="BP 12^^Maillebourg^^99100^FRA^M",
        ins=f"~{nia}^^^ASIP-SANTE-INS-NIA&1.2.250.1.213.1.4.9&ISO^INS",
        reliability="VALI~HOMA",
    )
    assert patient["name"][1] == {"use": "anonymous", "family": "Comète", "given": ["Lune"]}
    assert patient["deceasedDateTime"] == "2026-01-10T08:30:00+01:00"
    assert patient["telecom"] == [
        {"system": "email", "value": "anais@example.invalid", "use": "home"},
        {"system": "phone", "value": "0699000002", "use": "mobile"},
    ]
    assert patient["address"] == [
        {
            "use": "home",
            "type": "postal",
            "line": ["BP 12"],
            "city": "Maillebourg",
            "postalCode": "99100",
            "country": "FRA",
        }
    ]
    assert _ins(patient) == [(NIA, nia)]
    assert _status(patient) == "QUAL"  # VALI among the repetitions, HOMA an attribute


def test_a_corrected_birth_date_keeps_the_ins_out() -> None:
    """6.6.4: a birth date corrected to be complete (ZFD-4 = Y) goes without the INS."""
    raw = _identity("PURE-2", "4243", ins=QUALIFIED_INS, reliability="VALI")
    text = raw.decode("iso-8859-15") + "ZFD||||Y\r"
    [site] = [site for site in demo_senders() if site.code == "CHM"]
    mapped = source_identity(parsing.parse(text), site)
    assert _ins(mapped.patient) == [] and _status(mapped.patient) == "VALI"
    assert mapped.notes == [
        "PID-3: the INS is not kept: the birth date was corrected (ZFD-4, IHE PAM FR 6.6.4)"
    ]
