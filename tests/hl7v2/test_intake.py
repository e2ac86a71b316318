"""What a received message is (accepted, or rejected with which field and why), read
from the bytes: character sets, senders, required MSH fields. No I/O."""

from __future__ import annotations

import dataclasses

import hl7
import pytest

from maillage.demo.senders import demo_senders
from maillage.errors import ConfigurationError
from maillage.hl7v2 import parsing
from maillage.hl7v2.acks import build_ack
from maillage.hl7v2.charset import declared_charset
from maillage.hl7v2.intake import Accepted, Rejected, analyze
from maillage.hl7v2.sites import SiteRegistry
from tests.hl7v2.messages import FAMILY, message

SITES = SiteRegistry(demo_senders())


def test_an_8859_15_message_is_read_as_msh_18_says() -> None:
    raw = message(charset="8859/15")
    assert "é".encode("iso-8859-15") in raw
    assert declared_charset(raw) == "8859/15"
    intake = analyze(raw, SITES)
    assert isinstance(intake, Accepted)
    assert intake.codec == "iso-8859-15"
    assert intake.site.code == "CHM" and intake.patient_key == "CHM:IPP1001"
    assert intake.message_type == "ADT" and intake.trigger_event == "A28"
    parsed = parsing.parse(raw.decode(intake.codec))
    assert parsing.value(parsed, "PID", 5, 1) == FAMILY


def test_a_utf8_message_and_a_message_without_msh_18() -> None:
    intake = analyze(message(charset="UNICODE UTF-8"), SITES)
    assert isinstance(intake, Accepted) and intake.codec == "utf-8"
    # no MSH-18: the site's default (8859/15 for the demo sites)
    raw = message(charset="").replace(b"|FRA||FR|", b"|FRA||FR|")
    assert declared_charset(raw) is None
    intake = analyze(raw, SITES)
    assert isinstance(intake, Accepted) and intake.codec == "iso-8859-15"


def test_bytes_that_are_not_valid_in_the_declared_charset_get_ae_on_msh_18() -> None:
    raw = message(charset="UNICODE UTF-8").replace("é".encode(), b"\xe9")
    intake = analyze(raw, SITES)
    assert isinstance(intake, Rejected)
    assert intake.ack_code == "AE" and intake.error.code == 102
    assert str(intake.error.location) == "MSH-18"
    assert intake.control_id == "MSG00001"


def test_an_unknown_charset_is_rejected() -> None:
    intake = analyze(message(charset="UNICODE UTF-8").replace(b"UNICODE UTF-8", b"EBCDIC"), SITES)
    assert isinstance(intake, Rejected) and intake.ack_code == "AR"
    assert intake.error.code == 103 and str(intake.error.location) == "MSH-18"


@pytest.mark.parametrize(
    ("raw", "code", "ack", "where"),
    [
        (b"", 100, "AR", "MSH"),
        (b"PID|1||123\r", 100, "AR", "MSH"),
        (b"MSH", 100, "AR", "MSH"),
        (b"MSH|^~|&|GAM|CH_MAILLEBOURG|", 102, "AR", "MSH-2"),
        (b"MSHA^~\\&A", 102, "AR", "MSH-2"),
        (b"MSH|^~\\&|GAM|CH_NOWHERE|||20260101||ADT^A28|1|P|2.5\r", 103, "AR", "MSH-4"),
        (b"MSH|^~\\&|GAM|CH_MAILLEBOURG|||20260101||ADT^A28||P|2.5\r", 101, "AE", "MSH-10"),
        (b"MSH|^~\\&|GAM|CH_MAILLEBOURG|||20260101|||42|P|2.5\r", 101, "AE", "MSH-9.1"),
        (b"MSH|^~\\&|GAM|CH_MAILLEBOURG|||20260101||ADT|42|P|2.5\r", 101, "AE", "MSH-9.2"),
    ],
)
def test_rejections_say_which_field_and_why(raw: bytes, code: int, ack: str, where: str) -> None:
    intake = analyze(raw, SITES)
    assert isinstance(intake, Rejected)
    assert (intake.error.code, intake.ack_code, str(intake.error.location)) == (code, ack, where)


def test_a_site_port_accepts_only_its_site() -> None:
    assert isinstance(analyze(message(site="CHM"), SITES, port_site="CHM"), Accepted)
    refused = analyze(message(site="CHA"), SITES, port_site="CHM")
    assert isinstance(refused, Rejected) and refused.error.code == 103


def test_the_ipp_is_the_site_s_identifier_even_when_not_first() -> None:
    raw = message().replace(
        b"PID|1||IPP1001",
        b"PID|1||260058815400233^^^ASIP-SANTE-INS-NIR&1.2.250.1.213.1.4.8&ISO^INS~IPP1001",
    )
    intake = analyze(raw, SITES)
    assert isinstance(intake, Accepted) and intake.patient_key == "CHM:IPP1001"


def test_the_idempotency_key_cannot_be_spelled_by_another_sender() -> None:
    first = analyze(message(application="A", control_id="B:C"), SITES)
    second = analyze(message(application="A:B", control_id="C"), SITES)
    assert isinstance(first, Accepted) and isinstance(second, Accepted)
    assert first.idempotency_key != second.idempotency_key


def test_the_err_segment_says_where_what_and_how_bad() -> None:
    intake = analyze(b"MSH|^~\\&|GAM|CH_MAILLEBOURG|||20260101||ADT^A28||P|2.5\r", SITES)
    assert isinstance(intake, Rejected)
    ack = hl7.parse(build_ack(intake.ack_code, intake.ack, intake.error))
    assert str(ack.extract_field("MSA", 1, 1)) == "AE"
    assert str(ack.extract_field("MSH", 1, 5)) == "GAM"
    assert str(ack.extract_field("MSH", 1, 9, 1, 1)) == "ACK"
    assert str(ack.extract_field("ERR", 1, 2, 1, 1)) == "MSH"
    assert str(ack.extract_field("ERR", 1, 2, 1, 3)) == "10"
    assert str(ack.extract_field("ERR", 1, 3, 1, 1)) == "101"
    assert str(ack.extract_field("ERR", 1, 3, 1, 3)) == "HL70357"
    assert str(ack.extract_field("ERR", 1, 4)) == "E"
    assert "MSH-10" in str(ack.extract_field("ERR", 1, 8))


def test_site_configuration_errors_are_reported_together() -> None:
    site = demo_senders()[0]
    clash = dataclasses.replace(site, code="CHM", default_charset="EBCDIC")
    with pytest.raises(ConfigurationError) as raised:
        SiteRegistry([site, clash])
    text = str(raised.value.issues)
    assert "twice" in text and "EBCDIC" in text and "several sites" in text


def test_the_ack_path_reader_agrees_with_python_hl7() -> None:
    """HeaderReader (no tree) gives the values python-hl7's tree gives, escapes included."""
    samples = [
        message(kind, charset=charset, control_id=control)
        for kind in ("adt_a28", "adt_a08", "oru_r01")
        for charset in ("8859/15", "UNICODE UTF-8")
        for control in ("SIMPLE", "WITH\\F\\PIPE\\S\\HAT", "X\\T\\Y")
    ]
    samples.append(
        b"MSH#*!/$#GAM*X#CH_MAILLEBOURG#A#B##ADT*A28*ADT_A05#C/E/1#P#2.5\rPID#1##I1*$*$*CH$O*PI\r"
    )
    for raw in samples:
        text = raw.decode("latin-1")
        segments = parsing.segments(text)
        pid = next((segment for segment in segments if segment.startswith("PID")), None)
        reader = parsing.HeaderReader(segments[0], pid)
        tree = parsing.parse(text)
        for field, component in ((3, 1), (4, 1), (6, 1), (9, 1), (9, 2), (10, 1), (11, 1), (18, 1)):
            assert reader.msh(field, component) == parsing.value(tree, "MSH", field, component), (
                field,
                raw[:60],
            )
        for number, (identifier, namespace, oid, kind) in enumerate(reader.pid3(), start=1):
            assert identifier == parsing.value(tree, "PID", 3, 1, repetition=number)
            assert namespace == parsing.value(tree, "PID", 3, 4, repetition=number)
            assert oid == parsing.value(tree, "PID", 3, 4, repetition=number, subcomponent=2)
            assert kind == parsing.value(tree, "PID", 3, 5, repetition=number)
