"""Reading messages with python-hl7 (the ``hl7`` package): escapes, repetitions and
components handled by the library, never by ``split('|')`` on a whole message.

python-hl7 raises many kinds of exception on malformed input (IndexError, KeyError,
ParseException...): everything here turns them into ``None`` or ``ParseFailure``.
"""

from __future__ import annotations

import functools

import hl7
from hl7.util import unescape as hl7_unescape

_ALNUM = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")


class ParseFailure(ValueError):
    """python-hl7 could not read the text as an HL7 message."""


def segments(text: str) -> list[str]:
    """The segments of a decoded message. HL7 separates them with CR; LF and CRLF, which
    some senders write, are taken as CR (a field cannot hold a raw line break)."""
    normalized = text.replace("\r\n", "\r").replace("\n", "\r")
    return [segment for segment in normalized.strip(" \t\r").split("\r") if segment.strip()]


def separators_problem(msh: str) -> str | None:
    """Why MSH-1/MSH-2 cannot be used as separators, or None when they can."""
    if len(msh) < 8:
        return "MSH is too short to hold its separators"
    field, encoding = msh[3], msh[4:8]
    chosen = [field, *encoding]
    if any(char in _ALNUM or char in " \r\n" for char in chosen):
        return "MSH-1/MSH-2 separators must not be letters, digits or blanks"
    if len(set(chosen)) != len(chosen):
        return "MSH-1/MSH-2 separators must be five distinct characters"
    after = msh[8:9]
    # 4 encoding characters (v2.5), or 5 with the truncation character (v2.7+)
    if after and after != field and (after in _ALNUM or msh[9:10] != field):
        return "MSH-2 must be followed by the field separator"
    return None


def parse(text: str) -> hl7.Message:
    """The whole message, or ParseFailure."""
    try:
        message = hl7.parse("\r".join(segments(text)))
    except Exception as error:  # python-hl7 raises anything on malformed input
        # The library's message may quote the segment (patient data): keep only the kind.
        raise ParseFailure(f"python-hl7 failed ({type(error).__name__})") from error
    if not isinstance(message, hl7.Message):
        raise ParseFailure("not a single HL7 message")
    return message


def value(
    message: hl7.Message,
    segment: str,
    field: int,
    component: int = 1,
    *,
    repetition: int = 1,
    subcomponent: int = 1,
) -> str:
    """One leaf value (unescaped), or '' when the message does not have it."""
    try:
        found = message.extract_field(segment, 1, field, repetition, component, subcomponent)
    except (KeyError, IndexError, ValueError, TypeError, AttributeError):
        return ""
    return str(found).strip()


def repetitions(message: hl7.Message, segment: str, field: int) -> int:
    """How many repetitions the field has in the first such segment (0 when absent)."""
    try:
        found = message.segment(segment)
        if field >= len(found):
            return 0
        return len(found(field))
    except (KeyError, IndexError, ValueError, TypeError, AttributeError):
        return 0


_ITEM = list.__getitem__  # python-hl7's containers are lists; their own [] adds a check


def segment_value(
    segment: hl7.Segment,
    field: int,
    repetition: int = 1,
    component: int = 1,
    subcomponent: int = 1,
) -> str:
    """One leaf of a parsed segment, unescaped and stripped, or '' when absent: what
    ``str(segment.extract_field(1, field, repetition, component, subcomponent)).strip()``
    gives (an absent path included), at a fraction of its cost: a message's mapping
    reads a hundred leaves, and python-hl7 builds an accessor record and goes through
    its 1-based indexing for each. MSH (whose first fields are the separators) is left
    to python-hl7."""
    try:
        if field < 1 or repetition < 1 or component < 1 or subcomponent < 1:
            raise IndexError("HL7 positions start at 1")
        if _ITEM(segment, 0)[0] == "MSH":
            found = segment.extract_field(1, field, repetition, component, subcomponent)
            return str(found).strip()
        if field >= len(segment):
            return ""
        value = _ITEM(_ITEM(segment, field), repetition - 1)
        if not isinstance(value, hl7.Repetition):
            if component == 1 and subcomponent == 1:
                return str(hl7_unescape(segment, value)).strip()
            return ""
        if component > len(value):
            return ""
        part = _ITEM(value, component - 1)
        if not isinstance(part, hl7.Component):
            return str(hl7_unescape(segment, part)).strip() if subcomponent == 1 else ""
        if subcomponent > len(part):
            return ""
        return str(hl7_unescape(segment, _ITEM(part, subcomponent - 1))).strip()
    except (KeyError, IndexError, ValueError, TypeError, AttributeError):
        return ""


@functools.cache
def _escape_context(separators: str, esc: str) -> hl7.Message:
    # python-hl7's unescape reads the separators and escape character from a container.
    return hl7.Message(separators=separators, esc=esc)


class HeaderReader:
    """The few MSH and PID-3 values the ACK path needs, read without building python-hl7's
    tree (which costs more than the INSERT that follows): the segment is split at the
    message's own separators (MSH-1/MSH-2), first repetition, component and subcomponent
    as python-hl7's ``extract_field`` takes them, values unescaped by python-hl7's
    ``unescape``. A separator inside a value is always escaped, so the splits are exact.
    ``separators_problem`` must have accepted the MSH first.
    """

    def __init__(self, msh: str, pid: str | None) -> None:
        self.field = msh[3]
        self.component, self.repetition, esc, self.subcomponent = (
            msh[4],
            msh[5],
            msh[6],
            msh[7],
        )
        separators = "\r" + self.field + self.repetition + self.component + self.subcomponent
        self._context = _escape_context(separators, esc)
        self._escape = esc
        # index n is MSH-n: MSH-1 is the field separator itself
        self._msh = ["MSH", self.field, *msh[4:].split(self.field)]
        self._pid = pid.split(self.field) if pid else []

    def msh(self, field: int, component: int = 1) -> str:
        return self._leaf(self._msh[field] if field < len(self._msh) else "", component)

    def split(self, segment: str) -> list[str]:
        """Another segment's fields: index n is field n (index 0 the segment's name)."""
        return segment.split(self.field)

    def value(self, fields: list[str], field: int, component: int = 1) -> str:
        """A field's first repetition, one component, its first subcomponent, unescaped."""
        return self._leaf(fields[field] if field < len(fields) else "", component)

    def pid3(self) -> list[tuple[str, str, str, str]]:
        """(CX-1, CX-4.1, CX-4.2, CX-5) of each PID-3 repetition."""
        if len(self._pid) <= 3 or not self._pid[3]:
            return []
        found = []
        for repetition in self._pid[3].split(self.repetition):
            components = repetition.split(self.component)
            authority = components[3].split(self.subcomponent) if len(components) > 3 else []
            found.append(
                (
                    self._unescape(components[0].split(self.subcomponent)[0]),
                    self._unescape(authority[0]) if authority else "",
                    self._unescape(authority[1]) if len(authority) > 1 else "",
                    self._leaf(components[4], 1) if len(components) > 4 else "",
                )
            )
        return found

    def _leaf(self, value: str, component: int) -> str:
        first = value.partition(self.repetition)[0]
        if component == 1:  # the common case, without building the component list
            part = first.partition(self.component)[0]
        else:
            components = first.split(self.component)
            if component > len(components):
                return ""
            part = components[component - 1]
        return self._unescape(part.partition(self.subcomponent)[0])

    def _unescape(self, value: str) -> str:
        if self._escape not in value:  # most values: nothing to unescape
            return value.strip()
        return str(hl7_unescape(self._context, value)).strip()
