"""What a received frame is: an accepted message (site, idempotency key, patient key) or
a rejection that says which field is wrong and why. Pure: no I/O, no clock.

The order of the checks is the order a sender can fix them in: an MSH, usable
separators, a known site (on the right port), a character set we decode, bytes valid in
it, the MSH fields the store needs (MSH-9, MSH-10), then the fields processing needs
(``receipt_checks``: segments, required fields, codes, dates).
"""

from __future__ import annotations

from dataclasses import dataclass

from maillage.hl7v2 import parsing, receipt_checks
from maillage.hl7v2.acks import AckContext, ErrorDetail, ErrorLocation
from maillage.hl7v2.charset import UnsupportedCharset, codec_for, declared_charset, msh_fields
from maillage.hl7v2.sites import SiteConfig, SiteRegistry


@dataclass(frozen=True, slots=True)
class Accepted:
    site: SiteConfig
    sender: str
    control_id: str
    message_type: str
    trigger_event: str
    patient_key: str | None
    codec: str
    ack: AckContext

    @property
    def idempotency_key(self) -> str:
        # Length-prefixed: no (sender, control id) pair can spell another's key.
        return f"{len(self.sender)}:{self.sender}:{self.control_id}"


@dataclass(frozen=True, slots=True)
class Rejected:
    """AR (the message cannot be taken at all) or AE (a required field is wrong)."""

    ack_code: str
    error: ErrorDetail
    ack: AckContext
    site: str | None = None
    sender: str | None = None
    control_id: str | None = None
    message_type: str | None = None
    trigger_event: str | None = None
    codec: str | None = None


def _latin1_field(fields: list[bytes], index: int, component: int = 1) -> str:
    """A component of an MSH field straight from the bytes (MSH-3/4 are ASCII names),
    used before the message can be decoded."""
    if index >= len(fields):
        return ""
    separator = fields[2][0:1] or b"^"
    parts = fields[index].split(separator)
    return parts[component - 1].decode("latin-1").strip() if component <= len(parts) else ""


def analyze(
    raw: bytes, sites: SiteRegistry, *, port_site: str | None = None
) -> Accepted | Rejected:
    fields = msh_fields(raw)
    if fields is None:
        return Rejected(
            "AR",
            ErrorDetail(ErrorLocation("MSH"), 100, "the message does not start with MSH"),
            AckContext(),
        )
    first = raw.lstrip(b" \t\r\n").split(b"\r", 1)[0].split(b"\n", 1)[0].decode("latin-1")
    problem = parsing.separators_problem(first)
    if problem is not None:
        return Rejected("AR", ErrorDetail(ErrorLocation("MSH", 2), 102, problem), AckContext())
    application = _latin1_field(fields, 3)
    facility = _latin1_field(fields, 4)
    sender = f"{application}^{facility}"
    early = AckContext(
        sending_application=application,
        sending_facility=facility,
        receiving_facility=_latin1_field(fields, 6),
        control_id=_latin1_field(fields, 10),
    )
    site = sites.match(application, facility)
    if site is None:
        return Rejected(
            "AR",
            ErrorDetail(
                ErrorLocation("MSH", 4),
                103,
                f"sending facility {facility!r} (application {application!r}) is not a "
                "configured site",
            ),
            early,
            sender=sender,
            control_id=early.control_id or None,
        )
    if port_site is not None and site.code != port_site:
        return _site_rejected(
            "AR",
            ErrorDetail(
                ErrorLocation("MSH", 4),
                103,
                f"site {site.code} may not send on the port of site {port_site}",
            ),
            early,
            site,
        )
    declared = declared_charset(raw)
    try:
        codec = codec_for(declared, site.default_charset)
    except UnsupportedCharset:
        return _site_rejected(
            "AR",
            ErrorDetail(
                ErrorLocation("MSH", 18),
                103,
                f"character set {declared!r} is not supported (8859/15, 8859/1, UNICODE UTF-8)",
            ),
            early,
            site,
        )
    try:
        text = raw.decode(codec)
    except UnicodeDecodeError as error:
        said = (
            f"MSH-18 says {declared}" if declared else f"the site default is {site.default_charset}"
        )
        return _site_rejected(
            "AE",
            ErrorDetail(
                ErrorLocation("MSH", 18), 102, f"byte {error.start} is not valid {codec} ({said})"
            ),
            early,
            site,
            codec=codec,
        )
    return _read_header(text, site, sender, codec, early)


def _site_rejected(
    code: str, detail: ErrorDetail, early: AckContext, site: SiteConfig, codec: str | None = None
) -> Rejected:
    """A message from a known site refused before its header could be read."""
    return Rejected(
        code,
        detail,
        early,
        site=site.code,
        sender=f"{early.sending_application}^{early.sending_facility}",
        control_id=early.control_id or None,
        codec=codec,
    )


def _read_header(
    text: str, site: SiteConfig, sender: str, codec: str, early: AckContext
) -> Accepted | Rejected:
    # MSH and PID-3 of the first PID are read here by ``HeaderReader`` (the ACK path),
    # then the fields ``receipt_checks`` looks at; the processor parses the whole
    # message with python-hl7.
    every = parsing.segments(text)
    pid = next((segment for segment in every[1:] if segment.startswith("PID")), None)
    header = parsing.HeaderReader(every[0], pid)
    message_type = header.msh(9, 1)
    trigger_event = header.msh(9, 2)
    control_id = header.msh(10)
    ack = AckContext(
        sending_application=early.sending_application,
        sending_facility=early.sending_facility,
        receiving_facility=header.msh(6),
        trigger_event=trigger_event,
        control_id=control_id,
        processing_id=header.msh(11) or "P",
        charset=header.msh(18) or None,
    )
    missing: ErrorDetail | None = None
    if not message_type:
        missing = ErrorDetail(ErrorLocation("MSH", 9, 1), 101, "MSH-9 message type is empty")
    elif not trigger_event and message_type != "ACK":
        missing = ErrorDetail(ErrorLocation("MSH", 9, 2), 101, "MSH-9 trigger event is empty")
    elif not control_id:
        missing = ErrorDetail(ErrorLocation("MSH", 10), 101, "MSH-10 message control id is empty")
    else:
        missing = receipt_checks.check(header, every, message_type, trigger_event)
    if missing is not None:
        return Rejected(
            "AE",
            missing,
            ack,
            site=site.code,
            sender=sender,
            control_id=control_id or None,
            message_type=message_type or None,
            trigger_event=trigger_event or None,
            codec=codec,
        )
    return Accepted(
        site=site,
        sender=sender,
        control_id=control_id,
        message_type=message_type,
        trigger_event=trigger_event,
        patient_key=_patient_key(header, site) if pid else None,
        codec=codec,
        ack=ack,
    )


def _patient_key(header: parsing.HeaderReader, site: SiteConfig) -> str | None:
    """``site:IPP`` from PID-3: the repetition assigned by the site (CX-4.2 = its OID, or
    CX-4.1 = its namespace), else the first identifier of type PI."""
    first_pi: str | None = None
    for identifier, namespace, oid, kind in header.pid3():
        if not identifier or identifier == '""':
            continue
        if oid == site.ipp_oid or (site.ipp_namespace and namespace == site.ipp_namespace):
            return f"{site.code}:{identifier}"
        if kind == "PI" and first_pi is None:
            first_pi = identifier
    return f"{site.code}:{first_pi}" if first_pi else None
