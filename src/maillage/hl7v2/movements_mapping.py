"""IHE PAM FR movements (ITI-31) as FHIR, pure: a parsed ADT message to a ``Movement``,
a visit's movements to its Encounter (one per visit, identifier: PV1-19 in the site's
visit number system).

The movements (ZBE-1) are stored in the Encounter, one complex extension ``MOVEMENT_URL``
each (read back by ``movements_of``): event (the inserting trigger), status (planned,
active, completed; entered-in-error once cancelled: kept, so that replaying its insert or
cancel changes nothing), period (ZBE-2 to the next movement), PV1-2, the UF
responsibilities — ``hostingUnit`` PV1-3.1, ``medicalUnit`` ZBE-7, ``careUnit`` ZBE-8:
logical references to the UF Organization by its code in the UF system (ZBE-7.6's OID),
as the demo territory models units —, room and bed, ZBE-9, ``attending`` PV1-7, PV1-44/45.
``encounter`` derives the rest from that list: status, class (+ classHistory), period,
``Encounter.location`` (one entry per movement with a place, its ZBE-1 in
``MOVEMENT_ID_URL``) and the attending doctors (participant ATND) with their periods.
A data problem raises ``MovementDataError`` (a ``PermanentFailure``) naming the field.
"""

from __future__ import annotations

import datetime as dt
import itertools
from dataclasses import dataclass
from typing import Any

import hl7

from maillage.hl7v2.parsing import segment_value
from maillage.hl7v2.processing import PermanentFailure
from maillage.hl7v2.results_mapping import SITE_ZONE, date_time, identifier, leaf
from maillage.hl7v2.sites import SiteConfig

MOVEMENT_URL = "https://maillage.org/fhir/StructureDefinition/encounter-movement"
MOVEMENT_ID_URL = "https://maillage.org/fhir/StructureDefinition/encounter-movement-id"
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
PATIENT_CLASS = "http://terminology.hl7.org/CodeSystem/v2-0004"
PARTICIPATION = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
FINESS = "https://finess.esante.gouv.fr"

# PV1-2 (IHE PAM FR 6.10.1) -> Encounter.class (v3 ActCode)
# (R, séances: partial hospitalisation, counts as inpatient as in 6.10.1's I)
CLASSES = {
    **{"I": ("IMP", "inpatient encounter"), "R": ("IMP", "inpatient encounter")},
    **{"O": ("AMB", "ambulatory"), "E": ("EMER", "emergency"), "V": ("VR", "virtual")},
}
# ZBE-9 (IHE PAM FR 6.13.9)
NATURES = ("S", "H", "M", "L", "D", "SM", "SH", "MH", "LD", "HMS", "C")
ACTIONS = ("INSERT", "UPDATE", "CANCEL")
# Triggers inserting a movement (IHE PAM FR 5.3.2); the pending ones are planned.
PENDING = frozenset({"A05", "A14", "A15", "A16"})
INSERTS = PENDING | {"A01", "A04", "A06", "A07", "A54", "A02", "A03", "A21", "A22"}
# The events that may open a visit (the others need its Encounter).
OPENING = frozenset({"A05", "A14", "A01", "A04"})
# Cancel trigger -> the insert triggers it cancels (5.3.2; A06/A07 cancel each other, 5.3.5).
CANCELS = {
    **{"A38": ("A05",), "A11": ("A01", "A04"), "A27": ("A14",), "A12": ("A02",)},
    **{"A26": ("A15",), "A13": ("A03",), "A25": ("A16",), "A52": ("A21",)},
    **{"A53": ("A22",), "A55": ("A54",), "A06": ("A07",), "A07": ("A06",)},
}
# Legacy French events, removed by CP-ITI-FR-2013-079 (appendix) and replaced by A02 with
# the nature of the change in ZBE-9; an old feed may still send them: read as their
# replacement (the pending changes as A15, the cancels as A12 / A26), ZBE-9 defaulting to
# the change they named (M medical UF, S care UF, D medico-administrative conditions).
LEGACY = {
    **{"Z80": ("A02", "M"), "Z81": ("A12", "M"), "Z82": ("A15", "M"), "Z83": ("A26", "M")},
    **{"Z84": ("A02", "S"), "Z85": ("A12", "S"), "Z86": ("A15", "S"), "Z87": ("A26", "S")},
    **{"Z88": ("A02", "D"), "Z89": ("A12", "D")},
}
# The hosting UF (PV1-3.1) is required with these inserts (5.1.1).
NEEDS_UNIT = INSERTS - {"A05", "A54", "A21", "A22"}


class MovementDataError(PermanentFailure):
    """A field of the message is missing or wrong, or does not fit the visit's
    movements; the reason names the field."""


@dataclass(frozen=True, slots=True)
class Ref:
    """A logical reference: an identifier (system may be '') and a display."""

    type: str
    system: str
    value: str
    display: str = ""

    def json(self) -> dict[str, Any]:
        ident = {"system": self.system} if self.system else {}
        found = {"type": self.type, "identifier": {**ident, "value": self.value}}
        return {**found, "display": self.display} if self.display else found


@dataclass(frozen=True, slots=True)
class Movement:
    id: str
    event: str  # the trigger that inserted it
    start: str  # ZBE-2
    patient_class: str  # PV1-2
    unit: Ref | None = None  # PV1-3.1, the hosting UF
    room: str = ""
    bed: str = ""
    medical: Ref | None = None  # ZBE-7
    care: Ref | None = None  # ZBE-8
    nature: str = ""  # ZBE-9
    attending: Ref | None = None  # PV1-7
    admitted: str | None = None  # PV1-44
    discharged: str | None = None  # PV1-45
    # MSH-7 of the message that last wrote it: a Z99 older than this one is stale
    recorded: str | None = None
    cancelled: bool = False

    @property
    def pending(self) -> bool:
        return self.event in PENDING

    @property
    def has_place(self) -> bool:  # a discharge leaves its place: it has none of its own
        return bool(self.unit or self.room or self.bed) and self.event != "A03"


@dataclass(frozen=True, slots=True)
class MovementMessage:
    trigger: str
    action: str  # ZBE-4
    historic: bool  # ZBE-5
    original: str  # ZBE-6
    visit: str  # PV1-19
    account: str  # PID-18
    movement: Movement


def segment(message: hl7.Message, name: str, what: str) -> hl7.Segment:
    try:
        return message.segment(name)
    except KeyError:
        raise MovementDataError(f"{name}: the message has no {what} ({name} segment)") from None


def uf_system(site: SiteConfig, oid: str = "") -> str:
    """The system of the site's UF codes: the assigning authority's OID when the message
    gives it (ZBE-7.6.2), else ``urn:maillage:site:<code>:uf``."""
    return f"urn:oid:{oid}" if oid else f"urn:maillage:site:{site.code}:uf"


def account_system(site: SiteConfig) -> str:
    """The system of the site's account numbers (PID-18, NDA)."""
    return f"urn:maillage:site:{site.code}:account"


def _unit(zbe: hl7.Segment, field: int, site: SiteConfig) -> Ref | None:
    """ZBE-7/8 (XON): code in XON-10 (XON-1 when only it is given), label XON-1, assigning
    authority XON-6."""
    label, code = leaf(zbe, field, 1), leaf(zbe, field, 10)
    if not code:
        code, label = label, ""
    if not code:
        return None
    return Ref("Organization", uf_system(site, segment_value(zbe, field, 1, 6, 2)), code, label)


def _doctor(pv1: hl7.Segment) -> Ref | None:
    """PV1-7 (XCN, first repetition): id^family^given, assigning authority XCN-9."""
    code, family, given = (leaf(pv1, 7, n) for n in (1, 2, 3))
    if not (code or family):
        return None
    oid = segment_value(pv1, 7, 1, 9, 2)
    display = " ".join(part for part in (given, family) if part)
    return Ref("Practitioner", f"urn:oid:{oid}" if oid else "", code or display, display)


def read_movement(message: hl7.Message, trigger: str, site: SiteConfig) -> MovementMessage:
    """The movement a message inserts, updates or cancels; data errors name the field."""
    trigger, legacy_nature = LEGACY.get(trigger, (trigger, ""))
    pid = segment(message, "PID", "patient")
    pv1 = segment(message, "PV1", "visit")
    zbe = segment(message, "ZBE", "movement")
    visit = leaf(pv1, 19)
    if not visit:
        raise MovementDataError("PV1-19: the visit number is empty")
    movement_id = leaf(zbe, 1)
    if not movement_id:
        raise MovementDataError("ZBE-1: the movement id is empty")
    start = date_time(leaf(zbe, 2), "ZBE-2")
    if start is None:
        raise MovementDataError("ZBE-2: the movement's date/time is empty")
    action = leaf(zbe, 4)
    if legacy_nature and not action:  # before ZBE-4 was required
        action = "CANCEL" if trigger in CANCELS else "INSERT"
    action = check_action(action, trigger)
    flag = leaf(zbe, 5) or "N"
    if flag not in ("Y", "N"):
        raise MovementDataError(f"ZBE-5: historic indicator {flag!r} is not Y or N")
    original = leaf(zbe, 6)
    if action == "UPDATE" and not original:
        raise MovementDataError("ZBE-6: the original trigger event is empty (required by Z99)")
    nature = leaf(zbe, 9) or legacy_nature
    # the table's letters in any order: IHE PAM FR 7.1.3 itself sends HM for MH
    if nature and sorted(nature) not in (sorted(code) for code in NATURES):
        raise MovementDataError(f"ZBE-9: nature {nature!r} is not one of {', '.join(NATURES)}")
    patient_class = leaf(pv1, 2)
    if patient_class not in CLASSES:
        raise MovementDataError(
            f"PV1-2: patient class {patient_class!r} is not one of {', '.join(CLASSES)}"
        )
    medical = _unit(zbe, 7, site)
    code = leaf(pv1, 3, 1)
    if action == "INSERT" and trigger in NEEDS_UNIT and not code:
        raise MovementDataError(
            f"PV1-3: the hosting unit (PV1-3.1) is empty; {trigger} requires it (IHE PAM FR 5.1.1)"
        )
    unit_system = medical.system if medical else uf_system(site)
    event = trigger if action == "INSERT" else original
    return MovementMessage(
        trigger=trigger,
        action=action,
        historic=flag == "Y",
        original=original,
        visit=visit,
        account=leaf(pid, 18),
        movement=Movement(
            id=movement_id,
            event=event,
            start=start,
            patient_class=patient_class,
            unit=Ref("Organization", unit_system, code) if code else None,
            room=leaf(pv1, 3, 2),
            bed=leaf(pv1, 3, 3),
            medical=medical,
            care=_unit(zbe, 8, site),
            nature=nature,
            attending=_doctor(pv1),
            admitted=date_time(leaf(pv1, 44), "PV1-44"),
            discharged=date_time(leaf(pv1, 45), "PV1-45"),
            recorded=date_time(leaf(segment(message, "MSH", "header"), 7), "MSH-7"),
        ),
    )


def check_action(action: str, trigger: str) -> str:
    if action not in ACTIONS:
        raise MovementDataError(f"ZBE-4: action {action!r} is not one of {', '.join(ACTIONS)}")
    if trigger == "Z99":
        expected: tuple[str, ...] = ("UPDATE",)
    elif trigger in ("A06", "A07"):
        expected = ("INSERT", "CANCEL")  # a cancel of the opposite switch (5.3.5)
    elif trigger in CANCELS:
        expected = ("CANCEL",)
    else:
        expected = ("INSERT",)
    if action not in expected:
        raise MovementDataError(
            f"ZBE-4: action {action!r} does not go with {trigger} ({' or '.join(expected)})"
        )
    return action


# -- the movements stored in the Encounter -----------------------------------------------
def moment(text: str) -> dt.datetime:
    """A FHIR dateTime as an aware datetime (a date: its midnight, site time)."""
    found = dt.datetime.fromisoformat(text if len(text) != 7 else f"{text}-01")
    return found if found.tzinfo else found.replace(tzinfo=SITE_ZONE)


def _ref_of(value: dict[str, Any]) -> Ref:
    ident = value.get("identifier", {})
    return Ref(
        value.get("type", ""), ident.get("system", ""), ident["value"], value.get("display", "")
    )


# Movement field -> (sub-extension url, value[x]); omitted when empty.
_REF, _TIME = "valueReference", "valueDateTime"
_PARTS = {
    **{"unit": ("hostingUnit", _REF), "medical": ("medicalUnit", _REF)},
    **{"care": ("careUnit", _REF), "attending": ("attending", _REF)},
    **{"room": ("room", "valueString"), "bed": ("bed", "valueString")},
    **{"nature": ("nature", "valueCode"), "admitted": ("admitted", _TIME)},
    **{"discharged": ("discharged", _TIME), "recorded": ("recorded", _TIME)},
}


def movement_extension(m: Movement, status: str, end: str | None) -> dict[str, Any]:
    parts: list[dict[str, Any]] = [
        {"url": "movementId", "valueString": m.id},
        {"url": "event", "valueCode": m.event},
        {"url": "status", "valueCode": "entered-in-error" if m.cancelled else status},
        {"url": "period", "valuePeriod": {"start": m.start, **({"end": end} if end else {})}},
        {"url": "patientClass", "valueCoding": {"system": PATIENT_CLASS, "code": m.patient_class}},
    ]
    for name, (url, kind) in _PARTS.items():
        if value := getattr(m, name):
            parts.append({"url": url, kind: value.json() if isinstance(value, Ref) else value})
    return {"url": MOVEMENT_URL, "extension": parts}


def movements_of(encounter: dict[str, Any]) -> list[Movement]:
    """The movements recorded in an Encounter, in their stored order."""
    found = []
    for ext in encounter.get("extension", []):
        if ext.get("url") != MOVEMENT_URL:
            continue
        parts = {part["url"]: part for part in ext.get("extension", [])}
        fields: dict[str, Any] = {
            name: _ref_of(value) if kind == _REF else value
            for name, (url, kind) in _PARTS.items()
            if (value := parts.get(url, {}).get(kind))
        }
        found.append(
            Movement(
                id=parts["movementId"]["valueString"],
                event=parts["event"]["valueCode"],
                start=parts["period"]["valuePeriod"]["start"],
                patient_class=parts["patientClass"]["valueCoding"]["code"],
                cancelled=parts["status"]["valueCode"] == "entered-in-error",
                **fields,
            )
        )
    return found


# -- the Encounter -------------------------------------------------------------------------
def _place(m: Movement, current: bool, end: str | None, site: SiteConfig) -> dict[str, Any]:
    """An Encounter.location entry: PV1-3 (UF^room^bed) during the movement's period."""
    parts = [m.unit.value if m.unit else "", m.room, m.bed]
    labels = [f"UF {parts[0]}", f"chambre {m.room}", f"lit {m.bed}"]
    value = "^".join(parts).rstrip("^")
    place = {"system": f"urn:maillage:site:{site.code}:location", "value": value}
    display = ", ".join(label for part, label in zip(parts, labels, strict=True) if part)
    status = ("reserved" if m.event == "A21" else "active") if current else "completed"
    return {
        "extension": [{"url": MOVEMENT_ID_URL, "valueString": m.id}],
        "location": {"type": "Location", "identifier": place, "display": display},
        "status": status,
        "period": {"start": m.start, **({"end": end} if end else {})},
    }


def _class(code: str) -> dict[str, Any]:
    act, display = CLASSES[code]
    return {"system": ACT_CODE, "code": act, "display": display}


def encounter(
    movements: list[Movement],
    *,
    visit: str,
    account: str,
    subject: str,
    site: SiteConfig,
) -> dict[str, Any]:
    """The visit's Encounter from its movements (cancelled ones included, as records)."""
    live = [m for m in movements if not m.cancelled]
    actual = [m for m in live if not m.pending]
    last = actual[-1] if actual else None
    ends = {m.id: nxt.start for m, nxt in itertools.pairwise(actual)}
    if not live:
        status = "cancelled"
    elif last is None:
        status = "planned"
    else:
        status = {"A03": "finished", "A21": "onleave"}.get(last.event, "in-progress")
    found: dict[str, Any] = {
        "resourceType": "Encounter",
        "identifier": [identifier(site.visit_number_system, visit, "VN")],
        "status": status,
        "class": _class((last or (live or movements)[-1]).patient_class),
        "subject": {"reference": subject},
    }
    if account:
        found["identifier"].append(identifier(account_system(site), account, "AN"))
    spans = _spans(actual, lambda m: m.patient_class, ends)
    if len(spans) > 1:
        found["classHistory"] = [{"class": _class(code), "period": p} for code, p in spans]
    if actual:
        opening = actual[0]
        period = {"start": opening.admitted or opening.start}
        if status == "finished" and last is not None:
            period["end"] = last.discharged or last.start
        found["period"] = period
    atnd = [{"coding": [{"system": PARTICIPATION, "code": "ATND"}]}]
    spans = _spans(actual, lambda m: m.attending, ends)
    if doctors := [{"type": atnd, "period": p, "individual": r.json()} for r, p in spans if r]:
        found["participant"] = doctors
    provider = Ref("Organization", FINESS, site.finess).json()
    if site.organization_id:
        provider = {"reference": f"Organization/{site.organization_id}"}
    found["serviceProvider"] = provider
    if places := [_place(m, m is last, ends.get(m.id), site) for m in actual if m.has_place]:
        found["location"] = places
    found["extension"] = [
        movement_extension(m, _movement_status(m, last), ends.get(m.id)) for m in movements
    ]
    return found


def _movement_status(m: Movement, last: Movement | None) -> str:
    if m.pending:
        later = last is not None and moment(last.start) >= moment(m.start)
        return "completed" if later else "planned"
    return "active" if m is last and m.event != "A03" else "completed"


def _spans(
    actual: list[Movement], key: Any, ends: dict[str, str]
) -> list[tuple[Any, dict[str, str]]]:
    """Consecutive movements with the same ``key`` as (value, period)."""
    spans: list[tuple[Any, dict[str, str]]] = []
    for m in actual:
        value = key(m)
        if m.event == "A03":  # ends the previous span (``ends``), opens none
            continue
        if spans and spans[-1][0] == value:
            spans[-1][1].pop("end", None)
        else:
            spans.append((value, {"start": m.start}))
        if m.id in ends:
            spans[-1][1]["end"] = ends[m.id]
    return spans
