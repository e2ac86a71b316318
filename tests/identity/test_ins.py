"""INS matricule checks. Keys are computed here from the published rule (97 minus the
13-character number mod 97, Corsica's 2A/2B read as 19/18), not by the code under test.
All numbers are synthetic."""

from __future__ import annotations

import pytest

from maillage.errors import InvalidIns, InvalidRequest
from maillage.identity.ins import (
    OID_NIA,
    OID_NIR,
    OID_NIR_DEMO,
    OID_NIR_TEST,
    check_ins,
    is_valid_ins,
    nir_key,
    with_key,
)


def rule_key(body: str) -> str:
    digits = body.upper().replace("2A", "19", 1) if body[5:7].upper() == "2A" else body
    digits = digits.upper().replace("2B", "18", 1) if body[5:7].upper() == "2B" else digits
    return f"{97 - int(digits) % 97:02d}"


SYNTHETIC_BODIES = ["1850675123456", "2991213055001", "1010199134777", "2700344109123"]


@pytest.mark.parametrize("body", SYNTHETIC_BODIES)
def test_valid_nir_keys(body: str) -> None:
    number = body + rule_key(body)
    checked = check_ins(number, OID_NIR)
    assert checked.value == number
    assert checked.kind == "NIR"
    assert checked.sex_digit == body[0]
    assert with_key(body) == number


@pytest.mark.parametrize("body", SYNTHETIC_BODIES)
def test_a_wrong_key_is_refused_with_what_to_fix(body: str) -> None:
    good = int(rule_key(body))
    wrong = f"{good % 97 + 1:02d}"
    with pytest.raises(InvalidIns, match="control key"):
        check_ins(body + wrong)


def test_a_mistyped_digit_breaks_the_key() -> None:
    body = SYNTHETIC_BODIES[0]
    number = body + rule_key(body)
    typo = number[:8] + ("0" if number[8] != "0" else "1") + number[9:]
    assert not is_valid_ins(typo)


@pytest.mark.parametrize("department, as_digits", [("2A", "19"), ("2B", "18")])
def test_corsica(department: str, as_digits: str) -> None:
    body = f"18807{department}004123"
    key = 97 - int(f"18807{as_digits}004123") % 97
    assert rule_key(body) == f"{key:02d}"
    number = f"{body}{key:02d}"
    assert check_ins(number).birthplace == f"{department}004"
    assert nir_key(body) == key
    assert is_valid_ins(number.lower())  # typed in lower case
    # the same digits with 20 (pre-1976 Corsica) are another number with another key
    assert rule_key("1880720004123") != f"{key:02d}"
    assert not is_valid_ins(f"1880720004123{key:02d}")


def test_separators_are_ignored() -> None:
    body = SYNTHETIC_BODIES[1]
    number = body + rule_key(body)
    parts = (
        number[0],
        number[1:3],
        number[3:5],
        number[5:7],
        number[7:10],
        number[10:13],
        number[13:],
    )
    spaced = " ".join(parts)
    assert check_ins(spaced).value == number


@pytest.mark.parametrize(
    "value, message",
    [
        ("18506751234", "15 characters"),
        ("1850675123456789", "15 characters"),
        ("385067512345612", "sex"),
        ("785067512345612", "provisional"),
        ("8850675123456", "15 characters"),
        ("1850675X2345612", "digits only"),
        ("1850075123456" + "00", "00"),
    ],
)
def test_bad_layouts_say_what_to_fix(value: str, message: str) -> None:
    with pytest.raises(InvalidIns, match=message) as raised:
        check_ins(value)
    assert isinstance(raised.value, InvalidRequest)
    assert raised.value.code == "value"


def test_nia_accepts_3_and_4() -> None:
    body = "3851299134012"
    number = body + rule_key(body)
    assert check_ins(number, OID_NIA).kind == "NIA"
    with pytest.raises(InvalidIns, match="sex"):
        check_ins(number, OID_NIR)


def test_provisional_numbers_are_not_an_ins() -> None:
    body = "7850675123456"
    with pytest.raises(InvalidIns, match="INSi"):
        check_ins(body + rule_key(body), OID_NIA)


def test_systems() -> None:
    body = SYNTHETIC_BODIES[2]
    number = body + rule_key(body)
    assert check_ins(number, OID_NIR_TEST).system == OID_NIR_TEST
    assert check_ins(number, OID_NIR_DEMO).kind == "NIR"
    assert OID_NIR.endswith(".1.4.8") and OID_NIA.endswith(".1.4.9")
    with pytest.raises(InvalidIns, match="unknown INS system"):
        check_ins(number, "urn:oid:1.2.3")


def test_the_value_is_not_in_the_message() -> None:
    body = SYNTHETIC_BODIES[3]
    number = body + "00"
    with pytest.raises(InvalidIns) as raised:
        check_ins(number)
    assert number not in str(raised.value) and body not in str(raised.value)
