"""The leaf accessor the mappings read every field with: python-hl7's own answer for
every position of every sample segment (present, absent, deeper or shallower than the
tree), escapes included."""

from __future__ import annotations

import re
from itertools import product

import hl7

from maillage.hl7v2 import parsing
from tests.hl7v2.messages import FIXTURES

# Escapes, repetitions, components and subcomponents beside the samples' own fields.
EXTRA = (
    "ZZZ|a\\F\\b\\S\\c|r1~r2^c2~r3^c3&s2&s3|^^|&&x|~|\\E\\T\\R\\|\\X41\\|  spaced  ^ c2 &s2 |one"
)


def _python_hl7(segment: hl7.Segment, *position: int) -> str:
    try:
        return str(segment.extract_field(1, *position)).strip()
    except (KeyError, IndexError, ValueError, TypeError, AttributeError):
        return ""


def _samples() -> list[hl7.Segment]:
    found = []
    for path in sorted(FIXTURES.rglob("*.hl7")):
        text = re.sub(r"\{[a-z_]+\}", "X", path.read_text(encoding="utf-8"))
        lines = [line for line in text.splitlines() if line.strip()]
        message = parsing.parse("\r".join([*lines, EXTRA]))
        found.extend(message)
    return found


def test_every_position_reads_as_python_hl7_reads_it() -> None:
    segments = _samples()
    assert len(segments) > 40
    compared = 0
    for segment in segments:
        for field, repetition, component, sub in product(
            range(len(segment) + 2), range(0, 4), range(1, 7), range(1, 4)
        ):
            if field == 0 or repetition == 0:
                # python-hl7 reads position 0 as 1: the mappings never ask for it
                assert parsing.segment_value(segment, field, repetition or 1, component, sub) in (
                    "",
                    _python_hl7(segment, field or 1, repetition or 1, component, sub),
                )
                continue
            expected = _python_hl7(segment, field, repetition, component, sub)
            assert parsing.segment_value(segment, field, repetition, component, sub) == expected, (
                str(segment[0]),
                field,
                repetition,
                component,
                sub,
            )
            compared += 1
    assert compared > 50_000


def test_escapes_are_read_and_absent_positions_are_empty() -> None:
    message = parsing.parse("MSH|^~\\&|A|B|C|D|20240101||ORU^R01|1|P|2.5\r" + EXTRA)
    extra = message.segment("ZZZ")
    assert parsing.segment_value(extra, 1) == "a|b^c"
    assert parsing.segment_value(extra, 2, 3, 2, 3) == "s3"
    assert parsing.segment_value(extra, 6) == "\\T~"  # \E\ then T then \R\
    assert parsing.segment_value(extra, 7) == "A"
    assert parsing.segment_value(extra, 8, 1, 2) == "c2"
    assert parsing.segment_value(extra, 40) == ""
    assert parsing.segment_value(extra, 2, 9) == ""
