"""Synthetic HL7 v2 feeds for the pipeline benchmark (``bench/hl7_pipeline.py``): IHE PAM
FR identity (ADT^A28) and admission (ADT^A01 with ZBE) messages, and IHE LAB-3 results
(ORU^R01, one OBR and ten OBX), shaped like the samples of ``tests/fixtures/hl7/``
(``adt_identity.hl7``, ``movements/adt_movement.hl7``, ``oru_r01_lab.hl7``).

The identities are registrations of ``bench/identity_territory_data.py`` (made-up French
names with their accents, test NIRs, the demo territory's sites and IPPs): no patient
data. Each message is encoded as its MSH-18 says: ISO 8859/15 (the French default) from
most sites, UTF-8 (``UNICODE UTF-8``) from ``UTF8_SITES``.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from maillage.demo.sites import SITES, Site
from maillage.hl7v2.charset import CODECS
from maillage.identity.checks import IDENTITY_RELIABILITY_URL
from maillage.identity.ins import INS_SYSTEMS
from maillage.identity.patient_traits import BIRTH_PLACE_URL

# Sites whose feeds declare UTF-8 in MSH-18; the others send 8859/15.
UTF8_SITES = frozenset({"CHL"})
_SITE_BY_IPP_SYSTEM = {site.ipp_system: site for site in SITES}
_START = dt.datetime(2026, 1, 15, 7, 0, 0)
_ATTENDING = "10001^Lenoir^Agathe"

# One MSH/segment layout per message kind, as in the fixtures; {placeholders} filled here.
_A28 = (
    "MSH|^~\\&|GAM|{facility}|MAILLAGE|GHT_VAL_DE_MAILLE|{sent}||ADT^A28^ADT_A05|{control_id}"
    "|P|2.5^FRA^2.11|||||FRA|{charset}|FR||2.11^IHE_FRANCE-2.11-PAM",
    "EVN||{sent}",
    # PID-32 (identity reliability) is the 32nd field
    "PID|1||{pid3}||{names}||{birth_date}|{sex}|||{address}||{phone}||||||||||||||||||"
    "|{reliability}",
    "PV1|1|N",
)
_A01 = (
    "MSH|^~\\&|GAM|{facility}|MAILLAGE|GHT_VAL_DE_MAILLE|{sent}||ADT^A01^ADT_A01|{control_id}"
    "|P|2.5^FRA^2.11|||||FRA|{charset}|FR||2.11^IHE_FRANCE-2.11-PAM",
    "EVN||{sent}",
    "PID|1||{pid3}||{family}^{given}^^^^^L||{birth_date}|{sex}||||||||||{account}",
    "PV1|1|I|{unit}^{room}^{bed}||||{attending}||||||||||||{visit}|||||||||||||||||||||||||{sent}|",
    "ZBE|{movement}^GAM|{sent}||INSERT|N||{medical}||HMS",
)
_ORU = (
    "MSH|^~\\&|SIL|{facility}|MAILLAGE|GHT_VAL_DE_MAILLE|{sent}||ORU^R01^ORU_R01|{control_id}"
    "|P|2.5|||||FRA|{charset}|FR||LAB-3^IHE",
    "PID|1||{pid3}||{family}^{given}^^^^^L||{birth_date}|{sex}",
    "PV1|1|I|{unit}^^^{facility}||||||||||||||||{visit}",
    "OBR|1|ORD-{order}|{order}^SIL|24323-8^Comprehensive metabolic 2000 panel - Serum or "
    "Plasma^LN|||{collected}|||||||||||||||{reported}||CH|F",
)
_OBX = (
    "OBX|{n}|NM|{code}^{name}^LN||{value}|{unit}^{unit_text}^UCUM|{range}|{flag}|||F|||{collected}"
)


@dataclass(frozen=True, slots=True)
class Test:
    """One lab test: LOINC code and name, UCUM unit, reference range, decimals."""

    code: str
    name: str
    unit: str
    unit_text: str
    low: float | None
    high: float
    decimals: int


# A panel of ten tests as a French lab reports them (SI units, UCUM codes).
PANEL: tuple[Test, ...] = (
    Test("2951-2", "Sodium [Moles/volume] in Serum or Plasma", "mmol/L", "mmol/L", 135, 145, 0),
    Test("2823-3", "Potassium [Moles/volume] in Serum or Plasma", "mmol/L", "mmol/L", 3.5, 5.1, 1),
    Test("2075-0", "Chloride [Moles/volume] in Serum or Plasma", "mmol/L", "mmol/L", 98, 107, 0),
    Test("1963-8", "Bicarbonate [Moles/volume] in Serum or Plasma", "mmol/L", "mmol/L", 22, 29, 0),
    Test("22664-7", "Urea [Moles/volume] in Serum or Plasma", "mmol/L", "mmol/L", 2.5, 7.5, 1),
    Test("14682-9", "Creatinine [Moles/volume] in Serum or Plasma", "umol/L", "µmol/L", 45, 90, 0),
    Test("2345-7", "Glucose [Mass/volume] in Serum or Plasma", "g/L", "g/L", 0.70, 1.10, 2),
    Test("718-7", "Hemoglobin [Mass/volume] in Blood", "g/dL", "g/dL", 12.0, 16.0, 1),
    Test(
        "6690-2",
        "Leukocytes [#/volume] in Blood by Automated count",
        "10*9/L",
        "G/L",
        4.0,
        10.0,
        1,
    ),
    Test(
        "1988-5", "C reactive protein [Mass/volume] in Serum or Plasma", "mg/L", "mg/L", None, 5, 1
    ),
)


@dataclass(frozen=True, slots=True)
class Identity:
    """One registration at one site, as its A28 carries it, and its stay (A01, ORU)."""

    site: Site
    ipp: str
    family: str
    used_name: str | None
    given: tuple[str, ...]
    birth_date: str  # YYYYMMDD
    sex: str  # F / M
    address: tuple[str, str, str] | None  # line, city, postal code
    birthplace: str | None  # INSEE code
    phone: str | None
    ins: tuple[str, str] | None  # (OID, NIR) when qualified
    reliability: str  # PID-32: VALI or PROV

    @property
    def visit(self) -> str:
        return f"V{self.ipp}"

    @property
    def account(self) -> str:
        return f"NDA{self.ipp}"

    @property
    def patient_key(self) -> str:
        return f"{self.site.code}:{self.ipp}"


def identity_of(patient: dict[str, Any]) -> Identity:
    """The registration a territorial-set Patient records (its site from the IPP system)."""
    site = ipp = None
    ins = None
    for identifier in patient["identifier"]:
        system = identifier["system"]
        if system in _SITE_BY_IPP_SYSTEM:
            site, ipp = _SITE_BY_IPP_SYSTEM[system], identifier["value"]
        elif system in INS_SYSTEMS:
            ins = (system.removeprefix("urn:oid:"), identifier["value"])
    if site is None or ipp is None:
        raise ValueError("a territorial Patient without a demo site IPP")
    official = next(name for name in patient["name"] if name.get("use") == "official")
    used = next((n["family"] for n in patient["name"] if n.get("use") == "usual"), None)
    status = "PROV"
    birthplace = None
    for extension in patient.get("extension", []):
        if extension["url"] == BIRTH_PLACE_URL:
            birthplace = extension["valueAddress"]["extension"][0]["valueCoding"]["code"]
        elif extension["url"] == IDENTITY_RELIABILITY_URL:
            status = extension["extension"][0]["valueCoding"]["code"]
    address = None
    if patient.get("address"):
        found = patient["address"][0]
        address = (found["line"][0], found["city"], found["postalCode"])
    phone = patient["telecom"][0]["value"] if patient.get("telecom") else None
    return Identity(
        site=site,
        ipp=ipp,
        family=official["family"],
        used_name=used,
        given=tuple(official.get("given", ())),
        birth_date=patient["birthDate"].replace("-", ""),
        sex="M" if patient["gender"] == "male" else "F",
        address=address,
        birthplace=birthplace,
        phone=phone,
        ins=ins if status == "QUAL" else None,
        reliability="VALI" if status in ("QUAL", "VALI") else "PROV",
    )


def escape(text: str) -> str:
    """A value with HL7's separators escaped (MSH-2 ``^~\\&``, field ``|``)."""
    return (
        text.replace("\\", "\\E\\")
        .replace("|", "\\F\\")
        .replace("^", "\\S\\")
        .replace("&", "\\T\\")
        .replace("~", "\\R\\")
    )


def _hl7_time(moment: dt.datetime) -> str:
    return moment.strftime("%Y%m%d%H%M%S")


def _encode(segments: Sequence[str], fields: dict[str, str], site: Site) -> tuple[bytes, str]:
    """The message encoded as MSH-18 declares; 8859/15 senders fall back to UTF-8 (declared)
    for a name 8859/15 cannot write. Returns (bytes, Python codec)."""
    charset = "UNICODE UTF-8" if site.code in UTF8_SITES else "8859/15"
    for declared in (charset, "UNICODE UTF-8"):
        text = "\r".join(s.format(**fields, charset=declared) for s in segments) + "\r"
        codec = CODECS[declared]
        try:
            return text.encode(codec), codec
        except UnicodeEncodeError:
            continue
    raise AssertionError("UTF-8 encodes everything")


def _pid3(identity: Identity) -> str:
    site = identity.site
    cx = f"{escape(identity.ipp)}^^^{site.sending_facility}&{site.ipp_oid}&ISO^PI"
    if identity.ins is not None:
        oid, nir = identity.ins
        kind = INS_SYSTEMS[f"urn:oid:{oid}"]
        cx += f"~{nir}^^^ASIP-SANTE-INS-{kind}&{oid}&ISO^INS"
    return cx


def _common(identity: Identity, control_id: str, sent: dt.datetime) -> dict[str, str]:
    return {
        "facility": identity.site.sending_facility,
        "control_id": control_id,
        "sent": _hl7_time(sent),
        "pid3": _pid3(identity),
        "family": escape(identity.family),
        "given": escape(identity.given[0] if identity.given else ""),
        "birth_date": identity.birth_date,
        "sex": identity.sex,
    }


def adt_a28(identity: Identity, control_id: str, number: int) -> tuple[bytes, str]:
    """ITI-30 A28 (create the identity): PID-5 L (and D when a used name), PID-7/8, PID-11
    home and birthplace (BDL, XAD-9 the INSEE code), PID-13, PID-32."""
    given = identity.given
    first_names = " ".join(given) if len(given) > 1 else ""
    official = f"{escape(identity.family)}^{escape(given[0] if given else '')}^" + (
        f"{escape(first_names)}^^^^L"
    )
    names = official
    if identity.used_name:
        names = f"{escape(identity.used_name)}^{escape(given[0] if given else '')}^^^^^D~{official}"
    addresses = []
    if identity.address is not None:
        line, city, postcode = (escape(part) for part in identity.address)
        addresses.append(f"{line}^^{city}^^{postcode}^FRA^H")
    if identity.birthplace:
        addresses.append(f"^^^^^FRA^BDL^^{identity.birthplace}")
    fields = {
        **_common(identity, control_id, _START + dt.timedelta(seconds=number)),
        "names": names,
        "address": "~".join(addresses),
        "phone": f"{escape(identity.phone)}^PRN^CP" if identity.phone else "",
        "reliability": identity.reliability,
    }
    return _encode(_A28, fields, identity.site)


def adt_a01(identity: Identity, control_id: str, number: int) -> tuple[bytes, str]:
    """ITI-31 A01 (admission) opening the visit PV1-19 with movement ZBE-1, hosted and
    under the medical responsibility of one of the site's UF."""
    site = identity.site
    unit = site.units[number % len(site.units)]
    authority = f"{site.sending_facility}&{site.uf_oid}&ISO"
    fields = {
        **_common(identity, control_id, _START + dt.timedelta(seconds=number, hours=1)),
        "account": identity.account,
        "unit": unit.code,
        "room": f"{100 + number % 40}",
        "bed": f"{1 + number % 2}",
        "attending": _ATTENDING,
        "visit": identity.visit,
        "movement": f"M{identity.ipp}-1",
        "medical": f"{escape(unit.name)}^^^^^{authority}^UF^^^{unit.code}",
    }
    return _encode(_A01, fields, site)


def oru_r01(identity: Identity, control_id: str, number: int) -> tuple[bytes, str]:
    """LAB-3 ORU^R01: one OBR (filler order ``number``-based, unique) and ten NM OBX with
    LOINC codes, UCUM units, reference ranges and abnormal flags; PV1-19 the visit the
    A01 opened."""
    site = identity.site
    rng = random.Random(number)
    collected = _START + dt.timedelta(seconds=number, hours=2)
    fields = {
        **_common(identity, control_id, collected + dt.timedelta(hours=2)),
        "unit": site.units[-1].code if site.acute_care else site.units[0].code,
        "visit": identity.visit,
        "order": f"{site.code}{number:09d}",
        "collected": _hl7_time(collected),
        "reported": _hl7_time(collected + dt.timedelta(hours=1, minutes=30)),
    }
    segments = list(_ORU)
    for n, test in enumerate(PANEL, start=1):
        low = test.low if test.low is not None else 0.0
        value = low + (test.high - low) * rng.uniform(-0.15, 1.25)
        value = max(value, 0.0)
        flag = "H" if value > test.high else "L" if test.low is not None and value < low else "N"
        places = test.decimals
        reference = (
            f"<{test.high:g}"
            if test.low is None
            else f"{test.low:.{places}f}-{test.high:.{places}f}"
        )
        obx = _OBX.format(
            n=n,
            code=test.code,
            name=escape(test.name),
            value=f"{value:.{test.decimals}f}",
            unit=escape(test.unit),
            unit_text=escape(test.unit_text),
            range=reference,
            flag=flag,
            collected=fields["collected"],
        )
        segments.append(obx.replace("{", "{{").replace("}", "}}"))
    return _encode(segments, fields, site)


def interleave(chains: Sequence[Sequence[bytes]], lag: int) -> list[bytes]:
    """One sending order for several patients' message chains: the j-th message of chain i
    goes at about position i + j·lag, so that a patient's next message comes ``lag``
    chains after the previous one (as an admission follows a registration some time
    later), and always after it."""
    keyed = [
        (index + step * lag, step, index, raw)
        for index, chain in enumerate(chains)
        for step, raw in enumerate(chain)
    ]
    keyed.sort(key=lambda item: item[:3])
    return [item[3] for item in keyed]
