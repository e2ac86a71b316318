"""INS matricule checks: the NIR and the NIA, their control key, and their OIDs.

The INS matricule is the person's NIR (INSEE register number) or, for a person born
abroad whose civil status is still being checked, the NIA (waiting number given by the
CNAV) which is built like a NIR. Both are 13 characters followed by a 2-digit key:

    sex(1) year(2) month(2) place(5: department 2 + commune 3, or 99 + country) order(3) key(2)

key = 97 - (the 13 characters read as a number) mod 97, where the Corsican departments
2A and 2B are read as 19 and 18 (they were 20 before 1976, and the key was kept
computable on digits only).

The first character is the sex: 1 (male) or 2 (female) for a NIR; an NIA may also
carry 3 or 4 (older waiting numbers of people born abroad). 7 and 8 are provisional
sickness-insurance numbers (NTT/NNP): they are not an INS and are refused with a
message saying so. A month outside 01-12 exists for people whose birth month is
unknown in the civil register (20-42, 50-99), so it is accepted.

Nothing here logs the value: an INS is personal data.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from maillage.errors import InvalidIns

OID_NIR: Final = "urn:oid:1.2.250.1.213.1.4.8"
OID_NIA: Final = "urn:oid:1.2.250.1.213.1.4.9"
OID_NIR_TEST: Final = "urn:oid:1.2.250.1.213.1.4.10"
OID_NIR_DEMO: Final = "urn:oid:1.2.250.1.213.1.4.11"

INS_SYSTEMS: Final = {
    OID_NIR: "NIR",
    OID_NIA: "NIA",
    OID_NIR_TEST: "NIR-TEST",
    OID_NIR_DEMO: "NIR-DEMO",
}

NIR_SEX_DIGITS: Final = frozenset("12")
NIA_SEX_DIGITS: Final = frozenset("1234")
PROVISIONAL_SEX_DIGITS: Final = frozenset("78")

_SEPARATORS = re.compile(r"[\s.\-]")
_LAYOUT = re.compile(r"[0-9]{5}(?:[0-9]{2}|2[AB])[0-9]{6}[0-9]{2}")


@dataclass(frozen=True, slots=True)
class InsNumber:
    """A checked INS matricule: 15 characters, upper case, no separators."""

    value: str
    kind: str  # NIR or NIA
    system: str

    @property
    def sex_digit(self) -> str:
        return self.value[0]

    @property
    def birth_year_2(self) -> str:
        return self.value[1:3]

    @property
    def birth_month(self) -> str:
        return self.value[3:5]

    @property
    def birthplace(self) -> str:
        """Department (2 or 3 characters) + commune, or 99 + country code: 5 characters."""
        return self.value[5:10]


def compact(value: str) -> str:
    """The matricule as typed, without spaces, dots or dashes, upper case."""
    return _SEPARATORS.sub("", value).upper()


def nir_key(first_13: str) -> int:
    """The control key of 13 characters (Corsica's 2A/2B read as 19/18)."""
    body = first_13.upper()
    if len(body) != 13:
        raise InvalidIns(f"a NIR body has 13 characters before its key, got {len(body)}")
    if body[5:7] == "2A":
        body = body[:5] + "19" + body[7:]
    elif body[5:7] == "2B":
        body = body[:5] + "18" + body[7:]
    if not body.isdigit():
        raise InvalidIns(
            "a NIR has digits only, except 2A/2B for a Corsican birth department (characters 6-7)"
        )
    return 97 - int(body) % 97


def check_ins(value: str, system: str = OID_NIR) -> InsNumber:
    """Check an INS matricule under its identifier system; raise ``InvalidIns`` with what
    to fix, or return the compact checked number."""
    kind = INS_SYSTEMS.get(system)
    if kind is None:
        raise InvalidIns(
            "unknown INS system: use urn:oid:1.2.250.1.213.1.4.8 (NIR), …1.4.9 (NIA), "
            "…1.4.10 (test NIR) or …1.4.11 (demo NIR)"
        )
    number = compact(value)
    if len(number) != 15:
        raise InvalidIns(
            f"an INS matricule has 15 characters (13 + a 2-digit key), got {len(number)}: "
            "check for a missing or extra digit, or a missing key"
        )
    sex = number[0]
    if sex in PROVISIONAL_SEX_DIGITS:
        raise InvalidIns(
            "a number starting with 7 or 8 is a provisional sickness-insurance number, "
            "not an INS: retrieve the INS through the INSi teleservice"
        )
    allowed = NIA_SEX_DIGITS if kind == "NIA" else NIR_SEX_DIGITS
    if sex not in allowed:
        raise InvalidIns(
            f"the first character of a {kind} is the sex: "
            + ("1, 2, 3 or 4" if kind == "NIA" else "1 (male) or 2 (female)")
        )
    if not _LAYOUT.fullmatch(number):
        raise InvalidIns(
            "an INS matricule has digits only, except 2A or 2B as the birth department "
            "of a person born in Corsica (characters 6-7)"
        )
    if number[3:5] == "00":
        raise InvalidIns("the birth month of an INS matricule (characters 4-5) cannot be 00")
    key = int(number[13:])
    expected = nir_key(number[:13])
    if key != expected:
        raise InvalidIns(
            "the control key (last 2 digits) does not match the first 13 characters: "
            "one of them was mistyped; compare with the patient's card or INSi"
        )
    kind_out = "NIA" if kind == "NIA" else "NIR"
    return InsNumber(value=number, kind=kind_out, system=system)


def is_valid_ins(value: str, system: str = OID_NIR) -> bool:
    try:
        check_ins(value, system)
    except InvalidIns:
        return False
    return True


def with_key(first_13: str) -> str:
    """The 15-character matricule for 13 characters (for generated test data)."""
    return f"{first_13.upper()}{nir_key(first_13):02d}"
