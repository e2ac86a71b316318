"""Where a source identity goes once scored: which territorial identity it joins, and
which pairs the identitovigilance cell must review.

Pure: the scored candidates (filed source identities sharing a blocking key, each with
its territorial identity) and the identity's current placement in, a ``Placement`` out.

- A person's decision stands: a ``verified`` placement is never changed by the machine,
  and a territorial identity the cell said ``never`` to is never joined.
- A territorial identity is joined automatically when its best pair decides ``link``
  and none of its members raises an alert (twins, homonyms, an INS collision): the
  scorer's rules already refuse those pairs, this keeps a cluster that holds one of
  them from being joined through another member.
- Several territorial identities above the upper threshold: the best is joined, the
  others go to review (they may be the same person, split: the cell decides).
- Everything between the thresholds, or flagged, goes to review; below, nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from maillage.identity.scoring import (
    BIRTHPLACE_CONFLICT,
    HOMONYM,
    INS_COLLISION,
    LINK,
    NONE,
    PairScore,
)

ALERTS = frozenset({HOMONYM, INS_COLLISION, BIRTHPLACE_CONFLICT})


@dataclass(frozen=True, slots=True)
class Scored:
    """A filed source identity scored against the incoming one."""

    patient_id: str
    territorial_id: str
    score: PairScore


@dataclass(frozen=True, slots=True)
class Placement:
    # None: a new territorial identity is created for it
    territorial_id: str | None
    # the pair that placed it (None for a new or unchanged placement without a match)
    matched: Scored | None
    # per other territorial identity, its best pair, for the review queue
    review: tuple[Scored, ...]


def place(
    candidates: Iterable[Scored],
    *,
    current: str | None = None,
    verified: bool = False,
    alone: bool = True,
    never: frozenset[str] = frozenset(),
) -> Placement:
    """``current``: its territorial identity if already filed; ``alone``: whether it is
    that identity's only member; ``never``: territorial identities it must not join."""
    best: dict[str, Scored] = {}
    alerted: set[str] = set()
    for candidate in candidates:
        territorial = candidate.territorial_id
        if ALERTS.intersection(candidate.score.flags):
            alerted.add(territorial)
        known = best.get(territorial)
        if known is None or candidate.score.match_weight > known.score.match_weight:
            best[territorial] = candidate
    linkable = [
        scored
        for territorial, scored in best.items()
        if scored.score.decision == LINK and territorial not in alerted and territorial not in never
    ]
    linkable.sort(key=lambda scored: scored.score.match_weight, reverse=True)

    matched: Scored | None
    if verified and current is not None:
        target, matched = current, best.get(current)
    elif current is not None and any(s.territorial_id == current for s in linkable):
        target, matched = current, best[current]
    elif linkable:
        target, matched = linkable[0].territorial_id, linkable[0]
    elif current is not None and alone:
        target, matched = current, None
    else:
        target, matched = None, None

    review = tuple(
        sorted(
            (
                scored
                for territorial, scored in best.items()
                if territorial != target
                and territorial not in never
                and (scored.score.decision != NONE or scored.score.flags)
            ),
            key=lambda scored: scored.score.match_weight,
            reverse=True,
        )
    )
    return Placement(target, matched, review)
