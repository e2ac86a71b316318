"""The identity rules the territorial benchmark called for: strict-trait conflicts that
keep a high score from auto-linking, twins typed with a typo, and a first name typed
wrong among several that still links."""

from __future__ import annotations

from typing import Any

import pytest

from maillage.identity.model import default_model
from maillage.identity.normalize import prepare
from maillage.identity.scoring import (
    BIRTH_DATE_CONFLICT,
    BIRTHPLACE_UNKNOWN,
    FIRST_NAMES_CONFLICT,
    HOMONYM,
    INS_COLLISION,
    LINK,
    NONE,
    REVIEW,
    PairScore,
    Scorer,
)

HOME = {"house_number": "12", "address_line": "rue de la Gare", "postcode": "99100"}
PERSON: dict[str, Any] = {
    "birth_name": "Kerbrat",
    "first_names": "Pierre Yves",
    "sex": "M",
    "birth_date": "1971-05-13",
    "birthplace": "29019",
    "city": "Maillebourg",
    "phone": "0612345678",
    **HOME,
}


@pytest.fixture(scope="module")
def scorer() -> Scorer:
    return Scorer(default_model())


def score(scorer: Scorer, left: dict[str, Any], right: dict[str, Any]) -> PairScore:
    return scorer.score(prepare(left), prepare(right))


def test_father_and_son_of_the_same_names_at_one_address_are_not_linked(scorer: Scorer) -> None:
    son = {**PERSON, "birth_date": "1998-02-27"}
    result = score(scorer, PERSON, son)
    assert result.decision == REVIEW and result.rule == BIRTH_DATE_CONFLICT


def test_twins_with_a_typo_in_the_family_name_stay_apart(scorer: Scorer) -> None:
    twin = {**PERSON, "birth_name": "Kerbratt", "first_names": "Gwenaël"}
    result = score(scorer, PERSON, twin)
    assert result.decision != LINK and HOMONYM in result.flags


def test_twins_registered_once_without_birthplace_stay_apart(scorer: Scorer) -> None:
    twin = {**PERSON, "first_names": "Loïc", "birthplace": None}
    result = score(scorer, PERSON, twin)
    assert result.decision != LINK and HOMONYM in result.flags


def test_unrelated_first_names_never_auto_link(scorer: Scorer) -> None:
    # the married name typed as the birth name, the first names of a sister
    other = {**PERSON, "birth_name": "Le Goff", "first_names": "Gwenaëlle", "sex": "M"}
    result = score(scorer, PERSON, other)
    assert result.decision != LINK
    assert result.rule in (FIRST_NAMES_CONFLICT, None)


def test_homonym_without_birthplace_living_elsewhere_is_reviewed(scorer: Scorer) -> None:
    # same town, another street and phone: the score alone would link
    elsewhere = {
        **PERSON,
        "birthplace": None,
        "house_number": "3",
        "address_line": "impasse des Lilas",
        "phone": "0798765432",
    }
    result = score(scorer, PERSON, elsewhere)
    assert result.decision == REVIEW and result.rule == BIRTHPLACE_UNKNOWN
    # the same without the birthplace but at the same home: the same person
    assert score(scorer, PERSON, {**PERSON, "birthplace": None}).decision == LINK


def test_one_first_name_typed_wrong_among_several_links(scorer: Scorer) -> None:
    typed = {**PERSON, "first_names": "Pierre Yvse"}
    assert score(scorer, PERSON, typed).decision == LINK
    # alone, the same typo could be a twin's other name: reviewed
    alone = {**PERSON, "first_names": "Pierre"}
    result = score(scorer, alone, {**alone, "first_names": "Pierrr"})
    assert result.decision == REVIEW and HOMONYM in result.flags


def test_two_different_qualified_ins_of_strangers_are_not_a_collision(scorer: Scorer) -> None:
    stranger = {
        "birth_name": "Morel",
        "first_names": "Claire",
        "sex": "F",
        "birth_date": "1971-05-13",
        "ins": "271052901912345",
        "ins_status": "QUAL",
    }
    left = {**PERSON, "ins": "171052901901234", "ins_status": "QUAL"}
    result = score(scorer, left, stranger)
    assert result.decision == NONE and INS_COLLISION not in result.flags


def test_strict_trait_rules_need_a_model_comparing_the_birthplace() -> None:
    # FEBRL-like data: no birthplace anywhere, dates and first names heavily corrupted
    names = ("name", "first_names", "birth_date", "postcode", "city", "address_line", "phone")
    scorer = Scorer(default_model(names))
    son = {**PERSON, "birth_date": "1998-02-27"}
    assert score(scorer, PERSON, son).rule is None
