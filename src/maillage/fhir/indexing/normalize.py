"""Value normalisation done in Python, so that plain PostgreSQL needs no extension."""

from __future__ import annotations

import calendar
import functools
import re
import unicodedata
from datetime import UTC, datetime, timedelta, timezone
from hashlib import blake2b

_NON_WORD = re.compile(r"[^\w]+")
# Ligatures NFKD leaves whole (French names: Œ in "Lœuillet", Æ in "Lætitia").
_LIGATURES = str.maketrans({"œ": "oe", "æ": "ae", "ø": "o", "đ": "d", "ł": "l"})
_DATE = re.compile(
    r"^(?P<year>\d{4})(?:-(?P<month>\d{2})(?:-(?P<day>\d{2})"
    r"(?:T(?P<hour>\d{2}):(?P<minute>\d{2})(?::(?P<second>\d{2})(?:\.(?P<fraction>\d+))?)?"
    r"(?P<tz>Z|[+-]\d{2}:\d{2})?)?)?)?$"
)
_ONE_MICROSECOND = timedelta(microseconds=1)


# Names, display texts, codes, systems and dates repeat a lot across resources: the
# functions below are pure and return immutable values, so their results are cached.
@functools.lru_cache(maxsize=16384)
def normalize_string(value: str) -> str:
    """Lower case, accents removed, punctuation folded to single spaces ("Hélène" -> "helene")."""
    decomposed = unicodedata.normalize("NFKD", value)
    stripped = "".join(char for char in decomposed if not unicodedata.combining(char))
    return _NON_WORD.sub(" ", stripped.casefold().translate(_LIGATURES)).strip()


@functools.lru_cache(maxsize=16384)
def token_hash(*parts: str | None) -> int:
    """A signed 64-bit hash of the parts (fits PostgreSQL bigint)."""
    digest = blake2b("\x1f".join(part or "" for part in parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


@functools.lru_cache(maxsize=16384)
def date_range(value: str) -> tuple[datetime, datetime] | None:
    """The instant range a FHIR date/dateTime/instant covers, given its precision.

    ``2024`` covers the whole year; a time without zone is read as UTC.
    """
    match = _DATE.match(value.strip())
    if not match:
        return None
    parts = match.groupdict()
    year = int(parts["year"])
    try:
        if parts["month"] is None:
            low = datetime(year, 1, 1, tzinfo=UTC)
            return low, _end(low, timedelta(days=366 if calendar.isleap(year) else 365))
        month = int(parts["month"])
        if parts["day"] is None:
            low = datetime(year, month, 1, tzinfo=UTC)
            last_day = calendar.monthrange(year, month)[1]
            return low, _end(low, timedelta(days=last_day))
        day = int(parts["day"])
        if parts["hour"] is None:
            low = datetime(year, month, day, tzinfo=UTC)
            return low, _end(low, timedelta(days=1))
        return _time_range(year, month, day, parts)
    except ValueError:
        return None


_LAST_INSTANT = datetime.max.replace(tzinfo=UTC)


def _end(low: datetime, span: timedelta) -> datetime:
    """The last instant of the span starting at ``low``, capped at the end of year 9999."""
    try:
        return low + span - _ONE_MICROSECOND
    except OverflowError:
        return _LAST_INSTANT


def _time_range(
    year: int, month: int, day: int, parts: dict[str, str | None]
) -> tuple[datetime, datetime]:
    zone = parts["tz"]
    tzinfo = UTC
    if zone and zone != "Z":
        sign = 1 if zone[0] == "+" else -1
        hours, minutes = int(zone[1:3]), int(zone[4:6])
        tzinfo = timezone(sign * timedelta(hours=hours, minutes=minutes))
    hour, minute = int(parts["hour"] or 0), int(parts["minute"] or 0)
    if parts["second"] is None:
        low = datetime(year, month, day, hour, minute, tzinfo=tzinfo)
        return low, _end(low, timedelta(minutes=1))
    second = int(parts["second"])
    fraction = parts["fraction"]
    if fraction is None:
        low = datetime(year, month, day, hour, minute, second, tzinfo=tzinfo)
        return low, _end(low, timedelta(seconds=1))
    digits = fraction[:6]
    microsecond = int(digits.ljust(6, "0"))
    low = datetime(year, month, day, hour, minute, second, microsecond, tzinfo=tzinfo)
    step = timedelta(microseconds=10 ** (6 - len(digits)))
    return low, _end(low, step)
