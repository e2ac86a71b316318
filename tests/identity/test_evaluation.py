"""Pairwise precision / recall / F1 of a clustering, review-queue recall, truth files."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from maillage.errors import ConfigurationError
from maillage.identity.evaluation import clusters, pairwise_scores, read_truth

# truth: {a, b, c} one person, {d, e} another, f alone -> 3 + 1 = 4 true pairs
TRUTH = {"a": 1, "b": 1, "c": 1, "d": 2, "e": 2, "f": 3}
# predicted: {a, b}, {c, d}, {e, f} -> 3 predicted pairs, only (a, b) true
PREDICTED = {"a": "X", "b": "X", "c": "Y", "d": "Y", "e": "Z", "f": "Z"}


def test_counts_and_rates_from_cluster_sizes() -> None:
    scores = pairwise_scores(PREDICTED, TRUTH)
    assert (scores.records, scores.true_pairs, scores.predicted_pairs) == (6, 4, 3)
    assert scores.true_positives == 1
    assert scores.precision == pytest.approx(1 / 3)
    assert scores.recall == pytest.approx(1 / 4)
    assert scores.f1 == pytest.approx(2 / 7)  # 2 · (1/3 · 1/4) / (1/3 + 1/4)
    assert scores.recall_with_review == scores.recall  # no review queue given


def test_review_pairs_count_once_and_only_when_not_already_linked() -> None:
    review = [
        ("a", "c"),  # true, not linked: found through review
        ("c", "a"),  # the same pair again: not counted twice
        ("d", "e"),  # true, not linked: found
        ("e", "f"),  # not a true pair
        ("a", "b"),  # true but already linked: counted once, as a link
        ("a", "a"),  # a record with itself: ignored
    ]
    scores = pairwise_scores(PREDICTED, TRUTH, review)
    assert scores.found_in_review == 2
    assert scores.recall_with_review == pytest.approx(3 / 4)
    assert scores.precision == pytest.approx(1 / 3)  # review does not change precision


def test_a_perfect_clustering_and_an_empty_one() -> None:
    perfect = pairwise_scores({k: f"p{v}" for k, v in TRUTH.items()}, TRUTH)
    assert (perfect.precision, perfect.recall, perfect.f1) == (1.0, 1.0, 1.0)
    singletons = pairwise_scores({k: k for k in TRUTH}, TRUTH)
    # nothing linked: no wrong link (precision 1), nothing found (recall 0, F1 0)
    assert (singletons.predicted_pairs, singletons.precision, singletons.recall) == (0, 1.0, 0.0)
    assert singletons.f1 == 0.0


def test_a_record_missing_from_the_prediction_is_a_singleton() -> None:
    partial = {k: v for k, v in PREDICTED.items() if k != "b"}
    scores = pairwise_scores(partial, TRUTH)
    assert scores.records == 6
    assert scores.predicted_pairs == 2 and scores.true_positives == 0


def test_one_million_records_without_enumerating_pairs() -> None:
    size = 1_000_000
    truth = {n: n // 4 for n in range(size)}  # persons of 4 records: 6 pairs each
    predicted = {n: n // 2 for n in range(size)}  # each person split in two: 2 of 6 pairs
    started = time.process_time()  # this process's CPU: not the time others take
    scores = pairwise_scores(predicted, truth)
    elapsed = time.process_time() - started
    assert scores.true_pairs == size // 4 * 6
    assert scores.predicted_pairs == scores.true_positives == size // 2
    assert scores.precision == 1.0 and scores.recall == pytest.approx(1 / 3)
    assert elapsed < 10  # one pass over the maps (a pair enumeration would not end)


def test_clusters_from_links_by_union_find() -> None:
    found = clusters("abcdef", [("a", "b"), ("c", "b"), ("e", "f")])
    assert found["a"] == found["b"] == found["c"]
    assert found["e"] == found["f"] != found["a"]
    assert found["d"] == "d"


def test_read_truth_from_csv_and_ndjson(tmp_path: Path) -> None:
    csv_file = tmp_path / "truth.csv"
    csv_file.write_text("record,person,site\nS1/1,p1,S1\nS2/7,p1,S2\nS1/2,p2,S1\n")
    assert read_truth(csv_file, "record", "person") == {"S1/1": "p1", "S2/7": "p1", "S1/2": "p2"}
    ndjson_file = tmp_path / "truth.ndjson"
    ndjson_file.write_text(
        "\n".join(json.dumps({"id": n, "person": n // 2}) for n in range(4)) + "\n"
    )
    assert read_truth(ndjson_file, "id", "person") == {"0": "0", "1": "0", "2": "1", "3": "1"}


def test_read_truth_says_which_column_is_missing(tmp_path: Path) -> None:
    csv_file = tmp_path / "truth.csv"
    csv_file.write_text("record,cluster\nS1/1,p1\n")
    with pytest.raises(ConfigurationError, match=r"no column 'person'.*record, cluster"):
        read_truth(csv_file, "record", "person")


def test_read_truth_refuses_a_record_in_two_clusters_and_a_missing_file(tmp_path: Path) -> None:
    csv_file = tmp_path / "truth.csv"
    csv_file.write_text("record,person\nS1/1,p1\nS1/1,p2\n")
    with pytest.raises(ConfigurationError, match=r"line 3 .* second true cluster"):
        read_truth(csv_file, "record", "person")
    with pytest.raises(ConfigurationError, match="cannot read the truth file"):
        read_truth(tmp_path / "absent.csv", "record", "person")
