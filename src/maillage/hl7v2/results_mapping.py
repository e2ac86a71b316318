"""ORU^R01 fields to FHIR (IHE LAB-3): pure functions from python-hl7 segments to the
JSON of a DiagnosticReport (one per OBR) and its Observations (one per OBX).

Every problem in the data raises ``ResultDataError`` (a ``PermanentFailure``: resending
the same bytes cannot fix it) with a reason naming the field, e.g. ``OBX-5 of OBX 3:
'abc' is not a number (NM)``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo

import hl7

from maillage.hl7v2.parsing import segment_value
from maillage.hl7v2.processing import PermanentFailure
from maillage.hl7v2.sites import SiteConfig

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
SNOMED = "http://snomed.info/sct"
INTERPRETATION = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
DIAGNOSTIC_SERVICE = "http://terminology.hl7.org/CodeSystem/v2-0074"
IDENTIFIER_TYPE = "http://terminology.hl7.org/CodeSystem/v2-0203"
FINESS = "https://finess.esante.gouv.fr"
# HL7 v2 times without an offset are the sites' local time.
SITE_ZONE = ZoneInfo("Europe/Paris")

REPORT_STATUS = {"P": "preliminary", "F": "final", "C": "corrected", "X": "cancelled"}
RESULT_STATUS = {
    "P": "preliminary",
    "R": "preliminary",
    "F": "final",
    "C": "corrected",
    "X": "cancelled",
    "D": "entered-in-error",
    "W": "entered-in-error",
    "I": "registered",
}
FLAGS = {
    "H": "High",
    "L": "Low",
    "HH": "Critical high",
    "LL": "Critical low",
    "N": "Normal",
    "A": "Abnormal",
    "AA": "Critical abnormal",
}
CODING_SYSTEMS = {"LN": LOINC, "SCT": SNOMED, "SNM": SNOMED}
UCUM_NAMES = {"UCUM", "ISO+", "ANS+"}
_TS = re.compile(r"^(\d{4})(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\d{2}(?:\.\d{1,4})?)?([+-]\d{4})?$")
_NUMBER = r"[+-]?\d+(?:[.,]\d+)?"
_NM = re.compile(r"[+-]?(?:\d+(?:[.,]\d*)?|[.,]\d+)")
_RANGE = re.compile(rf"^({_NUMBER})\s*-\s*({_NUMBER})$")
_BOUND = re.compile(rf"^([<>])=?\s*({_NUMBER})$")


class ResultDataError(PermanentFailure):
    """A field of the message is missing or wrong; the reason names it."""


def leaf(segment: hl7.Segment, field: int, component: int = 1, repetition: int = 1) -> str:
    """One unescaped value of the segment, or '' when absent."""
    return segment_value(segment, field, repetition, component)


def repetition_count(segment: hl7.Segment, field: int) -> int:
    try:
        return len(segment(field)) if field < len(segment) else 0
    except (KeyError, IndexError, ValueError, TypeError, AttributeError):
        return 0


# -- times ---------------------------------------------------------------------------------
def date_time(text: str, where: str) -> str | None:
    """An HL7 TS/DTM as a FHIR dateTime (None when empty): a date keeps its precision, a
    time gets seconds and an offset (the site's local time when none is given)."""
    if not text:
        return None
    match = _TS.match(text)
    if match is None:
        raise ResultDataError(f"{where}: {text!r} is not an HL7 date/time (YYYYMMDD[HHMM[SS]])")
    year, month, day, hour, minute, second, offset = match.groups()
    try:
        if hour is None:
            datetime(int(year), int(month or 1), int(day or 1))  # checks the calendar
            return "-".join(part for part in (year, month, day) if part)
        if month is None or day is None:
            raise ValueError("a time needs a full date")
        seconds = Decimal(second or "0")
        whole = int(seconds)
        moment = datetime(
            int(year),
            int(month),
            int(day),
            int(hour),
            int(minute or 0),
            whole,
            int((seconds - whole) * 1_000_000),
        )
    except (ValueError, InvalidOperation) as error:
        raise ResultDataError(f"{where}: {text!r} is not a valid date/time ({error})") from error
    if offset:
        sign = 1 if offset[0] == "+" else -1
        delta = timedelta(hours=int(offset[1:3]), minutes=int(offset[3:5]))
        aware = moment.replace(tzinfo=timezone(sign * delta))
    else:
        aware = moment.replace(tzinfo=SITE_ZONE)
    spec = "milliseconds" if moment.microsecond else "seconds"
    return aware.isoformat(timespec=spec)


def instant(text: str, where: str) -> str | None:
    """An HL7 TS as a FHIR instant (a date alone: its midnight, site time)."""
    found = date_time(text, where)
    if found is None or "T" in found:
        return found
    if len(found) != 10:
        raise ResultDataError(f"{where}: {text!r} needs at least a full date")
    return datetime.fromisoformat(found).replace(tzinfo=SITE_ZONE).isoformat()


# -- codes -----------------------------------------------------------------------------------
def codeable(
    segment: hl7.Segment, field: int, where: str, site: SiteConfig, *, map_loinc: bool
) -> dict[str, Any]:
    """A CE/CWE as a CodeableConcept: identifier and alternate identifier, LOINC when the
    coding system is LN, else the site's local codes (plus the LOINC the site's map gives,
    when ``map_loinc``)."""
    codings: list[dict[str, Any]] = []
    for first in (1, 4):
        code = leaf(segment, field, first)
        if not code:
            continue
        name = leaf(segment, field, first + 2).upper()
        coding: dict[str, Any] = {
            "system": CODING_SYSTEMS.get(name, site.local_code_system),
            "code": code,
        }
        if display := leaf(segment, field, first + 1):
            coding["display"] = display
        codings.append(coding)
    if not codings:
        raise ResultDataError(f"{where}: no code")
    if map_loinc and not any(coding["system"] == LOINC for coding in codings):
        for coding in list(codings):
            mapped = site.loinc_map.get(coding["code"])
            if coding["system"] == site.local_code_system and mapped:
                codings.insert(0, {"system": LOINC, "code": mapped})
                break
    concept: dict[str, Any] = {"coding": codings}
    if text := leaf(segment, field, 2):
        concept["text"] = text
    return concept


def identifier(system: str, value: str, type_code: str | None = None) -> dict[str, Any]:
    found: dict[str, Any] = {"system": system, "value": value}
    if type_code:
        found["type"] = {"coding": [{"system": IDENTIFIER_TYPE, "code": type_code}]}
    return found


def _practitioner(segment: hl7.Segment, field: int) -> dict[str, Any] | None:
    """An XCN (id^family^given) as a logical Practitioner reference, or None."""
    code, family, given = (leaf(segment, field, n) for n in (1, 2, 3))
    if not (code or family):
        return None
    found: dict[str, Any] = {"type": "Practitioner"}
    if code:
        found["identifier"] = {"value": code}
    if display := " ".join(part for part in (given, family) if part):
        found["display"] = display
    return found


# -- DiagnosticReport ------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Order:
    """What an OBR gives its report and its results."""

    filler: str
    number: int
    effective: str | None
    issued: str | None


def read_order(obr: hl7.Segment, position: int) -> Order:
    number = leaf(obr, 1) or str(position)
    where = f"OBR {number}"
    filler = leaf(obr, 3)
    if not filler:
        raise ResultDataError(f"OBR-3 of {where}: the filler order number is empty")
    return Order(
        filler=filler,
        number=position,
        effective=date_time(leaf(obr, 7), f"OBR-7 of {where}"),
        issued=instant(leaf(obr, 22), f"OBR-22 of {where}"),
    )


def diagnostic_report(
    obr: hl7.Segment,
    order: Order,
    site: SiteConfig,
    links: dict[str, Any],
    results: list[str],
) -> dict[str, Any]:
    where = f"OBR {leaf(obr, 1) or order.number}"
    flag = leaf(obr, 25)
    status = REPORT_STATUS.get(flag)
    if status is None:
        raise ResultDataError(f"OBR-25 of {where}: result status {flag!r} is not one of P, F, C, X")
    report: dict[str, Any] = {
        "resourceType": "DiagnosticReport",
        "identifier": [identifier(site.filler_order_system, order.filler, "FILL")],
        "status": status,
        "category": [{"coding": [{"system": DIAGNOSTIC_SERVICE, "code": "LAB"}]}],
        "code": codeable(obr, 4, f"OBR-4 of {where}", site, map_loinc=True),
        **links,
        "performer": [
            {"type": "Organization", "identifier": {"system": FINESS, "value": site.finess}}
        ],
        "result": [{"reference": f"Observation/{rid}"} for rid in results],
    }
    if order.effective:
        report["effectiveDateTime"] = order.effective
    if order.issued:
        report["issued"] = order.issued
    if interpreter := _practitioner(obr, 32):
        report["resultsInterpreter"] = [interpreter]
    if not results:
        del report["result"]
    return report


# -- Specimen -------------------------------------------------------------------------------
def specimen(
    spm: hl7.Segment, order: Order, position: int, site: SiteConfig, subject: dict[str, Any]
) -> dict[str, Any]:
    """SPM: identifier (SPM-2's filler id, else its placer id, else filler order + position),
    type (SPM-4), collection (SPM-17), received (SPM-18)."""
    where = f"SPM {leaf(spm, 1) or position}"
    key = leaf(spm, 2, 2) or leaf(spm, 2, 1) or f"{order.filler}-SPM{position}"
    found: dict[str, Any] = {
        "resourceType": "Specimen",
        "identifier": [identifier(site.filler_order_system, key)],
        "subject": subject,
    }
    if leaf(spm, 4):
        found["type"] = codeable(spm, 4, f"SPM-4 of {where}", site, map_loinc=False)
    if collected := date_time(leaf(spm, 17), f"SPM-17 of {where}"):
        found["collection"] = {"collectedDateTime": collected}
    if received := instant(leaf(spm, 18), f"SPM-18 of {where}"):
        found["receivedTime"] = received
    return found


# -- Observation -----------------------------------------------------------------------------
def observation_key(obx: hl7.Segment, order: Order, position: int) -> str:
    """The result's identifier value: filler order + OBX-1 (+ OBX-4 when given), so that
    a correction or a resend of the same result finds the same Observation."""
    key = f"{order.filler}-{leaf(obx, 1) or position}"
    sub_id = leaf(obx, 4)
    return f"{key}.{sub_id}" if sub_id else key


def observation(
    obx: hl7.Segment,
    order: Order,
    position: int,
    site: SiteConfig,
    links: dict[str, Any],
) -> dict[str, Any]:
    where = f"OBX {leaf(obx, 1) or position}"
    flag = leaf(obx, 11)
    status = RESULT_STATUS.get(flag)
    if status is None:
        raise ResultDataError(
            f"OBX-11 of {where}: result status {flag!r} is not one of {', '.join(RESULT_STATUS)}"
        )
    if not leaf(obx, 3):
        raise ResultDataError(f"OBX-3 of {where}: the observation identifier is empty")
    found: dict[str, Any] = {
        "resourceType": "Observation",
        "identifier": [identifier(site.filler_order_system, observation_key(obx, order, position))],
        "status": status,
        "category": [{"coding": [{"system": OBSERVATION_CATEGORY, "code": "laboratory"}]}],
        "code": codeable(obx, 3, f"OBX-3 of {where}", site, map_loinc=True),
        **links,
    }
    effective = date_time(leaf(obx, 14), f"OBX-14 of {where}") or order.effective
    if effective:
        found["effectiveDateTime"] = effective
    if order.issued:
        found["issued"] = order.issued
    if performer := _practitioner(obx, 16):
        found["performer"] = [performer]
    unit = _unit(obx)
    found.update(_value(obx, where, site, unit))
    if ranges := _reference_range(leaf(obx, 7), unit):
        found["referenceRange"] = [ranges]
    if interpretation := _interpretation(obx):
        found["interpretation"] = interpretation
    return found


def _unit(obx: hl7.Segment) -> dict[str, Any]:
    """OBX-6 as Quantity unit fields: UCUM system when named UCUM or plain."""
    code, text, system = leaf(obx, 6, 1), leaf(obx, 6, 2), leaf(obx, 6, 3).upper()
    if not code:
        return {}
    if not system or system in UCUM_NAMES:
        return {"unit": text or code, "system": UCUM, "code": code}
    return {"unit": text or code}


def is_number(text: str) -> bool:
    """Whether ``text`` is an HL7 NM (optional sign, digits, decimal point or comma)."""
    return _NM.fullmatch(text) is not None


def parse_number(text: str) -> int | float:
    """An HL7 NM (optional sign, digits, decimal point; a comma taken as one)."""
    if not is_number(text):
        raise InvalidOperation
    number = Decimal(text.replace(",", "."))
    return (
        int(number) if number == number.to_integral_value() and "." not in text else float(number)
    )


def _value(obx: hl7.Segment, where: str, site: SiteConfig, unit: dict[str, Any]) -> dict[str, Any]:
    kind = leaf(obx, 2)
    raw = leaf(obx, 5)
    if kind == "NM":
        if not raw:
            return {}
        try:
            number = parse_number(raw)
        except (InvalidOperation, ValueError):
            raise ResultDataError(f"OBX-5 of {where}: {raw!r} is not a number (NM)") from None
        return {"valueQuantity": {"value": number, **unit}}
    if kind in ("ST", "TX", "FT"):
        count = max(1, repetition_count(obx, 5)) if kind != "ST" else 1
        text = "\n".join(leaf(obx, 5, repetition=n) for n in range(1, count + 1)).strip()
        return {"valueString": text} if text else {}
    if kind in ("CE", "CWE"):
        if not raw:
            return {}
        return {
            "valueCodeableConcept": codeable(obx, 5, f"OBX-5 of {where}", site, map_loinc=False)
        }
    raise ResultDataError(
        f"OBX-2 of {where}: value type {kind!r} is not handled (NM, ST, TX, FT, CE, CWE)"
    )


def _reference_range(text: str, unit: dict[str, Any]) -> dict[str, Any] | None:
    """OBX-7: ``low-high``, ``<x`` (high), ``>x`` (low); anything else as text."""
    if not text:
        return None
    compact = text.strip()
    if match := _RANGE.match(compact):
        return {
            "low": {"value": parse_number(match[1]), **unit},
            "high": {"value": parse_number(match[2]), **unit},
            "text": compact,
        }
    if match := _BOUND.match(compact):
        side = "high" if match[1] == "<" else "low"
        return {side: {"value": parse_number(match[2]), **unit}, "text": compact}
    return {"text": compact}


def _interpretation(obx: hl7.Segment) -> list[dict[str, Any]]:
    found = []
    for number in range(1, repetition_count(obx, 8) + 1):
        flag = leaf(obx, 8, repetition=number)
        if not flag:
            continue
        if flag in FLAGS:
            coding = {"system": INTERPRETATION, "code": flag, "display": FLAGS[flag]}
            found.append({"coding": [coding], "text": flag})
        else:
            found.append({"text": flag})
    return found
