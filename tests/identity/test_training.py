"""Training with Splink on generated French identities."""

from __future__ import annotations

from typing import Any

import pytest

from maillage.identity.blocking import candidate_pairs
from maillage.identity.model import Model
from maillage.identity.normalize import prepare
from maillage.identity.scoring import LINK, NONE, Scorer
from maillage.identity.training import from_splink, train
from tests.identity.synthetic import FIRST_F, FIRST_M, PLACES, population


@pytest.fixture(scope="module")
def trained() -> tuple[Model, list[dict[str, Any]], set[tuple[int, int]]]:
    records, truth = population(1500, 500, seed=21)
    prepared = [prepare(r) for r in records]
    model = train([prepared], u_max_pairs=3e5)
    return model, prepared, truth


def test_the_model_comes_from_splink(
    trained: tuple[Model, list[dict[str, Any]], set[tuple[int, int]]],
) -> None:
    model, _, _ = trained
    assert model.trained["by"] == "splink"
    assert 0 < model.prior < 0.01
    for comparison in model.comparisons:
        exact = comparison.levels[0]
        assert exact.m > exact.u, comparison.name  # agreement is evidence of a match
        assert all(0 <= level.m <= 1 and 0 <= level.u <= 1 for level in comparison.levels)


def test_the_trained_model_separates_matches_from_non_matches(
    trained: tuple[Model, list[dict[str, Any]], set[tuple[int, int]]],
) -> None:
    model, prepared, truth = trained
    scorer = Scorer(model)
    pairs = candidate_pairs(prepared)
    assert len(truth & pairs) / len(truth) > 0.97
    decisions = {pair: scorer.score(prepared[pair[0]], prepared[pair[1]]) for pair in pairs}
    found = [decisions[p] for p in truth & pairs]
    others = [s for p, s in decisions.items() if p not in truth]
    linked_true = sum(s.decision == LINK for s in found)
    linked_false = sum(s.decision == LINK for s in others)
    assert sum(s.decision != NONE for s in found) / len(truth) > 0.95  # found, counting review
    assert linked_true / len(truth) > 0.8
    assert linked_false <= 2
    true_weights = sorted(s.match_weight for s in found)
    other_weights = sorted(s.match_weight for s in others)
    assert true_weights[len(true_weights) // 2] > other_weights[len(other_weights) // 2] + 10


def test_from_splink_keeps_defaults_for_untrained_levels() -> None:
    from maillage.identity.compare import CATALOG

    splink_like = {
        "probability_two_random_records_match": 0.001,
        "comparisons": [
            {
                "output_column_name": "sex",
                "comparison_levels": [
                    {"is_null_level": True},
                    {"m_probability": 0.97, "u_probability": 0.5},
                    {"u_probability": 0.5},
                ],
            }
        ],
    }
    model = from_splink(splink_like, ["sex"])
    assert [level.name for level in model.comparison("sex").levels] == list(CATALOG["sex"].levels)
    assert model.comparison("sex").levels[0].m == 0.97
    assert model.trained["untrained_levels"] == ["sex.else"]


def test_twins_and_homonyms_are_never_merged(
    trained: tuple[Model, list[dict[str, Any]], set[tuple[int, int]]],
) -> None:
    """Twins share everything but their first names (same address, same phone); a
    homonym shares the names and the birth date but was born elsewhere."""
    model, _, _ = trained
    scorer = Scorer(model)
    records, _ = population(300, 0, seed=5)
    twins = 0
    for number, person in enumerate(records):
        pool = FIRST_M if person["sex"] == "M" else FIRST_F
        others = [n for n in pool if n not in person["first_names"]]
        twin = {**person, "first_names": others[number % len(others)], "first_name": None}
        place = PLACES[(PLACES.index(person["birthplace"]) + 1) % len(PLACES)]
        homonym = {**person, "birthplace": place, "phone": None, "postcode": None}
        twin_score = scorer.score(prepare(person), prepare(twin))
        homonym_score = scorer.score(prepare(person), prepare(homonym))
        assert twin_score.decision != LINK and "homonym" in twin_score.flags
        assert homonym_score.decision != LINK and "birthplace_conflict" in homonym_score.flags
        twins += 1
    assert twins == 300
