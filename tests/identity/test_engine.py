"""The ``Matcher`` facade: file identities, find and score the candidates of a new one."""

from __future__ import annotations

from maillage.identity.engine import Matcher
from maillage.identity.model import default_model
from maillage.identity.scoring import HOMONYM, LINK, REVIEW


def test_a_new_registration_finds_its_other_records_best_first() -> None:
    matcher = Matcher(default_model())
    anne = {
        "birth_name": "Quéré",
        "used_name": "Le Goff",
        "first_names": "Anne Sophie",
        "sex": "F",
        "birth_date": "1982-07-05",
        "birthplace": "29019",
    }
    twin = {**anne, "first_names": "Claire Sophie"}
    stranger = {"birth_name": "Morel", "first_names": "Hugo", "birth_date": "1982-07-05"}
    positions = [matcher.add(person) for person in (anne, twin, stranger)]
    assert len(matcher) == 3
    # another site typed the used name only, the first names the other way round
    found = matcher.match(
        {
            "birth_name": "LE GOFF",
            "first_names": "Sophie Anne",
            "sex": "F",
            "birth_date": "05/07/1982",
            "birthplace": "29019",
        }
    )
    assert found[0][0] == positions[0] and found[0][1].decision == LINK
    assert positions[2] not in [position for position, _ in found]


def test_twins_come_back_flagged_not_linked() -> None:
    matcher = Matcher(default_model())
    first = {
        "birth_name": "Petit",
        "first_names": "Lucas",
        "birth_date": "2010-01-09",
        "birthplace": "35238",
    }
    matcher.add(first)
    found = matcher.match({**first, "first_names": "Hugo"})
    assert len(found) == 1
    assert found[0][1].decision != LINK and HOMONYM in found[0][1].flags


def test_score_two_raw_identities() -> None:
    matcher = Matcher(default_model())
    # the same birthplace: names, date and sex alone would go to review (a homonym)
    left = {
        "birth_name": "Saint-Martin",
        "first_name": "Élodie",
        "birth_date": "1990-02-03",
        "birthplace": "75056",
    }
    right = {
        "birth_name": "ST MARTIN", "first_name": "Elodie", "birth_date": "1990-02-03",
        "birthplace": "75056",
    }  # fmt: skip
    assert matcher.score(left, right).decision == LINK
    without_birthplace = {k: v for k, v in right.items() if k != "birthplace"}
    assert matcher.score(left, without_birthplace).decision == REVIEW
