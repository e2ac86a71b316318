"""Fellegi–Sunter scoring of a pair of prepared records, and the identity rules that
override the score.

match weight = log2(prior / (1 - prior)) + Σ log2(m / u) of each field's level;
probability = 2^w / (1 + 2^w). A missing field adds nothing. Then the rules, which a
score never overturns:

- two qualified (QUAL) identities with the same INS are the same person: link;
- two qualified identities with different INS never auto-link; when their traits would
  link or review them, one INS is wrong: review (``ins_collision``);
- same birth name (or a birth/used name cross-match, or one typo apart), birth date
  (or its day and month swapped) and birthplace (both known) but other first names:
  twins or homonyms, never auto-linked (``homonym``);
- same names and birth date but another birthplace: never auto-linked
  (``birthplace_conflict``).

When the model compares the birthplace (the five strict traits of a French identity),
also:

- twins or homonyms as above with the birthplace unknown on a side and first names
  that differ (not the same list, not one of the other's names): ``homonym``;
- a pair the score would link is reviewed instead when a strict trait conflicts: birth
  dates further apart than a day/month swap or one typo (``birth_date_conflict``: a
  father and son of the same names at the same address), unrelated first names
  (``first_names_conflict``), two known birthplaces that differ
  (``birthplace_conflict``); or when the birthplace is unknown on a side and neither
  home (street and town), phone nor INS is shared (``birthplace_unknown``: a homonym
  looks just like the same person who moved, or who gave no home nor phone).

The scorer is plain Python over precomputed weight tables: a few microseconds a pair.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from rapidfuzz.distance import Levenshtein

from maillage.identity.compare import CATALOG, MISSING, LevelFunction
from maillage.identity.model import Model

LINK: Final = "link"
REVIEW: Final = "review"
NONE: Final = "none"

HOMONYM: Final = "homonym"
INS_COLLISION: Final = "ins_collision"
BIRTHPLACE_CONFLICT: Final = "birthplace_conflict"
SAME_QUALIFIED_INS: Final = "same_qualified_ins"
BIRTH_DATE_CONFLICT: Final = "birth_date_conflict"
FIRST_NAMES_CONFLICT: Final = "first_names_conflict"
BIRTHPLACE_UNKNOWN: Final = "birthplace_unknown"

Record = Mapping[str, Any]

# first-names level of a first name one typing error away (jw 0.92)
_FIRST_NAMES_TYPO: Final = 3
# first-names levels from which two first names differ (jw 0.92, jw 0.80, else): not the
# same list, not one of the other's names, not swapped with the family name
_FIRST_NAMES_DIFFER: Final = 3
# name levels of one family name: exact, birth/used cross, jw 0.92 (a typo)
_NAMES_AGREE: Final = frozenset({0, 1, 3})
# birth-date levels of one date: exact, day/month swapped
_DATES_AGREE: Final = frozenset({0, 1})
# first-names levels of unrelated first names (jw 0.80, else: more than a typo apart)
_FIRST_NAMES_UNRELATED: Final = 4
# birth-date levels beyond a day/month swap or one typo (two typos, else)
_DATE_DIFFERS: Final = 3
# address-line levels of two different streets, city levels of two different towns
# (jw 0.80, else)
_ADDRESS_DIFFERS: Final = 2
# phone levels of two different numbers (else)
_PHONE_DIFFERS: Final = 2


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
        # The rules on strict traits need the French identity's five strict traits (RNIV:
        # birth name, first names, birth date, sex, birthplace); a model that does not
        # compare the birthplace is for other data (FEBRL, say), whose dates and first
        # names are corrupted far more than a desk's typos, and where they do not hold.
        self._strict_traits = any(c.name == "birthplace" for c in model.comparisons)
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

    def placement_score(self, left: Record, right: Record) -> PairScore:
        """``score`` as placing an identity needs it: a pair that can neither link, be
        reviewed nor raise an alert (under the review threshold, names or date apart, not
        two qualified INS) comes back with its weight alone, without explanation (nothing
        shows it); the others are scored in full. Half the cost on a large base, where
        most candidates share a birth date and nothing else."""
        total = self._prior_weight
        name_level = date_level = MISSING
        for name, level_of, weights, _levels in self._fields:
            level = level_of(left, right)
            if level != MISSING:
                total += weights[level]
            if name == "name":
                name_level = level
            elif name == "birth_date":
                date_level = level
        if (
            total < self._review_weight
            and not (name_level in _NAMES_AGREE and date_level in _DATES_AGREE)
            and not (left.get("ins_qualified") and right.get("ins_qualified"))
        ):
            return PairScore(total, probability_of(total), NONE, ())
        return self.score(left, right)

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
            if decision != NONE:  # two qualified INS that differ: two persons, unless
                # the traits say otherwise — then one INS is wrong (a collision)
                flags.append(INS_COLLISION)
                rule = INS_COLLISION
                decision = REVIEW

        # the family name the same, allowing one typing error; the date too, allowing
        # day and month typed the other way round
        names_agree = levels.get("name") in _NAMES_AGREE
        same_date = levels.get("birth_date") in _DATES_AGREE
        if names_agree and same_date:
            place = levels.get("birthplace", MISSING)
            first = levels.get("first_names", MISSING)
            # a first name typed wrong among the same others, the birthplace confirming
            # (homonyms share all their first names: only the birthplace parts them)
            typo = (
                place == 0
                and first == _FIRST_NAMES_TYPO
                and _one_name_typed_wrong(left, right, levels)
            )
            if not typo and (
                (place == 0 and first not in (0, MISSING))
                or (place == MISSING and self._strict_traits and first >= _FIRST_NAMES_DIFFER)
            ):
                flags.append(HOMONYM)
                rule = rule or HOMONYM
                decision = REVIEW if decision == LINK else decision
            elif place not in (0, MISSING):
                flags.append(BIRTHPLACE_CONFLICT)
                rule = rule or BIRTHPLACE_CONFLICT
                decision = REVIEW if decision == LINK else decision
        if decision == LINK and self._strict_traits:
            conflict = _strict_conflict(levels)
            if conflict:
                flags.append(conflict)
                rule = rule or conflict
                decision = REVIEW
        return PairScore(total, probability, decision, tuple(explanation), tuple(flags), rule)


def _strict_conflict(levels: Mapping[str, int]) -> str | None:
    """Why a pair the score would link must be reviewed instead, if it must: a strict
    trait that conflicts, or nothing to tell a homonym from the same person moved."""
    if levels.get("birth_date", MISSING) >= _DATE_DIFFERS:
        return BIRTH_DATE_CONFLICT
    if levels.get("first_names", MISSING) >= _FIRST_NAMES_UNRELATED:
        return FIRST_NAMES_CONFLICT
    place = levels.get("birthplace", MISSING)
    if place not in (0, MISSING):
        return BIRTHPLACE_CONFLICT
    if place == MISSING and "birthplace" in levels:
        # the same home is the same street in the same town (a street name alone recurs
        # from town to town); another home is another street, town or postcode
        street = levels.get("address_line", MISSING)
        town = (levels.get("postcode", MISSING), levels.get("city", MISSING))
        same_home = street == 0 and 0 in town
        # Nothing shared beyond names, date and sex: a homonym with no home or phone on
        # record looks exactly like the same person; a wrong merge mixes two records, a
        # review costs a look (identitovigilance: in doubt, do not merge).
        shared = same_home or levels.get("phone") == 0 or levels.get("ins") == 0
        if not shared:
            return BIRTHPLACE_UNKNOWN
    return None


def _one_name_typed_wrong(left: Record, right: Record, levels: Mapping[str, int]) -> bool:
    """Two lists of at least two first names, the same but for one name a typing error
    apart, and the same sex: one person typed twice. Twins and homonyms do not share all
    their other first names; with one first name alone, nothing tells them apart."""
    if levels.get("sex") != 0:
        return False
    a = left["first_names"]
    b = right["first_names"]
    if len(a) < 2 or len(a) != len(b):
        return False
    only_a = [name for name in a if name not in b]
    only_b = [name for name in b if name not in a]
    return (
        len(only_a) == 1
        and len(only_b) == 1
        and Levenshtein.distance(only_a[0], only_b[0], score_cutoff=2) <= 2
    )
