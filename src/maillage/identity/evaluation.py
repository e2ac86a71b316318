"""Pairwise quality of a clustering of identities against the truth.

A clustering maps a record id to a cluster id (the person the matcher thinks it is);
the truth maps it to the real person. Two records form a *true pair* when the truth puts
them together and a *predicted pair* when the clustering does. Pairwise precision is the
share of predicted pairs that are true, recall the share of true pairs predicted.

Counts come from cluster sizes, never from enumerating pairs: a cluster of n records
holds n(n-1)/2 pairs, and the true positives are the pairs of each (truth cluster,
predicted cluster) cell. A million records cost one pass over the two maps.

A record present on one side only is a cluster of its own on the other (a record the
matcher never saw is a singleton; so is a record the truth does not know).

Pure: ids and clusters in, counts out; ``read_truth`` reads a truth file (CSV or NDJSON).
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from maillage.errors import ConfigurationError

Id = TypeVar("Id", bound=Hashable)

NDJSON_SUFFIXES = frozenset({".ndjson", ".jsonl"})


@dataclass(frozen=True, slots=True)
class PairwiseScores:
    """Pairwise counts and rates. With nothing predicted precision is 1.0 (no wrong
    link was made); with no true pair, recall is 1.0 (nothing to find)."""

    records: int
    true_pairs: int
    predicted_pairs: int
    true_positives: int
    # true pairs not linked but sent to the review queue (each counted once)
    found_in_review: int = 0

    @property
    def precision(self) -> float:
        return self.true_positives / self.predicted_pairs if self.predicted_pairs else 1.0

    @property
    def recall(self) -> float:
        return self.true_positives / self.true_pairs if self.true_pairs else 1.0

    @property
    def f1(self) -> float:
        precision, recall = self.precision, self.recall
        return 2 * precision * recall / (precision + recall) if precision + recall else 0.0

    @property
    def recall_with_review(self) -> float:
        """A true pair counts as found when linked or in the review queue."""
        found = self.true_positives + self.found_in_review
        return found / self.true_pairs if self.true_pairs else 1.0

    def as_dict(self) -> dict[str, float | int]:
        return {
            "records": self.records,
            "true_pairs": self.true_pairs,
            "predicted_pairs": self.predicted_pairs,
            "true_positives": self.true_positives,
            "found_in_review": self.found_in_review,
            "precision": self.precision,
            "recall": self.recall,
            "f1": self.f1,
            "recall_with_review": self.recall_with_review,
        }


def _pairs(size: int) -> int:
    return size * (size - 1) // 2


def pairwise_scores(
    predicted: Mapping[Id, Hashable],
    truth: Mapping[Id, Hashable],
    review: Iterable[tuple[Id, Id]] = (),
) -> PairwiseScores:
    """Precision, recall and F1 of ``predicted`` against ``truth`` (record id → cluster
    id), and the recall counting ``review`` pairs (unordered; repeats and self pairs
    ignored) as found."""
    records = set(truth) | set(predicted)
    # a record missing on one side is a singleton there: a key no other record shares
    truth_of = {
        record: ("t", truth[record]) if record in truth else ("r", record) for record in records
    }
    cluster_of = {
        record: ("p", predicted[record]) if record in predicted else ("r", record)
        for record in records
    }
    true_pairs = sum(_pairs(n) for n in Counter(truth_of.values()).values())
    predicted_pairs = sum(_pairs(n) for n in Counter(cluster_of.values()).values())
    cells = Counter((truth_of[record], cluster_of[record]) for record in records)
    true_positives = sum(_pairs(n) for n in cells.values())
    seen: set[frozenset[Id]] = set()
    found_in_review = 0
    for left, right in review:
        if left == right or left not in records or right not in records:
            continue
        key = frozenset((left, right))
        if key in seen:
            continue
        seen.add(key)
        if truth_of[left] == truth_of[right] and cluster_of[left] != cluster_of[right]:
            found_in_review += 1
    return PairwiseScores(
        records=len(records),
        true_pairs=true_pairs,
        predicted_pairs=predicted_pairs,
        true_positives=true_positives,
        found_in_review=found_in_review,
    )


def clusters(records: Iterable[Id], links: Iterable[tuple[Id, Id]]) -> dict[Id, Id]:
    """Union-find over linked pairs: each record → a representative record of its
    cluster (a record with no link is its own)."""
    parent: dict[Id, Id] = {record: record for record in records}

    def find(record: Id) -> Id:
        root = parent.setdefault(record, record)
        while parent[root] != root:
            root = parent[root]
        while parent[record] != root:  # path compression
            parent[record], record = root, parent[record]
        return root

    for left, right in links:
        a, b = find(left), find(right)
        if a != b:
            parent[b] = a
    return {record: find(record) for record in list(parent)}


def read_truth(path: Path | str, id_column: str, truth_column: str) -> dict[str, str]:
    """Record id → true cluster id from a CSV file (header row) or an NDJSON file
    (``.ndjson``/``.jsonl``: one object a line). Raises ``ConfigurationError`` saying
    what to fix: a missing file or column, an empty id, an id given two clusters."""
    path = Path(path)
    try:
        ndjson = path.suffix.lower() in NDJSON_SUFFIXES
        rows = _ndjson_rows(path) if ndjson else _csv_rows(path)
        truth: dict[str, str] = {}
        for line, row in rows:
            for column in (id_column, truth_column):
                if column not in row:
                    found = ", ".join(map(str, row)) or "none"
                    raise ConfigurationError(
                        f"{path}: line {line} has no column {column!r} (columns found: "
                        f"{found}); name the record id and truth columns as the file does"
                    )
            record = _cell(row[id_column])
            cluster = _cell(row[truth_column])
            if not record or not cluster:
                raise ConfigurationError(
                    f"{path}: line {line} has an empty {id_column!r} or {truth_column!r}: "
                    "every record needs an id and a true cluster"
                )
            if truth.setdefault(record, cluster) != cluster:
                raise ConfigurationError(
                    f"{path}: line {line} gives record {record!r} a second true cluster: "
                    "a record belongs to one cluster; remove the duplicate line"
                )
    except OSError as error:
        raise ConfigurationError(f"cannot read the truth file {path}: {error}") from None
    return truth


def _cell(value: Any) -> str:
    return "" if value is None else str(value).strip()


def _csv_rows(path: Path) -> Iterable[tuple[int, dict[str, Any]]]:
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames is None:
            raise ConfigurationError(f"{path}: empty file, expected a header row")
        for number, row in enumerate(reader, start=2):
            yield number, {k: v for k, v in row.items() if k is not None}


def _ndjson_rows(path: Path) -> Iterable[tuple[int, dict[str, Any]]]:
    with path.open(encoding="utf-8") as handle:
        for number, text in enumerate(handle, start=1):
            if not text.strip():
                continue
            try:
                row = json.loads(text)
            except ValueError:
                raise ConfigurationError(
                    f"{path}: line {number} is not JSON: one JSON object a line"
                ) from None
            if not isinstance(row, dict):
                raise ConfigurationError(f"{path}: line {number} is not a JSON object")
            yield number, row
