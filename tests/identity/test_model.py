"""The model as JSON: saved and loaded, it scores exactly the same."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from maillage.errors import ConfigurationError
from maillage.identity.model import Model, default_model
from maillage.identity.normalize import prepare
from maillage.identity.scoring import Scorer
from tests.identity.synthetic import population


def test_round_trip_gives_the_same_scores(tmp_path: Path) -> None:
    model = default_model().with_thresholds(auto_link=0.995, review=0.6)
    path = tmp_path / "identity-model.json"
    model.save(path)
    loaded = Model.load(path)
    assert loaded == model
    records, truth = population(200, 60)
    prepared = [prepare(r) for r in records]
    before, after = Scorer(model), Scorer(loaded)
    for i, j in [*sorted(truth)[:60], (0, 1), (2, 3), (4, 5)]:
        assert before.score(prepared[i], prepared[j]) == after.score(prepared[i], prepared[j])


def test_the_file_is_plain_json(tmp_path: Path) -> None:
    path = tmp_path / "model.json"
    default_model().save(path)
    data = json.loads(path.read_text())
    assert data["format"] == 1
    assert data["comparisons"][0]["levels"][0] == {"name": "exact", "m": 0.85, "u": 0.002}


def test_a_model_with_other_levels_is_refused() -> None:
    data = default_model().to_dict()
    data["comparisons"][0]["levels"] = data["comparisons"][0]["levels"][:-1]
    with pytest.raises(ConfigurationError, match="train the model again"):
        Model.from_dict(data)


def test_a_model_of_another_format_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "model.json"
    path.write_text(json.dumps({**default_model().to_dict(), "format": 99}))
    with pytest.raises(ConfigurationError, match="format"):
        Model.load(path)


def test_an_unreadable_model_says_which_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=r"missing\.json"):
        Model.load(tmp_path / "missing.json")
