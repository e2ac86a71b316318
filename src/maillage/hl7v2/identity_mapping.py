"""IHE PAM FR identity messages (ITI-30: A28, A31, A47, A40) to FHIR: pure functions from
a parsed message and its site to the source identity Patient in the FR Core shape the
patient index matches on (``identity.patient_traits``), or to the identifiers an A47
changes. Spec: IHE PAM FR 2.11.2 (``shared/specs/ihe-pam-fr-2.11.2.txt``).

- PID-3 (6.6.1): the site's IPP (type PI), and the INS (NIR, else NIA: 4.4.1) written only
  when PID-32 says VALI (6.6.1, 6.6.15); otherwise it is left out with a note.
- PID-5 (6.6.2): L → the ``official`` name (birth name; XPN-3 the birth first names,
  space separated, as in the example of 4.4.1), D → ``usual`` (used name, ``""``: none),
  S (pseudonym) → ``anonymous``, U → a name without use.
- PID-7 (6.6.4) birth date; PID-8 (6.6.5, table 0001 FR: F, M, U) gender; PID-11 (6.6.6)
  addresses, the BDL one (XAD-9: INSEE code of the birthplace) → ``patient-birthPlace``;
  PID-13/14 phones; PID-29/30 death; PID-32 (6.6.15) → the RNIV status.

Every problem in the data raises ``IdentityDataError`` (a ``PermanentFailure``) whose
reason names the field and quotes no personal value.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from typing import Any, Final

import hl7

from maillage.errors import InvalidIns
from maillage.hl7v2.parsing import segment_value
from maillage.hl7v2.processing import PermanentFailure
from maillage.hl7v2.results_mapping import ResultDataError, date_time, leaf, repetition_count
from maillage.hl7v2.sites import SiteConfig
from maillage.identity.checks import (
    IDENTITY_RELIABILITY_SYSTEM,
    IDENTITY_RELIABILITY_URL,
    IDENTITY_STATUS_SLICE,
    IPP_TYPE,
    QUALIFIED,
    V2_IDENTIFIER_TYPE_SYSTEM,
)
from maillage.identity.ins import (
    INS_SYSTEMS,
    OID_NIA,
    OID_NIR,
    OID_NIR_DEMO,
    OID_NIR_TEST,
    check_ins,
)
from maillage.identity.patient_traits import BIRTH_PLACE_URL, INSEE_CODE_URL

# FR Core identifier types of an INS (fr-core-cs-v2-0203), as ``mpi/insi_http.py`` writes them.
FR_IDENTIFIER_TYPE_SYSTEM: Final = "https://hl7.fr/ig/fhir/core/CodeSystem/fr-core-cs-v2-0203"
INS_TYPES: Final = {
    OID_NIR: "INS-NIR",
    OID_NIA: "INS-NIA",
    OID_NIR_TEST: "INS-NIR-TEST",
    OID_NIR_DEMO: "INS-NIR-DEMO",
}
# 4.4.1: when an NIA and a NIR are both sent, the NIR is the one to keep.
INS_PREFERENCE: Final = (OID_NIR, OID_NIR_TEST, OID_NIR_DEMO, OID_NIA)
COMMUNE_SYSTEM: Final = "https://mos.esante.gouv.fr/NOS/TRE_R13-CommuneOM/FHIR/TRE-R13-CommuneOM"
# 6.6.5, HL7 table 0001 restricted for France.
GENDERS: Final = {"F": "female", "M": "male", "U": "unknown"}
# 6.6.2: the name types allowed in France (Annexe N, XPN-7).
NAME_USES: Final = {"L": "official", "D": "usual", "S": "anonymous", "U": None}
ADDRESS_USES: Final = {"H": "home", "O": "work", "B": "work", "C": "temp", "BA": "old"}
VALIDATED: Final = "VALI"
NULL: Final = '""'  # HL7 "delete the value" (2.5.3), e.g. a used name no longer defined
_INSEE = re.compile(r"^(?:\d{5}|2[AB]\d{3})$")


class IdentityDataError(PermanentFailure):
    """A field of the identity message is missing or wrong; the reason names it."""


@dataclass(frozen=True, slots=True)
class Cx:
    """One PID-3 / MRG-1 repetition: CX-1, CX-4.1, CX-4.2 (OID), CX-5."""

    value: str
    namespace: str
    oid: str
    kind: str

    @property
    def ins_system(self) -> str | None:
        system = f"urn:oid:{self.oid}"
        return system if self.oid and system in INS_SYSTEMS else None


@dataclass(slots=True)
class SourceIdentity:
    """A28/A31: the Patient to write under ``ipp``, and what was left out (notes)."""

    patient: dict[str, Any]
    ipp: str
    notes: list[str] = field(default_factory=list)


@dataclass(slots=True)
class InsDecision:
    """What PID-3 and PID-32 say of the INS: the identifier to keep (or None), the RNIV
    status, and why an INS was left out."""

    identifier: dict[str, Any] | None
    status: str
    notes: list[str] = field(default_factory=list)


# -- segments and identifiers ----------------------------------------------------------------
def segment(message: hl7.Message, name: str, what: str) -> hl7.Segment:
    try:
        return message.segment(name)
    except KeyError:
        raise IdentityDataError(f"{name}: the message has no {what} ({name} segment)") from None


def identifiers(seg: hl7.Segment, number: int) -> list[Cx]:
    found = []
    for repetition in range(1, repetition_count(seg, number) + 1):
        parts = [
            segment_value(seg, number, repetition, c, s)
            for c, s in ((1, 1), (4, 1), (4, 2), (5, 1))
        ]
        if parts[0]:
            found.append(Cx(*parts))
    return found


def is_site_ipp(cx: Cx, site: SiteConfig) -> bool:
    return cx.oid == site.ipp_oid or bool(site.ipp_namespace and cx.namespace == site.ipp_namespace)


def site_ipps(seg: hl7.Segment, number: int, site: SiteConfig) -> list[str]:
    """The site's IPPs of a CX field (CX-4.2 its OID, or CX-4.1 its namespace), else its
    identifiers typed PI with no other assigning authority: the intake's rule."""
    found = [cx for cx in identifiers(seg, number) if cx.value != NULL]
    own = [cx.value for cx in found if is_site_ipp(cx, site)]
    return own or [cx.value for cx in found if cx.kind == IPP_TYPE and cx.ins_system is None]


def site_ipp(pid: hl7.Segment, site: SiteConfig) -> str:
    found = site_ipps(pid, 3, site)
    if not found:
        raise IdentityDataError(f"PID-3: no IPP of site {site.code} ({site.ipp_system})")
    return found[0]


def ipp_identifier(site: SiteConfig, value: str) -> dict[str, Any]:
    return {
        "use": "usual",
        "type": {"coding": [{"system": V2_IDENTIFIER_TYPE_SYSTEM, "code": IPP_TYPE}]},
        "system": site.ipp_system,
        "value": value,
    }


# -- INS and identity status (PID-3, PID-32) -------------------------------------------------
def validated(pid: hl7.Segment) -> bool:
    """PID-32 (6.6.15, table 0445 FR) says VALI: the identity is qualified by the sender.

    IHE PAM FR 2.11.2 6.6.1: "le matricule INS est renseigné dans le message uniquement si
    l'identité du patient a été qualifiée au niveau de l'application émettrice, ce qui se
    traduit par PID.32 = VALI"; 6.6.15: without VALI, "l'application réceptrice doit
    intégrer le message mais sans l'INS". The table has no RECUP nor QUAL code: a
    retrieved identity travels as PROV (4.4.4), so a code other than VALI (PROV, VIDE,
    the identity attributes HOMA, FICT, DOUT...) never trusts an INS.
    """
    count = repetition_count(pid, 32)
    return any(leaf(pid, 32, repetition=n).upper() == VALIDATED for n in range(1, count + 1))


def ins_decision(message: hl7.Message) -> InsDecision:
    """The RNIV status and INS of a PID: VALI with an INS → QUAL (the INS kept, after its
    key is checked); VALI without → VALI (validated, no INS); anything else → PROV, any
    INS sent left out with a note. A birth date corrected to be complete (ZFD-4 = Y,
    6.18.4) cannot go with an INS (6.6.4): the INS is left out, the status VALI at most."""
    pid = segment(message, "PID", "patient")
    sent = {cx.ins_system: cx.value for cx in identifiers(pid, 3) if cx.ins_system}
    sent = {system: value for system, value in sent.items() if value != NULL}
    chosen = next((system for system in INS_PREFERENCE if system in sent), None)
    if not validated(pid):
        notes = []
        if chosen is not None:
            notes.append("PID-3: the INS is not kept: PID-32 does not say VALI (IHE PAM FR 6.6.15)")
        return InsDecision(None, "PROV", notes)
    if chosen is None:
        return InsDecision(None, VALIDATED)
    if _zfd_corrected(message):
        note = "PID-3: the INS is not kept: the birth date was corrected (ZFD-4, IHE PAM FR 6.6.4)"
        return InsDecision(None, VALIDATED, [note])
    try:
        number = check_ins(sent[chosen], chosen)
    except InvalidIns as error:
        raise IdentityDataError(
            f"PID-3: the INS ({INS_SYSTEMS[chosen]}) is invalid: {error.message}"
        ) from None
    identifier = {
        "use": "official",
        "type": {"coding": [{"system": FR_IDENTIFIER_TYPE_SYSTEM, "code": INS_TYPES[chosen]}]},
        "system": chosen,
        "value": number.value,
    }
    return InsDecision(identifier, QUALIFIED)


def reliability_extension(status: str) -> dict[str, Any]:
    coding = {"system": IDENTITY_RELIABILITY_SYSTEM, "code": status}
    return {
        "url": IDENTITY_RELIABILITY_URL,
        "extension": [{"url": IDENTITY_STATUS_SLICE, "valueCoding": coding}],
    }


# -- A28 / A31 -------------------------------------------------------------------------------
def source_identity(
    message: hl7.Message, site: SiteConfig, *, today: dt.date | None = None
) -> SourceIdentity:
    pid = segment(message, "PID", "patient")
    ipp = site_ipp(pid, site)
    ins = ins_decision(message)
    patient: dict[str, Any] = {
        "resourceType": "Patient",
        "identifier": [ipp_identifier(site, ipp), *([ins.identifier] if ins.identifier else [])],
        "name": names(pid),
    }
    if gender := _gender(pid):
        patient["gender"] = gender
    if birth := birth_date(pid, today or dt.datetime.now(dt.UTC).date()):
        patient["birthDate"] = birth
    for where, present, section in (("PID-7", birth, "6.6.4"), ("PID-8", gender, "6.6.5")):
        if ins.identifier is not None and not present:
            raise IdentityDataError(f"{where}: required with an INS (IHE PAM FR {section})")
    telecom = [*_telecom(pid, 13, "home"), *_telecom(pid, 14, "work")]
    if telecom:
        patient["telecom"] = telecom
    addresses, birthplace = _addresses(pid)
    if addresses:
        patient["address"] = addresses
    patient.update(_deceased(pid))
    extensions = [birthplace] if birthplace else []
    patient["extension"] = [*extensions, reliability_extension(ins.status)]
    return SourceIdentity(patient, ipp, ins.notes)


def names(pid: hl7.Segment) -> list[dict[str, Any]]:
    """PID-5 by name type (6.6.2): the birth name (L) first, required."""
    found: list[tuple[str, dict[str, Any]]] = []
    count = repetition_count(pid, 5)
    for n in range(1, count + 1):
        kind = segment_value(pid, 5, n, 7, 1).upper()
        if kind not in NAME_USES:
            raise IdentityDataError(
                f"PID-5 repetition {n}: name type (XPN-7) {kind!r} is not one of L, D, S, U "
                "(IHE PAM FR 6.6.2)"
            )
        family, given, further, prefix = (segment_value(pid, 5, n, c, 1) for c in (1, 2, 3, 5))
        if family == NULL:
            family = ""  # "" on D: the used name is no longer defined (6.6.2)
        name: dict[str, Any] = {}
        if (use := NAME_USES[kind]) is not None:
            name["use"] = use
        if family:
            name["family"] = family
        first_names = _first_names(given, further) if kind == "L" else [given] if given else []
        if first_names:
            name["given"] = first_names
        if prefix:
            name["prefix"] = [prefix]
        if family or first_names:
            found.append((kind, name))
    official = [name for kind, name in found if kind == "L"]
    if not official or "family" not in official[0]:
        raise IdentityDataError("PID-5: no birth name (name type L), required (IHE PAM FR 6.6.2)")
    return [official[0], *(name for kind, name in found if name is not official[0])]


def _first_names(given: str, further: str) -> list[str]:
    """XPN-3 of the L name lists the birth first names, space separated (4.4.1: ``DARK^
    JEANNE^JEANNE MARIE CECILE``), XPN-2 the first of them; a sender writing only the
    further ones in XPN-3 gets XPN-2 put first."""
    listed = further.split()
    if given and (not listed or listed[0].upper() != given.upper()):
        listed.insert(0, given)
    return listed


def birth_date(pid: hl7.Segment, today: dt.date) -> str | None:
    text = leaf(pid, 7)
    try:
        found = date_time(text, "PID-7")
    except ResultDataError as error:
        raise IdentityDataError(str(error).replace(repr(text), "the value")) from None
    if found is None:
        return None
    day = found[:10]
    if day > today.isoformat()[: len(day)]:
        raise IdentityDataError("PID-7: the birth date is in the future")
    return day


def _gender(pid: hl7.Segment) -> str | None:
    code = leaf(pid, 8).upper()
    if not code:
        return None
    if code not in GENDERS:
        raise IdentityDataError(
            f"PID-8: administrative sex {code!r} is not one of F, M, U (IHE PAM FR 6.6.5)"
        )
    return GENDERS[code]


def _addresses(pid: hl7.Segment) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """PID-11 repetitions (XAD): the BDL one is the birthplace (XAD-9 its INSEE code)."""
    addresses: list[dict[str, Any]] = []
    birthplace: dict[str, Any] | None = None
    for n in range(1, repetition_count(pid, 11) + 1):
        street, other, city, state, postcode, country, kind, _, county = (
            _clean(segment_value(pid, 11, n, c, 1)) for c in range(1, 10)
        )
        kind = kind.upper()
        if kind == "BDL":
            if county and not _INSEE.match(county):
                raise IdentityDataError(
                    f"PID-11 repetition {n} (BDL): XAD-9 is not a 5-character INSEE code"
                )
            place: dict[str, Any] = {}
            if county:
                coding = {"system": COMMUNE_SYSTEM, "code": county}
                if county.startswith("99"):  # born abroad: 99 + INSEE country code
                    coding = {"code": county}
                place["extension"] = [{"url": INSEE_CODE_URL, "valueCoding": coding}]
            place.update({k: v for k, v in (("city", city), ("country", country)) if v})
            birthplace = {"url": BIRTH_PLACE_URL, "valueAddress": place} if place else None
            continue
        address: dict[str, Any] = {}
        if kind == "M":
            address.update(use="home", type="postal")
        elif kind in ADDRESS_USES:
            address["use"] = ADDRESS_USES[kind]
        lines = [line for line in (street, other) if line]
        fields = (("city", city), ("state", state), ("postalCode", postcode), ("country", country))
        filled = {key: value for key, value in fields if value}
        if lines or filled:
            addresses.append({**address, **({"line": lines} if lines else {}), **filled})
    return addresses, birthplace


def _telecom(pid: hl7.Segment, number: int, use: str) -> list[dict[str, Any]]:
    found = []
    for n in range(1, repetition_count(pid, number) + 1):
        code, equipment = (
            segment_value(pid, number, n, 2, 1).upper(),
            segment_value(pid, number, n, 3, 1).upper(),
        )
        if equipment == "INTERNET" or code == "NET":
            if email := _clean(segment_value(pid, number, n, 4, 1)):
                found.append({"system": "email", "value": email, "use": use})
            continue
        value = _clean(segment_value(pid, number, n, 1, 1) or segment_value(pid, number, n, 12, 1))
        value = value or _clean(
            segment_value(pid, number, n, 6, 1) + segment_value(pid, number, n, 7, 1)
        )
        if not value:
            continue
        system = {"FX": "fax", "BP": "pager"}.get(equipment, "phone")
        found.append(
            {"system": system, "value": value, "use": "mobile" if equipment == "CP" else use}
        )
    return found


def _deceased(pid: hl7.Segment) -> dict[str, Any]:
    """PID-29 (death date/time), else PID-30 (death indicator, table 0136: Y/N)."""
    try:
        moment = date_time(leaf(pid, 29), "PID-29")
    except ResultDataError:
        raise IdentityDataError("PID-29: the death date/time is not an HL7 date/time") from None
    if moment:
        return {"deceasedDateTime": moment}
    flag = leaf(pid, 30).upper()
    if flag in ("Y", "N"):
        return {"deceasedBoolean": flag == "Y"}
    if flag:
        raise IdentityDataError(f"PID-30: death indicator {flag!r} is not Y or N (table 0136)")
    return {}


# -- A47 / A40 -------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class MergeRequest:
    """MRG-1 split into the site's IPPs and the INS (A47 4.4.2-4.4.4; A40)."""

    old_ipps: tuple[str, ...]
    old_ins: tuple[tuple[str, str], ...]  # (system, value)


def prior_identifiers(message: hl7.Message, site: SiteConfig) -> MergeRequest:
    mrg = segment(message, "MRG", "prior identifiers")
    found = identifiers(mrg, 1)
    ins = tuple((cx.ins_system, cx.value) for cx in found if cx.ins_system and cx.value != NULL)
    ipps = tuple(site_ipps(mrg, 1, site))
    if not ipps and not ins:
        raise IdentityDataError(
            f"MRG-1: neither an IPP of site {site.code} ({site.ipp_system}) nor an INS"
        )
    return MergeRequest(ipps, ins)


def control_id(message: hl7.Message) -> str:
    try:
        return str(message.extract_field("MSH", 1, 10, 1, 1)).strip()
    except (KeyError, IndexError, ValueError, TypeError, AttributeError):
        return ""


# -- reading ---------------------------------------------------------------------------------
def _zfd_corrected(message: hl7.Message) -> bool:
    try:
        zfd = message.segment("ZFD")
    except KeyError:
        return False
    return leaf(zfd, 4).upper() == "Y"


def _clean(value: str) -> str:
    return "" if value == NULL else value
