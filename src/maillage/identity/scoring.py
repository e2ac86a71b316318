"""Fellegi–Sunter scoring of a pair of prepared records, and the identity rules that
override the score.

match weight = log2(prior / (1 - prior)) + Σ log2(m / u) of each field's level;
probability = 2^w / (1 + 2^w). A missing field adds nothing. Then the rules, which a
score never overturns:

- two qualified (QUAL) identities with the same INS are the same person: link;
- two qualified identities with different INS never auto-link (``ins_collision``);
- same birth name (or a birth/used name cross-match), birth date and birthplace (both
  known) but other first names: twins or homonyms, never auto-linked (``homonym``);
- same names and birth date but another birthplace: never auto-linked
  (``birthplace_conflict``).

The scorer is plain Python over precomputed weight tables: a few microseconds a pair.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from maillage.identity.compare import CATALOG, MISSING, LevelFunction
from maillage.identity.model import Model

LINK: Final = "link"
REVIEW: Final = "review"
NONE: Final = "none"

HOMONYM: Final = "homonym"
INS_COLLISION: Final = "ins_collision"
BIRTHPLACE_CONFLICT: Final = "birthplace_conflict"
SAME_QUALIFIED_INS: Final = "same_qualified_ins"

Record = Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class FieldExplanation:
    field: str
    level: str  # a level name, or "missing"
    weight: float


@dataclass(frozen=True, slots=True)
class PairScore:
    match_weight: float
    probability: float
    decision: str  # link / review / none
    explanation: tuple[FieldExplanation, ...]
    flags: tuple[str, ...] = ()
    rule: str | None = None  # the rule that decided, when one did

    def as_dict(self) -> dict[str, Any]:
        return {
            "match_weight": round(self.match_weight, 4),
            "probability": self.probability,
            "decision": self.decision,
            "flags": list(self.flags),
            "rule": self.rule,
            "explanation": [
                {"field": f.field, "level": f.level, "weight": round(f.weight, 4)}
                for f in self.explanation
            ],
        }


def probability_of(weight: float) -> float:
    if weight > 60:
        return 1.0
    if weight < -60:
        return 0.0
    odds = 2.0**weight
    return odds / (1.0 + odds)


def weight_of(probability: float) -> float:
    probability = min(max(probability, 1e-15), 1 - 1e-15)
    return math.log2(probability / (1 - probability))


class Scorer:
    """Scores pairs with one model. Build it once per model: it precomputes each
    level's weight."""

    def __init__(self, model: Model) -> None:
        self.model = model
        self._prior_weight = weight_of(model.prior)
        self._fields: list[tuple[str, LevelFunction, tuple[float, ...], tuple[str, ...]]] = []
        for params in model.comparisons:
            comparison = CATALOG[params.name]
            weights = tuple(level.weight for level in params.levels)
            self._fields.append((params.name, comparison.level, weights, comparison.levels))
        self._auto_weight = weight_of(model.thresholds.auto_link)
        self._review_weight = weight_of(model.thresholds.review)

    def weight(self, left: Record, right: Record) -> float:
        """The match weight alone, without rules or explanation (the batch hot path)."""
        total = self._prior_weight
        for _name, level_of, weights, _levels in self._fields:
            level = level_of(left, right)
            if level != MISSING:
                total += weights[level]
        return total

    def score(self, left: Record, right: Record) -> PairScore:
        total = self._prior_weight
        explanation: list[FieldExplanation] = []
        levels: dict[str, int] = {}
        for name, level_of, weights, level_names in self._fields:
            level = level_of(left, right)
            levels[name] = level
            if level == MISSING:
                explanation.append(FieldExplanation(name, "missing", 0.0))
            else:
                total += weights[level]
                explanation.append(FieldExplanation(name, level_names[level], weights[level]))
        probability = probability_of(total)
        if total >= self._auto_weight:
            decision = LINK
        elif total >= self._review_weight:
            decision = REVIEW
        else:
            decision = NONE
        flags: list[str] = []
        rule: str | None = None

        if (
            left.get("ins_qualified")
            and right.get("ins_qualified")
            and left["ins"]
            and right["ins"]
        ):
            if left["ins"] == right["ins"]:
                return PairScore(total, 1.0, LINK, tuple(explanation), (), SAME_QUALIFIED_INS)
            flags.append(INS_COLLISION)
            rule = INS_COLLISION
            decision = REVIEW

        names_agree = levels.get("name") in (0, 1)
        same_date = levels.get("birth_date") == 0
        if names_agree and same_date:
            place = levels.get("birthplace", MISSING)
            if place == 0 and levels.get("first_names", MISSING) not in (0, MISSING):
                flags.append(HOMONYM)
                rule = rule or HOMONYM
                decision = REVIEW if decision == LINK else decision
            elif place not in (0, MISSING):
                flags.append(BIRTHPLACE_CONFLICT)
                rule = rule or BIRTHPLACE_CONFLICT
                decision = REVIEW if decision == LINK else decision
        return PairScore(total, probability, decision, tuple(explanation), tuple(flags), rule)
