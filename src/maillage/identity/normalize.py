"""French identity normalisation: the traits as typed at a registration desk, turned into
the forms the matcher compares.

Sites type the same name many ways: ``DE LA FONTAINE``, ``de la Fontaine``,
``Fontaine (de la)``; ``D'Artagnan``, ``D’ARTAGNAN``, ``Dartagnan``; ``St-Jean``,
``Saint Jean``; ``Jean-Pierre``, ``Jean Pierre``. Names are folded (accents, case,
ligatures), punctuation and hyphens become separators, ``St``/``Ste`` become
``saint``/``sainte``, a particle written at the end (``Fontaine (de la)``) is put back
in front, and the tokens are then glued together: ``delafontaine``, ``dartagnan``,
``saintjean``, ``jeanpierre``. Gluing makes spacing and hyphenation irrelevant while
keeping the particle's letters, so ``Du Pont`` and ``Dupont`` agree.

The prepared record (``prepare``) is a plain dict of comparable values: the same
columns feed the in-process scorer and the Splink training table.
"""

from __future__ import annotations

import datetime as dt
import itertools
import re
import unicodedata
from collections.abc import Iterable, Mapping
from typing import Any, Final

PARTICLES: Final = frozenset({"de", "du", "des", "d", "la", "l"})
_SAINTS: Final = {"st": "saint", "ste": "sainte", "sts": "saints", "stes": "saintes"}
_LIGATURES: Final = str.maketrans({"œ": "oe", "Œ": "OE", "æ": "ae", "Æ": "AE", "ß": "ss"})
_NON_ALNUM = re.compile(r"[^0-9a-z]+")
_DIGITS = re.compile(r"[^0-9]")
_INSEE_PLACE = re.compile(r"(?:[0-9]{2}|2[AB])[0-9]{3}")

# The columns of a prepared record, in the order the Splink table uses them.
COLUMNS: Final = (
    "birth_name",
    "used_name",
    "first_name",
    "first_names",
    "first_names_glued",
    "first_name_set",
    "sex",
    "birth_date",
    "birthplace",
    "ins",
    "ins_qualified",
    "house_number",
    "address_line",
    "address_extra",
    "city",
    "postcode",
    "phone",
)
LIST_COLUMNS: Final = frozenset({"first_names", "first_name_set"})


def fold(text: str | None) -> str:
    """Lower case, no accents or ligatures, every run of other characters one space."""
    if not text:
        return ""
    decomposed = unicodedata.normalize("NFKD", str(text).translate(_LIGATURES))
    stripped = "".join(c for c in decomposed if not unicodedata.combining(c))
    return _NON_ALNUM.sub(" ", stripped.lower()).strip()


def _tokens(text: str | None) -> list[str]:
    return [_SAINTS.get(token, token) for token in fold(text).split()]


def normalize_name(text: str | None) -> str:
    """A family name (birth or used) in its compared form: ``Fontaine (de la)`` →
    ``delafontaine``, ``D'Artagnan`` → ``dartagnan``, ``St-Jean`` → ``saintjean``."""
    tokens = _tokens(text)
    if len(tokens) > 1:
        # A particle group written after the name ("FONTAINE DE LA", "Fontaine (de la)")
        # is how some software files it; the civil register puts it in front.
        tail = len(tokens)
        while tail > 1 and tokens[tail - 1] in PARTICLES:
            tail -= 1
        if tail < len(tokens):
            tokens = tokens[tail:] + tokens[:tail]
    return "".join(tokens)


def normalize_first_name(text: str | None) -> str:
    """One first name, compound or not: ``Jean-Pierre`` and ``Jean Pierre`` →
    ``jeanpierre`` (a used first name is one name, whatever its separators)."""
    return "".join(_tokens(text))


def split_first_names(text: str | Iterable[str] | None) -> list[str]:
    """The birth first names list, in its order. Names are separated by spaces or commas
    (the INS convention), a compound name keeps its parts glued by its hyphen:
    ``Jean-Pierre Marie`` → ``["jeanpierre", "marie"]``."""
    if text is None:
        return []
    items = [text] if isinstance(text, str) else list(text)
    names: list[str] = []
    for item in items:
        for chunk in re.split(r"[\s,;]+", str(item)):
            name = normalize_first_name(chunk)
            if name:
                names.append(name)
    return names


def first_name_set(names: list[str]) -> list[str]:
    """The first names a person may be recorded under: each birth first name, and each
    pair of neighbours glued (``Jean Pierre`` typed without its hyphen is still
    ``jeanpierre``). Sorted, so that it compares as a set in SQL too."""
    found = set(names)
    found.update(a + b for a, b in itertools.pairwise(names))
    return sorted(found)


def normalize_sex(value: Any) -> str:
    text = fold(str(value)) if value is not None else ""
    if text in {"m", "male", "h", "homme", "masculin", "1"}:
        return "M"
    if text in {"f", "female", "femme", "feminin", "2"}:
        return "F"
    return ""


def parse_birth_date(value: Any) -> str:
    """A birth date as ``YYYYMMDD``, or ``""``. Accepts a date, ISO ``YYYY-MM-DD``,
    French ``DD/MM/YYYY`` and ``YYYYMMDD``. An impossible calendar date of eight digits
    is kept as typed: it is still evidence (a typo of the real date)."""
    if value is None:
        return ""
    if isinstance(value, dt.date):
        return value.strftime("%Y%m%d")
    text = str(value).strip()
    if not text:
        return ""
    parts = re.split(r"[-/. ]", text)
    if len(parts) == 3 and all(p.isdigit() for p in parts):
        if len(parts[0]) == 4:
            year, month, day = parts
        elif len(parts[2]) == 4:
            day, month, year = parts
        else:
            return ""
        return f"{year}{int(month):02d}{int(day):02d}"
    digits = _DIGITS.sub("", text)
    if len(digits) == 8 and digits == text:
        return digits
    return ""


def is_valid_date(yyyymmdd: str) -> bool:
    try:
        dt.date(int(yyyymmdd[:4]), int(yyyymmdd[4:6]), int(yyyymmdd[6:8]))
    except ValueError:
        return False
    return True


def is_day_month_swap(a: str, b: str) -> bool:
    """Same year, the day of one is the month of the other and vice versa (a date typed
    in the other convention). Equal dates are not a swap."""
    return (
        len(a) == 8
        and len(b) == 8
        and a != b
        and a[:4] == b[:4]
        and a[4:6] == b[6:8]
        and a[6:8] == b[4:6]
    )


def normalize_birthplace(value: Any) -> str:
    """A birthplace INSEE code: 5 characters, department (2A/2B for Corsica) + commune,
    or 99 + country for a birth abroad. Anything else is unknown (``""``)."""
    if value is None:
        return ""
    text = str(value).strip().upper().replace(" ", "")
    if text.isdigit() and len(text) == 4:
        text = "0" + text  # a leading zero lost by a spreadsheet
    return text if _INSEE_PLACE.fullmatch(text) else ""


def normalize_postcode(value: Any) -> str:
    if value is None:
        return ""
    digits = _DIGITS.sub("", str(value))
    if digits.isdigit() and len(digits) == 4:
        digits = "0" + digits
    return digits


def normalize_phone(value: Any) -> str:
    if value is None:
        return ""
    digits = _DIGITS.sub("", str(value))
    if digits.startswith("33") and len(digits) == 11:
        digits = "0" + digits[2:]
    return digits


def normalize_text(value: Any) -> str:
    """Free text (address line, city): folded, ``St``/``Ste`` expanded, single spaces."""
    return " ".join(_tokens(str(value))) if value is not None else ""


def _text(raw: Mapping[str, Any], key: str) -> Any:
    value = raw.get(key)
    if value is None or (isinstance(value, float) and value != value):  # NaN from pandas
        return None
    return value


def prepare(raw: Mapping[str, Any]) -> dict[str, Any]:
    """A raw identity (any of ``COLUMNS``, as typed; ``first_names`` a string or a list,
    ``ins_status`` the RNIV status) → its prepared record. Missing values are ``""``
    (or empty lists); the scorer treats them as neutral."""
    names = split_first_names(_text(raw, "first_names"))
    first = normalize_first_name(_text(raw, "first_name")) or (names[0] if names else "")
    if first and not names:
        names = [first]
    ins = _text(raw, "ins")
    status = str(_text(raw, "ins_status") or "").upper()
    return {
        "birth_name": normalize_name(_text(raw, "birth_name")),
        "used_name": normalize_name(_text(raw, "used_name")),
        "first_name": first,
        "first_names": sorted(set(names)),
        # the whole list glued in its order: "Jean Pierre Marie" typed without the
        # hyphen of "Jean-Pierre Marie" is the same list
        "first_names_glued": "".join(names),
        "first_name_set": first_name_set(names),
        "sex": normalize_sex(_text(raw, "sex")),
        "birth_date": parse_birth_date(_text(raw, "birth_date")),
        "birthplace": normalize_birthplace(_text(raw, "birthplace")),
        "ins": "".join(str(ins).split()).upper() if ins is not None else "",
        "ins_qualified": status == "QUAL" or raw.get("ins_qualified") is True,
        "house_number": _DIGITS.sub("", str(_text(raw, "house_number") or "")),
        "address_line": normalize_text(_text(raw, "address_line")),
        "address_extra": normalize_text(_text(raw, "address_extra")),
        "city": normalize_text(_text(raw, "city")),
        "postcode": normalize_postcode(_text(raw, "postcode")),
        "phone": normalize_phone(_text(raw, "phone")),
    }
