"""Lexical checks of FHIR R4 primitive values in their JSON form.

Each checker takes the parsed JSON value and returns ``None`` when it is valid, else a
short sentence saying what is wrong. They follow the R4 datatype regexes
(https://hl7.org/fhir/R4/datatypes.html) and the JSON format rules
(https://hl7.org/fhir/R4/json.html): booleans are JSON booleans, integers and decimals
JSON numbers, everything else a non-empty JSON string.

Where fhir.resources (fhir_core) is more lenient than the specification these checks
follow the specification; where it is stricter (the ``uuid`` type must be a version 4
UUID, dates must exist in the calendar) they keep its rule, so that nothing the models
refused is accepted now. The differences are listed in ``SPEC_OVER_MODELS`` and
exercised by ``tests/fhir/validation``.
"""

from __future__ import annotations

import binascii
import math
import re
from collections.abc import Callable
from typing import Any

Checker = Callable[[Any], str | None]

# https://hl7.org/fhir/R4/datatypes.html#string: "strings SHALL NOT exceed 1MB".
MAX_STRING_CHARS = 1024 * 1024
# https://hl7.org/fhir/R4/datatypes.html#id (fhir_core allows 255 by default).
MAX_ID_CHARS = 64
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1

_YEAR = r"([0-9]([0-9]([0-9][1-9]|[1-9]0)|[1-9]00)|[1-9]000)"
_MONTH = r"(0[1-9]|1[0-2])"
_DAY = r"(0[1-9]|[1-2][0-9]|3[0-1])"
_TIME = r"([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)(\.[0-9]+)?"
_ZONE = r"(Z|(\+|-)((0[0-9]|1[0-3]):[0-5][0-9]|14:00))"

DATE = re.compile(rf"{_YEAR}(-{_MONTH}(-{_DAY})?)?")
DATE_TIME = re.compile(rf"{_YEAR}(-{_MONTH}(-{_DAY}(T{_TIME}{_ZONE})?)?)?")
INSTANT = re.compile(rf"{_YEAR}-{_MONTH}-{_DAY}T{_TIME}{_ZONE}")
TIME = re.compile(_TIME)
ID = re.compile(rf"[A-Za-z0-9\-.]{{1,{MAX_ID_CHARS}}}")
CODE = re.compile(r"[^\s]+(\s[^\s]+)*")
OID = re.compile(r"urn:oid:[0-2](\.(0|[1-9][0-9]*))+")
# The R4 uuid regex, narrowed to version 4 (RFC 4122 variant) as fhir.resources'
# UUID4 annotation requires.
UUID = re.compile(r"urn:uuid:[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")
_WHITESPACE = re.compile(r"\s")
# A string needs one character that is a space, CR, LF, TAB or not whitespace.
_STRING_CONTENT = re.compile(r"[ \r\n\t\S]")

_JSON_NAMES = {
    str: "a string",
    int: "a number",
    float: "a number",
    bool: "a boolean",
    dict: "an object",
    list: "an array",
    type(None): "null",
}


def json_name(value: Any) -> str:
    return _JSON_NAMES.get(type(value), "another kind of value")


def _not_string(value: Any) -> str:
    return f"expected a JSON string, got {json_name(value)}"


# Days per month; February is checked against the leap-year rule separately.
_MONTH_DAYS = (0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def _calendar_problem(value: str) -> str | None:
    """For a lexically valid date, dateTime or instant with a day: does the day exist?"""
    if len(value) < 10 or value[8:10] <= "28":
        return None
    year, month, day = int(value[0:4]), int(value[5:7]), int(value[8:10])
    if day <= _MONTH_DAYS[month] and month != 2:
        return None
    if month == 2 and day == 29 and year % 4 == 0 and (year % 100 != 0 or year % 400 == 0):
        return None
    return f"day {day} is out of range for month {month:02d} of {year}"


def check_boolean(value: Any) -> str | None:
    if value is True or value is False:
        return None
    return f"expected a JSON boolean (true or false), got {json_name(value)}"


def integer_checker(kind: str, minimum: int, maximum: int) -> Checker:
    def check(value: Any) -> str | None:
        if type(value) is not int:
            if type(value) is float and value.is_integer():
                return f"expected a JSON number without a fraction ({kind}), got {value!r}"
            return f"expected a JSON number ({kind}), got {json_name(value)}"
        if minimum <= value <= maximum:
            return None
        return f"{kind} {value} is out of range {minimum}..{maximum}"

    return check


def check_decimal(value: Any) -> str | None:
    kind = type(value)
    if kind is int or (kind is float and math.isfinite(value)):
        return None
    if kind is float:
        return f"decimal {value!r} is not a finite number"
    return f"expected a JSON number (decimal), got {json_name(value)}"


def check_string(value: Any) -> str | None:
    if type(value) is not str:
        return _not_string(value)
    if not value:
        return "a string must not be empty"
    if len(value) > MAX_STRING_CHARS:
        return f"a string must not exceed {MAX_STRING_CHARS} characters"
    if value.isspace() and _STRING_CONTENT.search(value) is None:
        return "a string must have some content"
    return None


def check_markdown(value: Any) -> str | None:
    """Markdown: any non-empty string (its R4 regex takes any content)."""
    if type(value) is not str:
        return _not_string(value)
    if not value:
        return "a string must not be empty"
    if len(value) > MAX_STRING_CHARS:
        return f"a string must not exceed {MAX_STRING_CHARS} characters"
    return None


def check_code(value: Any) -> str | None:
    if type(value) is not str:
        return _not_string(value)
    if CODE.fullmatch(value):
        return None
    if not value:
        return "a code must not be empty"
    return f"invalid code {value!r}: no leading, trailing or repeated whitespace"


def check_id(value: Any) -> str | None:
    if type(value) is not str:
        return _not_string(value)
    if ID.fullmatch(value):
        return None
    return f"invalid id {value!r}: 1 to {MAX_ID_CHARS} of A-Z a-z 0-9 - ."


def check_uri(value: Any) -> str | None:
    """uri, url and canonical: a non-empty string without whitespace."""
    if type(value) is not str:
        return _not_string(value)
    if not value:
        return "a uri must not be empty"
    if _WHITESPACE.search(value) is not None:
        return f"invalid uri {value!r}: no whitespace allowed"
    return None


def check_oid(value: Any) -> str | None:
    if type(value) is not str:
        return _not_string(value)
    if OID.fullmatch(value):
        return None
    return f"invalid oid {value!r}: expected urn:oid:<digits.digits...>"


def check_uuid(value: Any) -> str | None:
    if type(value) is not str:
        return _not_string(value)
    if UUID.fullmatch(value):
        return None
    return f"invalid uuid {value!r}: expected urn:uuid:<lower-case version 4 UUID>"


def check_date(value: Any) -> str | None:
    if type(value) is not str:
        return _not_string(value)
    if not DATE.fullmatch(value):
        return f"invalid date {value!r}: expected YYYY, YYYY-MM or YYYY-MM-DD"
    problem = _calendar_problem(value)
    return None if problem is None else f"invalid date {value!r}: {problem}"


def check_date_time(value: Any) -> str | None:
    if type(value) is not str:
        return _not_string(value)
    if not DATE_TIME.fullmatch(value):
        return (
            f"invalid dateTime {value!r}: expected YYYY, YYYY-MM, YYYY-MM-DD or "
            "YYYY-MM-DDThh:mm:ss[.fff] with a time zone"
        )
    problem = _calendar_problem(value)
    return None if problem is None else f"invalid dateTime {value!r}: {problem}"


def check_instant(value: Any) -> str | None:
    if type(value) is not str:
        return _not_string(value)
    if not INSTANT.fullmatch(value):
        return f"invalid instant {value!r}: expected YYYY-MM-DDThh:mm:ss[.fff] and a time zone"
    problem = _calendar_problem(value)
    return None if problem is None else f"invalid instant {value!r}: {problem}"


def check_time(value: Any) -> str | None:
    if type(value) is not str:
        return _not_string(value)
    if TIME.fullmatch(value):
        return None
    return f"invalid time {value!r}: expected hh:mm:ss[.fff] without a time zone"


def check_base64(value: Any) -> str | None:
    """RFC 4648 base64 (whitespace between characters tolerated), correctly padded."""
    if type(value) is not str:
        return _not_string(value)
    if not value:
        return "base64Binary must not be empty"
    try:
        binascii.a2b_base64(value.encode("ascii"), strict_mode=True)
    except (binascii.Error, UnicodeEncodeError) as error:
        compact = "".join(value.split())
        if compact == value:
            return f"invalid base64Binary: {error}"
        return check_base64(compact)  # whitespace between characters is tolerated
    return None


def check_xhtml(value: Any) -> str | None:
    """Only the cheap part of the rule: a non-empty string whose root is a div."""
    if type(value) is not str:
        return _not_string(value)
    if not value.lstrip().startswith("<div"):
        return "xhtml must be a <div> element"
    return None


# Primitive kind (the FHIR type name) -> checker, for the kinds without parameters.
CHECKERS: dict[str, Checker] = {
    "boolean": check_boolean,
    "string": check_string,
    "markdown": check_markdown,
    "code": check_code,
    "id": check_id,
    "uri": check_uri,
    "url": check_uri,
    "canonical": check_uri,
    "oid": check_oid,
    "uuid": check_uuid,
    "date": check_date,
    "dateTime": check_date_time,
    "instant": check_instant,
    "time": check_time,
    "decimal": check_decimal,
    "base64Binary": check_base64,
    "xhtml": check_xhtml,
}

# What the specification forbids and fhir.resources 8 (with fhir_core) accepts; these
# checks follow the specification. Kept as data so the tests can name each case.
SPEC_OVER_MODELS: dict[str, str] = {
    "empty-string": "'' for markdown, uri, url, canonical, base64Binary, xhtml",
    "uri-whitespace": "uri/url/canonical with whitespace ('a b'); url accepts any string",
    "id-length": "ids of 65..255 characters (fhir_core's default limit is 255)",
    "integer-fraction": "2.0 (a JSON number with a fraction) for integer types",
    "date-number": "JSON numbers for date/dateTime/instant/time (read as Unix times)",
    "base64-lenient": "base64 with characters outside the alphabet or data after padding",
    "uuid-form": "upper-case or bare (no urn:uuid:) UUIDs",
    "xhtml-div": "narrative div that is not a <div> element",
    "string-length": "strings over 1,048,576 characters",
}
