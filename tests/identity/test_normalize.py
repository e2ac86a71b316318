"""French identity normalisation."""

from __future__ import annotations

import datetime as dt

import pytest

from maillage.identity.normalize import (
    fold,
    is_day_month_swap,
    normalize_birthplace,
    normalize_first_name,
    normalize_name,
    normalize_sex,
    parse_birth_date,
    prepare,
    split_first_names,
)


def test_fold_accents_case_ligatures_spaces() -> None:
    assert fold("  ÉLODIE   Lætitia-Œdipe ") == "elodie laetitia oedipe"
    assert fold(None) == ""


@pytest.mark.parametrize(
    "typed",
    ["de la Fontaine", "DE LA FONTAINE", "Fontaine (de la)", "FONTAINE DE LA", "De La  Fontaine"],
)
def test_particles(typed: str) -> None:
    assert normalize_name(typed) == "delafontaine"


@pytest.mark.parametrize("typed", ["D'Artagnan", "D’ARTAGNAN", "d artagnan", "Dartagnan"])
def test_apostrophes(typed: str) -> None:
    assert normalize_name(typed) == "dartagnan"


@pytest.mark.parametrize("typed", ["Du Pont", "DUPONT", "du-pont"])
def test_particle_glued_or_not(typed: str) -> None:
    assert normalize_name(typed) == "dupont"


@pytest.mark.parametrize("typed", ["Saint-Martin", "St Martin", "ST-MARTIN", "saint martin"])
def test_saint(typed: str) -> None:
    assert normalize_name(typed) == "saintmartin"


def test_sainte() -> None:
    assert normalize_name("Ste-Marie") == normalize_name("Sainte Marie") == "saintemarie"


def test_accents_and_hyphens_in_names() -> None:
    assert normalize_name("Lefèvre") == normalize_name("LEFEVRE") == "lefevre"
    assert normalize_name("Guérin-Quéré") == "guerinquere"


def test_compound_first_name() -> None:
    assert (
        normalize_first_name("Jean-Pierre") == normalize_first_name("JEAN PIERRE") == "jeanpierre"
    )
    assert normalize_first_name("Hélène") == "helene"


def test_first_names_list_keeps_order_and_compounds() -> None:
    assert split_first_names("Jean-Pierre Marie, Noël") == ["jeanpierre", "marie", "noel"]
    assert split_first_names(["Anne", "Sophie"]) == ["anne", "sophie"]


def test_first_names_in_any_order_prepare_alike() -> None:
    one = prepare({"first_names": "Marie Claire Anne"})
    other = prepare({"first_names": "Anne Marie Claire"})
    assert one["first_names"] == other["first_names"]
    assert one["first_name"] == "marie" and other["first_name"] == "anne"


def test_first_given_name_defaults_to_the_first_birth_first_name() -> None:
    assert prepare({"first_names": "Louis Marc"})["first_name"] == "louis"
    assert prepare({"first_name": "Marc", "first_names": "Louis Marc"})["first_name"] == "marc"
    assert prepare({"first_name": "Zoé"})["first_names"] == ["zoe"]


def test_compound_typed_without_hyphen_is_in_the_set() -> None:
    record = prepare({"first_names": "Jean Pierre Paul"})
    assert "jeanpierre" in record["first_name_set"]
    assert "jean" in record["first_name_set"]


def test_birth_name_and_used_name() -> None:
    record = prepare({"birth_name": "Lefèvre", "used_name": "de la Fontaine"})
    assert record["birth_name"] == "lefevre"
    assert record["used_name"] == "delafontaine"


@pytest.mark.parametrize(
    "typed, expected",
    [
        ("1970-03-04", "19700304"),
        ("04/03/1970", "19700304"),
        ("4/3/1970", "19700304"),
        ("19700304", "19700304"),
        (dt.date(1970, 3, 4), "19700304"),
        ("19701304", "19701304"),  # impossible, but still evidence of a typo
        ("", ""),
        (None, ""),
        ("mars 1970", ""),
    ],
)
def test_birth_dates(typed: object, expected: str) -> None:
    assert parse_birth_date(typed) == expected


def test_day_month_swap() -> None:
    assert is_day_month_swap("19700304", "19700403")
    assert not is_day_month_swap("19700304", "19700304")
    assert not is_day_month_swap("19700304", "19710403")
    assert not is_day_month_swap("19700304", "")


@pytest.mark.parametrize(
    "typed, expected",
    [
        ("75056", "75056"),
        ("2a004", "2A004"),
        ("2B033", "2B033"),
        ("1053", "01053"),
        ("99134", "99134"),
        ("2C004", ""),
        ("750561", ""),
        (None, ""),
    ],
)
def test_birthplace_insee_code(typed: object, expected: str) -> None:
    assert normalize_birthplace(typed) == expected


def test_sex() -> None:
    assert normalize_sex("F") == normalize_sex("female") == normalize_sex("2") == "F"
    assert normalize_sex("H") == normalize_sex("M") == "M"
    assert normalize_sex("U") == normalize_sex(None) == ""


def test_prepare_missing_values_are_empty() -> None:
    record = prepare({"birth_name": float("nan")})
    assert record["birth_name"] == "" and record["first_names"] == [] and record["ins"] == ""
    assert record["ins_qualified"] is False
    assert prepare({"ins": "1 85 06", "ins_status": "qual"})["ins_qualified"] is True
