"""Field comparisons and blocking keys over prepared records (``normalize.prepare``).

Each comparison sorts a pair into one of its ordered levels (the first that holds wins,
the last is "anything else"), or into "missing" (-1) when a side lacks the value, which
weighs nothing. Every level is written twice, once in Python for the in-process scorer
and once as the SQL condition Splink trains on (DuckDB); the two must agree, and the
tests check they do on generated pairs, Jaro-Winkler thresholds included.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from rapidfuzz.distance import JaroWinkler, Levenshtein

from maillage.identity.normalize import is_day_month_swap

Record = Mapping[str, Any]
LevelFunction = Callable[[Record, Record], int]

MISSING: Final = -1
JW_HIGH: Final = 0.92
JW_LOW: Final = 0.80

_jw = JaroWinkler.similarity
_lev = Levenshtein.distance


@dataclass(frozen=True, slots=True)
class Comparison:
    """One field's comparison: its level names, the Python classifier and the SQL."""

    name: str
    columns: tuple[str, ...]
    levels: tuple[str, ...]
    sql_conditions: tuple[str, ...]  # one per level; the last is "ELSE"
    null_condition: str
    level: LevelFunction

    def splink_dict(self) -> dict[str, Any]:
        """This comparison as a Splink comparison dictionary (the same levels, in order,
        after the null level)."""
        levels: list[dict[str, Any]] = [
            {
                "sql_condition": self.null_condition,
                "label_for_charts": "missing",
                "is_null_level": True,
            }
        ]
        levels += [
            {"sql_condition": sql, "label_for_charts": label}
            for label, sql in zip(self.levels, self.sql_conditions, strict=True)
        ]
        return {
            "output_column_name": self.name,
            "comparison_description": self.name,
            "comparison_levels": levels,
        }


def _null(*columns: str) -> str:
    return " OR ".join(f"{c}_l IS NULL OR {c}_r IS NULL" for c in columns)


def _similarity_level(a: str, b: str, *, first: int) -> int:
    """The last three levels of a text comparison: Jaro-Winkler >= JW_HIGH (``first``),
    >= JW_LOW (``first + 1``), anything else (``first + 2``)."""
    similarity = _jw(a, b)
    if similarity >= JW_HIGH:
        return first
    if similarity >= JW_LOW:
        return first + 1
    return first + 2


def _jw_sql(column: str, threshold: float) -> str:
    return f"jaro_winkler_similarity({column}_l, {column}_r) >= {threshold}"


# -- name: birth name, with the used (married) name as a cross-match ----------------------


def _name_level(left: Record, right: Record) -> int:
    a = left["birth_name"]
    b = right["birth_name"]
    if not a or not b:
        return MISSING
    if a == b:
        return 0
    lu = left["used_name"]
    ru = right["used_name"]
    if (ru and a == ru) or (lu and lu in (b, ru)):
        return 1
    if _swapped(left, right):
        return 2
    return _similarity_level(a, b, first=3)


def _swapped(left: Record, right: Record) -> bool:
    """The name typed in the first-name box and the first name in the name box: a
    classic desk error, kept as its own level so that it is weighed instead of counted
    twice against the pair. Both ways round: one alone is a first name that happens to
    be a family name too (Thomas, Mathieu), as twins of the Mathieu family may have."""
    lf = left["first_name"]
    rf = right["first_name"]
    return bool(lf and rf and left["birth_name"] == rf and lf == right["birth_name"])


_SWAP_SQL = "birth_name_l = first_name_r AND first_name_l = birth_name_r"

NAME = Comparison(
    name="name",
    columns=("birth_name", "used_name", "first_name"),
    levels=("exact", "birth_used_cross", "swapped_with_first_name", "jw_0.92", "jw_0.80", "else"),
    sql_conditions=(
        "birth_name_l = birth_name_r",
        "birth_name_l = used_name_r OR used_name_l = birth_name_r OR used_name_l = used_name_r",
        _SWAP_SQL,
        _jw_sql("birth_name", JW_HIGH),
        _jw_sql("birth_name", JW_LOW),
        "ELSE",
    ),
    null_condition=_null("birth_name"),
    level=_name_level,
)


# -- first names: first given name, birth first names in any order --------------------


def _first_names_level(left: Record, right: Record) -> int:
    a = left["first_name"]
    b = right["first_name"]
    if not a or not b:
        return MISSING
    if (
        a == b
        or left["first_names"] == right["first_names"]
        or left["first_names_glued"] == right["first_names_glued"]
    ):
        return 0
    if a in right["first_name_set"] or b in left["first_name_set"]:
        return 1
    if _swapped(left, right):
        return 2
    return _similarity_level(a, b, first=3)


FIRST_NAMES = Comparison(
    name="first_names",
    columns=("first_name", "first_names", "first_names_glued", "first_name_set", "birth_name"),
    levels=("exact", "in_other_list", "swapped_with_name", "jw_0.92", "jw_0.80", "else"),
    sql_conditions=(
        "first_name_l = first_name_r OR first_names_l = first_names_r "
        "OR first_names_glued_l = first_names_glued_r",
        "list_contains(first_name_set_r, first_name_l) "
        "OR list_contains(first_name_set_l, first_name_r)",
        _SWAP_SQL,
        _jw_sql("first_name", JW_HIGH),
        _jw_sql("first_name", JW_LOW),
        "ELSE",
    ),
    null_condition=_null("first_name"),
    level=_first_names_level,
)


# -- birth date (YYYYMMDD) -------------------------------------------------------------


def _date_level(left: Record, right: Record) -> int:
    a = left["birth_date"]
    b = right["birth_date"]
    if not a or not b:
        return MISSING
    if a == b:
        return 0
    if is_day_month_swap(a, b):
        return 1
    distance = _lev(a, b, score_cutoff=2)
    if distance <= 1:
        return 2
    if distance <= 2:
        return 3
    return 4


BIRTH_DATE = Comparison(
    name="birth_date",
    columns=("birth_date",),
    levels=("exact", "day_month_swap", "one_typo", "two_typos", "else"),
    sql_conditions=(
        "birth_date_l = birth_date_r",
        "substr(birth_date_l, 1, 4) = substr(birth_date_r, 1, 4) "
        "AND substr(birth_date_l, 5, 2) = substr(birth_date_r, 7, 2) "
        "AND substr(birth_date_l, 7, 2) = substr(birth_date_r, 5, 2)",
        "levenshtein(birth_date_l, birth_date_r) <= 1",
        "levenshtein(birth_date_l, birth_date_r) <= 2",
        "ELSE",
    ),
    null_condition=_null("birth_date"),
    level=_date_level,
)


# -- generic kinds ---------------------------------------------------------------------


def _exact(column: str) -> Comparison:
    def level(left: Record, right: Record) -> int:
        a = left[column]
        b = right[column]
        if not a or not b:
            return MISSING
        return 0 if a == b else 1

    return Comparison(
        name=column,
        columns=(column,),
        levels=("exact", "else"),
        sql_conditions=(f"{column}_l = {column}_r", "ELSE"),
        null_condition=_null(column),
        level=level,
    )


def _edits(column: str, max_edits: int) -> Comparison:
    """Exact, then 1..max_edits Levenshtein edits (an identifier or a code typed wrong)."""

    def level(left: Record, right: Record) -> int:
        a = left[column]
        b = right[column]
        if not a or not b:
            return MISSING
        if a == b:
            return 0
        distance = _lev(a, b, score_cutoff=max_edits)
        return distance if distance <= max_edits else max_edits + 1

    edits = tuple(range(1, max_edits + 1))
    return Comparison(
        name=column,
        columns=(column,),
        levels=("exact", *(f"edits_{n}" for n in edits), "else"),
        sql_conditions=(
            f"{column}_l = {column}_r",
            *(f"levenshtein({column}_l, {column}_r) <= {n}" for n in edits),
            "ELSE",
        ),
        null_condition=_null(column),
        level=level,
    )


def _text(column: str) -> Comparison:
    def level(left: Record, right: Record) -> int:
        a = left[column]
        b = right[column]
        if not a or not b:
            return MISSING
        if a == b:
            return 0
        return _similarity_level(a, b, first=1)

    return Comparison(
        name=column,
        columns=(column,),
        levels=("exact", "jw_0.92", "jw_0.80", "else"),
        sql_conditions=(
            f"{column}_l = {column}_r",
            _jw_sql(column, JW_HIGH),
            _jw_sql(column, JW_LOW),
            "ELSE",
        ),
        null_condition=_null(column),
        level=level,
    )


def _birthplace_level(left: Record, right: Record) -> int:
    a = left["birthplace"]
    b = right["birthplace"]
    if not a or not b:
        return MISSING
    if a == b:
        return 0
    return 1 if a[:2] == b[:2] else 2


BIRTHPLACE = Comparison(
    name="birthplace",
    columns=("birthplace",),
    levels=("exact", "same_department", "else"),
    sql_conditions=(
        "birthplace_l = birthplace_r",
        "substr(birthplace_l, 1, 2) = substr(birthplace_r, 1, 2)",
        "ELSE",
    ),
    null_condition=_null("birthplace"),
    level=_birthplace_level,
)

CATALOG: Final[dict[str, Comparison]] = {
    c.name: c
    for c in (
        NAME,
        FIRST_NAMES,
        BIRTH_DATE,
        _exact("sex"),
        BIRTHPLACE,
        _edits("ins", 2),
        _exact("house_number"),
        _text("address_line"),
        _text("address_extra"),
        _text("city"),
        _edits("postcode", 1),
        _edits("phone", 1),
    )
}

# The French identity comparisons a territory model starts from.
DEFAULT_COMPARISONS: Final = (
    "name",
    "first_names",
    "birth_date",
    "sex",
    "birthplace",
    "ins",
    "postcode",
    "city",
    "address_line",
    "phone",
)


def levels_for(
    comparisons: Iterable[Comparison], left: Record, right: Record
) -> list[tuple[str, int]]:
    """Each comparison's level for a pair (the gamma vector), for tests and reports."""
    return [(c.name, c.level(left, right)) for c in comparisons]
