"""The facade: prepare identities, find candidates by blocking, score them.

``Matcher`` keeps an in-memory index of prepared records (the online path will keep
it in the store instead); everything it does goes through ``normalize``, ``compare``
and ``scoring``, so a batch run and a single registration score alike.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

from maillage.identity.blocking import DEFAULT_BLOCKING, blocking_keys
from maillage.identity.model import Model
from maillage.identity.normalize import prepare
from maillage.identity.scoring import NONE, PairScore, Scorer


class Matcher:
    def __init__(self, model: Model, blocking: Sequence[str] = DEFAULT_BLOCKING) -> None:
        self.scorer = Scorer(model)
        self.blocking = tuple(blocking)
        self._records: list[dict[str, Any]] = []
        self._index: dict[str, list[int]] = defaultdict(list)

    def __len__(self) -> int:
        return len(self._records)

    def add(self, raw: Mapping[str, Any]) -> int:
        """File an identity (raw traits); returns its position."""
        record = prepare(raw)
        position = len(self._records)
        self._records.append(record)
        for key in blocking_keys(record, self.blocking):
            self._index[key].append(position)
        return position

    def candidates(self, record: Mapping[str, Any]) -> set[int]:
        found: set[int] = set()
        for key in blocking_keys(record, self.blocking):
            found.update(self._index.get(key, ()))
        return found

    def match(
        self, raw: Mapping[str, Any], *, include_none: bool = False
    ) -> list[tuple[int, PairScore]]:
        """The filed identities that may be this one, best first, with their scores."""
        record = prepare(raw)
        scored = [
            (position, self.scorer.score(record, self._records[position]))
            for position in self.candidates(record)
        ]
        if not include_none:
            scored = [item for item in scored if item[1].decision != NONE or item[1].flags]
        scored.sort(key=lambda item: item[1].match_weight, reverse=True)
        return scored

    def score(self, left: Mapping[str, Any], right: Mapping[str, Any]) -> PairScore:
        """Score two raw identities."""
        return self.scorer.score(prepare(left), prepare(right))
