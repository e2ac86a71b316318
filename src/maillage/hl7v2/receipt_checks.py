"""The field checks made before the ACK: a message whose required fields are missing or
malformed is answered AE with an ERR naming the field, and kept with its error, instead of
an AA followed by a dead letter the sender never hears of.

Only what processing would certainly refuse is checked here, with the same rules and
tables as the mappings (``identity_mapping``, ``movements_mapping``, ``results_mapping``):
the segments each event needs, required fields, coded values, dates. What needs the
store (an unknown IPP or visit, a movement id never inserted) or the clock (a birth date
in the future) is left to processing. Pure; the values are read by the split reader of
the ACK path (``parsing.HeaderReader``), not python-hl7's tree, to keep the ACK rate.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from typing import Final

from maillage.hl7v2.acks import ErrorDetail, ErrorLocation
from maillage.hl7v2.identity_mapping import GENDERS
from maillage.hl7v2.movements_mapping import (
    CANCELS,
    CLASSES,
    INSERTS,
    LEGACY,
    NATURES,
    NEEDS_UNIT,
    MovementDataError,
    check_action,
)
from maillage.hl7v2.parsing import HeaderReader
from maillage.hl7v2.results_mapping import (
    REPORT_STATUS,
    RESULT_STATUS,
    ResultDataError,
    date_time,
    instant,
    is_number,
)

# HL7 table 0357
SEGMENT_SEQUENCE, REQUIRED_MISSING, DATA_TYPE, TABLE_VALUE = 100, 101, 102, 103
MOVEMENTS: Final = frozenset({*INSERTS, *CANCELS, "Z99", *LEGACY})
MERGES: Final = frozenset({"A40", "A47"})
LINKS: Final = frozenset({"A24", "A37"})
VALUE_TYPES: Final = ("NM", "ST", "TX", "FT", "CE", "CWE")


class _Refused(Exception):
    def __init__(self, detail: ErrorDetail) -> None:
        self.detail = detail


class _Message:
    """The segments of one message, by name, split into fields."""

    def __init__(self, reader: HeaderReader, segments: list[str]) -> None:
        self.reader = reader
        self.by_name: dict[str, list[list[str]]] = {}
        self.order: list[list[str]] = []
        for text in segments[1:]:
            fields = reader.split(text)
            self.by_name.setdefault(fields[0], []).append(fields)
            self.order.append(fields)

    def one(self, name: str, what: str) -> list[str]:
        found = self.by_name.get(name)
        if not found:
            raise _Refused(
                ErrorDetail(
                    ErrorLocation(name), SEGMENT_SEQUENCE, f"the message has no {what} ({name})"
                )
            )
        return found[0]

    def value(self, fields: list[str], field: int, component: int = 1) -> str:
        return self.reader.value(fields, field, component)


def check(
    reader: HeaderReader, segments: list[str], message_type: str, trigger: str
) -> ErrorDetail | None:
    """The first problem of a message the hub processes, or None."""
    checker = _checker(message_type, trigger)
    if checker is None:
        return None
    try:
        checker(_Message(reader, segments), trigger)
    except _Refused as refused:
        return refused.detail
    return None


def _checker(message_type: str, trigger: str) -> Callable[[_Message, str], None] | None:
    if message_type == "ORU" and trigger == "R01":
        return _results
    if message_type != "ADT":
        return None
    if trigger in ("A28", "A31"):
        return _identity
    if trigger in MERGES:
        return _merge
    if trigger in LINKS:
        return _link
    if trigger in MOVEMENTS:
        return _movement
    return None


def _problem(segment: str, field: int, code: int, text: str) -> _Refused:
    return _Refused(ErrorDetail(ErrorLocation(segment, field), code, text))


def _date(
    message: _Message, fields: list[str], field: int, where: str, *, full: bool = False
) -> None:
    """A date/time field, as the mappings read it (``full``: an instant, a whole date)."""
    text = message.value(fields, field)
    if text and (problem := _date_problem(text, full)) is not None:
        raise _problem(fields[0], field, DATA_TYPE, problem.replace(_WHERE, where))


_WHERE: Final = "\x00"


@lru_cache(maxsize=4096)
def _date_problem(text: str, full: bool) -> str | None:
    """Why ``text`` is not a date/time the mappings read (``_WHERE`` for the field's
    name), None when it is; remembered: a message repeats its dates (OBX-14...)."""
    try:
        (instant if full else date_time)(text, _WHERE)
    except ResultDataError as error:
        return str(error)
    return None


def _required(message: _Message, fields: list[str], field: int, said: str) -> str:
    """The field's value; ``said`` (the mapping's own words) when it is empty."""
    text = message.value(fields, field)
    if not text:
        raise _problem(fields[0], field, REQUIRED_MISSING, said)
    return text


def _coded(message: _Message, fields: list[str], field: int, allowed: object, said: str) -> None:
    """A coded value from ``allowed``; ``said`` with ``{code}`` when it is not."""
    code = message.value(fields, field)
    if code and code not in allowed:  # type: ignore[operator]
        raise _problem(fields[0], field, TABLE_VALUE, said.format(code=repr(code)))


# -- ITI-30 ------------------------------------------------------------------------------
def _patient(message: _Message) -> list[str]:
    pid = message.one("PID", "patient")
    _date(message, pid, 7, "PID-7")
    _date(message, pid, 29, "PID-29")
    _coded(message, pid, 30, ("Y", "N"), "PID-30: death indicator {code} is not Y or N")
    code = message.value(pid, 8).upper()
    if code and code not in GENDERS:
        raise _problem(
            "PID", 8, TABLE_VALUE, f"PID-8: administrative sex {code!r} is not one of F, M, U"
        )
    return pid


def _identity(message: _Message, trigger: str) -> None:
    _patient(message)


def _merge(message: _Message, trigger: str) -> None:
    _patient(message)
    mrg = message.one("MRG", "prior identifiers")
    _required(message, mrg, 1, "MRG-1: the prior patient identifier list is empty")


def _link(message: _Message, trigger: str) -> None:
    _patient(message)
    if len(message.by_name.get("PID", [])) < 2:
        raise _Refused(
            ErrorDetail(
                ErrorLocation("PID"),
                SEGMENT_SEQUENCE,
                f"an {trigger} carries two PID segments (the two identities)",
            )
        )


# -- ITI-31 ------------------------------------------------------------------------------
def _movement(message: _Message, trigger: str) -> None:
    message.one("PID", "patient")
    sent = message.reader.msh(7)  # the movement keeps it: a Z99 older than it is stale
    if sent and (problem := _date_problem(sent, False)) is not None:
        raise _problem("MSH", 7, DATA_TYPE, problem.replace(_WHERE, "MSH-7"))
    pv1 = message.one("PV1", "visit")
    zbe = message.one("ZBE", "movement")
    _required(message, pv1, 19, "PV1-19: the visit number is empty")
    classes = ", ".join(CLASSES)
    _coded(message, pv1, 2, CLASSES, f"PV1-2: patient class {{code}} is not one of {classes}")
    real, legacy_nature = LEGACY.get(trigger, (trigger, ""))
    action = message.value(zbe, 4)
    if (action or "INSERT") == "INSERT" and real in NEEDS_UNIT and not message.value(pv1, 3):
        raise _problem(
            "PV1", 3, REQUIRED_MISSING,
            f"PV1-3: the hosting unit (PV1-3.1) is empty; {real} requires it (IHE PAM FR 5.1.1)",
        )  # fmt: skip
    _date(message, pv1, 44, "PV1-44")
    _date(message, pv1, 45, "PV1-45")
    _required(message, zbe, 1, "ZBE-1: the movement id is empty")
    _required(message, zbe, 2, "ZBE-2: the movement's date/time is empty")
    _date(message, zbe, 2, "ZBE-2")
    if action or not legacy_nature:
        try:
            check_action(action, real)
        except MovementDataError as error:
            raise _problem("ZBE", 4, TABLE_VALUE, str(error)) from None
    _coded(message, zbe, 5, ("Y", "N"), "ZBE-5: historic indicator {code} is not Y or N")
    if action == "UPDATE":
        _required(message, zbe, 6, "ZBE-6: the original trigger event is empty (required by Z99)")
    nature = message.value(zbe, 9)
    if nature and sorted(nature) not in (sorted(code) for code in NATURES):
        raise _problem(
            "ZBE", 9, TABLE_VALUE, f"ZBE-9: nature {nature!r} is not one of {', '.join(NATURES)}"
        )


# -- ORU^R01 ------------------------------------------------------------------------------
def _results(message: _Message, trigger: str) -> None:
    message.one("PID", "patient")
    message.one("OBR", "order")
    for number, obr in enumerate(message.by_name["OBR"], start=1):
        where = f"OBR {message.value(obr, 1) or number}"
        _required(message, obr, 3, f"OBR-3 of {where}: the filler order number is empty")
        _date(message, obr, 7, f"OBR-7 of {where}")
        _date(message, obr, 22, f"OBR-22 of {where}", full=True)
        status = message.value(obr, 25)
        if status not in REPORT_STATUS:
            raise _problem(
                "OBR", 25, TABLE_VALUE if status else REQUIRED_MISSING,
                f"OBR-25 of {where}: result status {status!r} is not one of P, F, C, X",
            )  # fmt: skip
    for number, obx in enumerate(message.by_name.get("OBX", []), start=1):
        _observation(message, obx, f"OBX {message.value(obx, 1) or number}")
    for number, spm in enumerate(message.by_name.get("SPM", []), start=1):
        where = f"SPM {message.value(spm, 1) or number}"
        _date(message, spm, 17, f"SPM-17 of {where}")
        _date(message, spm, 18, f"SPM-18 of {where}", full=True)


def _observation(message: _Message, obx: list[str], where: str) -> None:
    status = message.value(obx, 11)
    if status not in RESULT_STATUS:
        code = REQUIRED_MISSING if not status else TABLE_VALUE
        raise _problem(
            "OBX", 11, code,
            f"OBX-11 of {where}: result status {status!r} is not one of {', '.join(RESULT_STATUS)}",
        )  # fmt: skip
    _required(message, obx, 3, f"OBX-3 of {where}: the observation identifier is empty")
    kind = message.value(obx, 2)
    if kind not in VALUE_TYPES:
        raise _problem(
            "OBX", 2, TABLE_VALUE,
            f"OBX-2 of {where}: value type {kind!r} is not handled ({', '.join(VALUE_TYPES)})",
        )  # fmt: skip
    raw = message.value(obx, 5)
    if kind == "NM" and raw and not is_number(raw):
        raise _problem("OBX", 5, DATA_TYPE, f"OBX-5 of {where}: {raw!r} is not a number (NM)")
    _date(message, obx, 14, f"OBX-14 of {where}")
