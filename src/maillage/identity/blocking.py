"""Blocking keys: which filed identities a record is compared with.

Two records are candidates when they share a key. The keys must bring every record of
the same person that a desk may have typed differently, and as few others as possible:
at a million identities, each candidate costs a row read and a scoring. The default
rules tolerate one error in the birth date, or in the sex, or a name typed differently,
but not two of them:

- ``birth_date_sex``: the exact date, day and month in either order (a day/month swap,
  frequent at the desk, meets its original), and the sex;
- ``first_last_date``: first name and name prefixes (in either box) with the day and
  month: a wrong birth year;
- ``name_year_month`` and ``name_year_day``: name prefix with the year and month, or
  year and day: a wrong day, or a wrong month;
- ``ins``: the same INS.

Each name key is made for the birth name and the used name, so a married name meets the
birth name. Measured on the generated territorial set at 994,000 registrations
(docs/benchmarks.md): every true pair shares a key, 62 candidates per record on average
(114 at p95), where the former rules (``birth_date``, ``name_year``, ``first_last``)
brought 858 (3,359 at p95) and missed 796 pairs. The former rules stay available
(FEBRL4's benchmark and a territory's own choice use them).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

Record = Mapping[str, Any]


def _names(record: Record) -> list[str]:
    """The birth name and the used name (when it differs)."""
    return [name for name in dict.fromkeys((record["birth_name"], record["used_name"])) if name]


def _key_birth_date(record: Record) -> list[str]:
    return [record["birth_date"]] if record["birth_date"] else []


def _key_birth_date_any_order(record: Record) -> list[str]:
    """YYYY + the month and the day, smaller first (dates are prepared as YYYYMMDD)."""
    date: str = record["birth_date"]
    if len(date) != 8:
        return []
    low, high = sorted((date[4:6], date[6:8]))
    return [f"{date[:4]}{low}{high}"]


def _key_birth_date_sex(record: Record) -> list[str]:
    """``birth_date_any_order`` with the sex: half the people share a date and a sex. An
    unknown sex is filed under both, so that it still meets either."""
    dates = _key_birth_date_any_order(record)
    sexes = [record["sex"]] if record["sex"] else ["M", "F"]
    return [f"{date}|{sex}" for date in dates for sex in sexes]


def _key_name_year(record: Record) -> list[str]:
    """Birth name and used name prefixes with the birth year."""
    year = record["birth_date"][:4]
    return [f"{name[:4]}|{year}" for name in _names(record)] if year else []


def _key_name_year_month(record: Record) -> list[str]:
    date: str = record["birth_date"]
    return [f"{name[:4]}|{date[:6]}" for name in _names(record)] if len(date) == 8 else []


def _key_name_year_day(record: Record) -> list[str]:
    date: str = record["birth_date"]
    if len(date) != 8:
        return []
    return [f"{name[:4]}|{date[:4]}{date[6:8]}" for name in _names(record)]


def _key_first_last(record: Record) -> list[str]:
    """First name and name prefixes, in either order: a name typed in the first-name box
    and the other way round still meet."""
    first = record["first_name"]
    if not first:
        return []
    return ["|".join(sorted((first[:3], name[:3]))) for name in _names(record)]


def _key_first_last_date(record: Record) -> list[str]:
    date: str = record["birth_date"]
    if len(date) != 8:
        return []
    low, high = sorted((date[4:6], date[6:8]))
    return [f"{names}|{low}{high}" for names in _key_first_last(record)]


def _key_ins(record: Record) -> list[str]:
    return [record["ins"]] if record["ins"] else []


def _key_postcode_first(record: Record) -> list[str]:
    if not record["postcode"] or not record["first_name"]:
        return []
    return [f"{record['postcode']}|{record['first_name'][:2]}"]


def _key_postcode_name(record: Record) -> list[str]:
    if not record["postcode"] or not record["birth_name"]:
        return []
    return [f"{record['postcode']}|{record['birth_name'][:2]}"]


def _key_address(record: Record) -> list[str]:
    if not record["address_line"] or not record["house_number"]:
        return []
    return [f"{record['house_number']}|{record['address_line'][:4]}"]


BLOCKING_RULES: Final[dict[str, Callable[[Record], list[str]]]] = {
    "birth_date": _key_birth_date,
    "birth_date_any_order": _key_birth_date_any_order,
    "birth_date_sex": _key_birth_date_sex,
    "name_year": _key_name_year,
    "name_year_month": _key_name_year_month,
    "name_year_day": _key_name_year_day,
    "first_last": _key_first_last,
    "first_last_date": _key_first_last_date,
    "ins": _key_ins,
    "postcode_first": _key_postcode_first,
    "postcode_name": _key_postcode_name,
    "address": _key_address,
}
DEFAULT_BLOCKING: Final = (
    "birth_date_sex",
    "first_last_date",
    "name_year_month",
    "name_year_day",
    "ins",
)


def blocking_keys(record: Record, rules: Sequence[str] = DEFAULT_BLOCKING) -> list[str]:
    """The keys a record is filed under, prefixed by their rule (two records are
    candidates when they share one key)."""
    keys: list[str] = []
    for rule in rules:
        keys.extend(f"{rule}:{key}" for key in BLOCKING_RULES[rule](record))
    return keys


def candidate_pairs(
    left: Sequence[Record],
    right: Sequence[Record] | None = None,
    rules: Sequence[str] = DEFAULT_BLOCKING,
    max_block: int = 5000,
) -> set[tuple[int, int]]:
    """Candidate pairs by position: ``(i, j)`` with i in ``left`` and j in ``right``
    (a link), or i < j both in ``left`` when ``right`` is None (a dedupe). A key shared
    by more than ``max_block`` records (a placeholder date, say) is skipped: it would
    pair everyone with everyone and tells nothing."""
    index: dict[str, list[int]] = defaultdict(list)
    for position, record in enumerate(left):
        for key in blocking_keys(record, rules):
            index[key].append(position)
    pairs: set[tuple[int, int]] = set()
    if right is None:
        for members in index.values():
            if 1 < len(members) <= max_block:
                pairs.update(
                    (a, b) for n, a in enumerate(members) for b in members[n + 1 :] if a != b
                )
        return pairs
    for position, record in enumerate(right):
        for key in blocking_keys(record, rules):
            block = index.get(key)
            if block and len(block) <= max_block:
                pairs.update((i, position) for i in block)
    return pairs
