"""Read-only lookups of the territorial patient index: PIXm cross-references and $match.

``cross_references`` (IHE PIXm, ITI-83): a source identifier — a site's IPP, the
territorial identifier, a qualified INS or a Logical id ``Patient/{id}`` — gives the
person's identifiers in the other domains (the other active sources' IPPs, the territorial
identifier and the qualified INS of the golden record) and the Patients that carry them;
never the identifier asked about, nor its own Patient (ITI-83 2:3.83.4.2.2.1).

``match`` (FHIR R4 ``Patient/$match``): a Patient is scored as the online matching would
score it (``PatientIndex.scorer``) against the active sources sharing a blocking key —
nothing is written — and the answer is the territorial identities (golden Patients), each
graded by its best-scoring source:

    certain    the pair would be linked (decision ``link``, which includes two qualified
               identities with the same INS, whatever their traits)
    probable   a pair to review, without a conflict flag, whose match weight is at least
               halfway (in log-odds) from the review threshold to the auto-link one
    possible   any other pair to review: a lower score, or a conflict the cell must look
               at (twins or homonyms, INS collision, birthplace, birth date, first names)

Pairs under the review threshold are not returned (``certainly-not`` never is: the Bundle
lists possible matches). ``search.score`` is the pair's probability.

Patients are read through the caller's repository: the access policy applies, and a
Patient it hides is left out (ITI-83 2:3.83.4.1.3 allows a subset).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import orjson
import psycopg

from maillage.errors import Conflict, Forbidden, Gone, InvalidRequest, Issue, NotFound
from maillage.fhir.business_rules import configuration
from maillage.fhir.model import StoredResource
from maillage.fhir.repository import FhirStore, Repository
from maillage.identity.blocking import blocking_keys
from maillage.identity.golden import TERRITORIAL_SYSTEM
from maillage.identity.ins import INS_SYSTEMS
from maillage.identity.normalize import prepare
from maillage.identity.patient_traits import patient_traits
from maillage.identity.scoring import (
    BIRTH_DATE_CONFLICT,
    BIRTHPLACE_CONFLICT,
    FIRST_NAMES_CONFLICT,
    HOMONYM,
    INS_COLLISION,
    LINK,
    NONE,
    PairScore,
    probability_of,
    weight_of,
)
from maillage.mpi import store
from maillage.mpi.index import MAX_CANDIDATES, PatientIndex
from maillage.security import RequestContext

CERTAIN: Final = "certain"
PROBABLE: Final = "probable"
POSSIBLE: Final = "possible"
_GRADE_ORDER: Final = {CERTAIN: 0, PROBABLE: 1, POSSIBLE: 2}
# Flags of a pair the identitovigilance cell must look at: never better than possible.
CONFLICT_FLAGS: Final = frozenset(
    {HOMONYM, INS_COLLISION, BIRTHPLACE_CONFLICT, BIRTH_DATE_CONFLICT, FIRST_NAMES_CONFLICT}
)
DEFAULT_MATCH_COUNT: Final = 10
MAX_MATCH_COUNT: Final = 100
_IDENTIFIER_KEYS: Final = ("use", "type", "system", "value")
_TOO_FEW_TRAITS: Final = (
    "too few traits to look for a match: the birth name with the birth date or the first"
    " names, or a qualified INS"
)


@dataclass(frozen=True, slots=True)
class CrossReference:
    territorial_id: str
    identifiers: list[dict[str, Any]]  # targetIdentifier
    patient_ids: list[str]  # targetId


@dataclass(frozen=True, slots=True)
class Match:
    territorial_id: str
    patient: StoredResource  # the golden record
    grade: str
    score: float  # the best source's probability
    matched_patient_id: str  # that source
    flags: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class MatchResult:
    matches: list[Match]
    warnings: list[str] = field(default_factory=list)


def parse_identifier(text: str) -> tuple[str, str]:
    """``system|value`` → (system, value); both are required (ITI-83 2:3.83.4.1.2.1)."""
    system, bar, value = text.partition("|")
    if not bar or not system or not value:
        raise InvalidRequest(
            "sourceIdentifier is system|value: the assigning authority and the identifier"
        )
    return system, value


def grade_of(score: PairScore, probable_from: float) -> str:
    if score.decision == LINK:
        return CERTAIN
    if not CONFLICT_FLAGS.intersection(score.flags) and score.probability >= probable_from:
        return PROBABLE
    return POSSIBLE


class PatientLookup:
    def __init__(self, fhir: FhirStore, index: PatientIndex) -> None:
        self.fhir = fhir
        self.index = index
        thresholds = index.model.thresholds
        self.probable_from = probability_of(
            (weight_of(thresholds.review) + weight_of(thresholds.auto_link)) / 2
        )

    # -- PIXm ------------------------------------------------------------------------
    async def cross_references(
        self,
        ctx: RequestContext,
        source_identifier: str,
        target_systems: Sequence[str] = (),
        *,
        fhir_base: str | None = None,
    ) -> CrossReference:
        """``fhir_base``: the hub's FHIR base URL, the domain of Logical ids
        (``sourceIdentifier=[base]|Patient/123``, ITI-83 2:3.83.4.1.2.1); as a
        ``targetSystem``, it asks for the ``targetId`` of every Patient of the person."""
        system, value = parse_identifier(source_identifier)
        if system in INS_SYSTEMS:
            value = "".join(value.split()).upper()
        async with self.fhir.db.connection() as conn:
            if not await _known_domain(conn, system, fhir_base):
                # ITI-83 2:3.83.4.2.2.3 Source Domain not recognized: 400, code-invalid
                message = "sourceIdentifier Assigning Authority not found"
                raise InvalidRequest(message, issues=[Issue(message, code="code-invalid")])
            unknown = [t for t in target_systems if not await _known_domain(conn, t, fhir_base)]
            if unknown:
                # ITI-83 2:3.83.4.2.2.4 Target Domain not recognized: 403, code-invalid
                message = f"targetSystem not found: {', '.join(unknown)}"
                raise Forbidden(message, issues=[Issue(message, code="code-invalid")])
            territorial_id, own = await _resolve(conn, system, value, logical=system == fhir_base)
            sources = await store.sources_of(conn, territorial_id)
        targets = frozenset(target_systems)
        every_id = not targets or fhir_base in targets
        answer = CrossReference(territorial_id, [], [])
        seen = {(system, value)}  # the identifier asked about is not given back

        def add(patient_id: str, found: list[dict[str, Any]]) -> None:
            kept = [
                i
                for i in found
                if (i["system"], i["value"]) not in seen and (not targets or i["system"] in targets)
            ]
            seen.update((i["system"], i["value"]) for i in kept)
            answer.identifiers.extend(kept)
            if patient_id != own and patient_id not in answer.patient_ids and (kept or every_id):
                answer.patient_ids.append(patient_id)

        # the golden record gives the territorial identifier and the qualified INS; each
        # source its IPP as the site wrote it (type, use)
        repo = self.fhir.repository(ctx)
        golden = await _readable(repo, territorial_id)
        if golden is not None:
            person_wide = [
                i
                for i in _identifiers(golden)
                if i["system"] == TERRITORIAL_SYSTEM or i["system"] in INS_SYSTEMS
            ]
            add(territorial_id, person_wide)
        for source in sources:
            body = await _readable(repo, source.patient_id)
            if body is not None:
                ipp = (source.ipp_system, source.ipp)
                add(
                    source.patient_id,
                    [i for i in _identifiers(body) if (i["system"], i["value"]) == ipp],
                )
        return answer

    # -- $match ----------------------------------------------------------------------
    async def match(
        self,
        ctx: RequestContext,
        patient: dict[str, Any],
        *,
        only_certain: bool = False,
        count: int | None = None,
    ) -> MatchResult:
        """``patient``: a validated Patient resource."""
        prepared = prepare(patient_traits(patient))
        keys = blocking_keys(prepared)
        if not keys:
            return MatchResult([], [_TOO_FEW_TRAITS])
        async with self.fhir.db.connection() as conn:
            rows = await store.candidates(conn, keys, "", MAX_CANDIDATES)
        best: dict[str, tuple[str, PairScore]] = {}
        for patient_id, territorial_id, traits in rows:
            score = self.index.scorer.score(prepared, traits)
            if score.decision == NONE:
                continue
            current = best.get(territorial_id)
            if current is None or _rank(score) > _rank(current[1]):
                best[territorial_id] = (patient_id, score)
        graded = sorted(
            (
                (grade_of(score, self.probable_from), territorial_id, patient_id, score)
                for territorial_id, (patient_id, score) in best.items()
            ),
            key=lambda item: (_GRADE_ORDER[item[0]], -item[3].probability, item[1]),
        )
        warnings: list[str] = []
        if only_certain:
            graded = [item for item in graded if item[0] == CERTAIN]
            if len(graded) > 1:
                # R4 $match: with onlyCertainMatches, several potential matches → none
                warnings.append(
                    f"{len(graded)} territorial identities match with certainty: none is"
                    " returned (onlyCertainMatches); they are waiting for the"
                    " identitovigilance cell"
                )
                graded = []
        limit = DEFAULT_MATCH_COUNT if count is None else min(count, MAX_MATCH_COUNT)
        repo = self.fhir.repository(ctx)
        matches: list[Match] = []
        for grade, territorial_id, patient_id, score in graded:
            if len(matches) >= limit:
                break
            stored = await _stored(repo, territorial_id)
            if stored is not None:
                matches.append(
                    Match(territorial_id, stored, grade, score.probability, patient_id, score.flags)
                )
        return MatchResult(matches, warnings)


def _rank(score: PairScore) -> tuple[bool, float]:
    return score.decision == LINK, score.probability


async def _known_domain(conn: psycopg.AsyncConnection, system: str, fhir_base: str | None) -> bool:
    """A patient identifier domain of the territory: the territorial identifier, the INS,
    the hub's Logical ids, a configured site's IPP system or one the index has filed."""
    configured = configuration().ipp_systems or frozenset()
    if system in (TERRITORIAL_SYSTEM, fhir_base) or system in INS_SYSTEMS or system in configured:
        return True
    return await store.knows_ipp_system(conn, system)


def _not_found(detail: str) -> NotFound:
    # ITI-83 2:3.83.4.2.2.2 Source Identifier not found: 404, not-found
    message = f"sourceIdentifier Patient Identifier not found{detail}"
    return NotFound(message, issues=[Issue(message, code="not-found")])


async def _resolve(
    conn: psycopg.AsyncConnection, system: str, value: str, *, logical: bool
) -> tuple[str, str | None]:
    """The territorial identity of a source identifier, and the Patient that identifier
    designates (None for an INS: the person, not one record)."""
    if logical:  # Patient/{id}: a source or a territorial identity
        patient_id = value.removeprefix("Patient/")
        row = await store.get_source(conn, patient_id) if patient_id != value else None
        if row is None and await store.territorial_active(conn, patient_id):
            return patient_id, patient_id
    elif system == TERRITORIAL_SYSTEM:
        state = await store.territorial_active(conn, value)
        if state is False:
            # ITI-83 2:3.83.4.2.2.5 Post Merge/Delete: 404 by our policy
            raise _not_found(": this territorial identity was retired (its sources moved)")
        if state is None:
            raise _not_found("")
        return value, value
    elif system in INS_SYSTEMS:
        territorials = sorted({s.territorial_id for s in await store.sources_with_ins(conn, value)})
        if len(territorials) > 1:
            raise Conflict(
                "this INS is carried by several territorial identities (an INS collision"
                " waiting for the identitovigilance cell): no cross-reference is given"
            )
        if not territorials:
            raise _not_found("")
        return territorials[0], None
    else:
        row = await store.find_by_ipp(conn, system, value)
    if row is None:
        raise _not_found("")
    if not row.active:  # ITI-83 2:3.83.4.2.2.5 Post Merge/Delete: 404 by our policy
        raise _not_found(": this source identity was merged into another one")
    return row.territorial_id, row.patient_id


async def _stored(repo: Repository, patient_id: str) -> StoredResource | None:
    """A Patient as the caller may read it; None when deleted, hidden or gone."""
    try:
        stored = await repo.read("Patient", patient_id)
    except (NotFound, Gone, Forbidden):
        return None
    return stored if stored.body is not None else None


async def _readable(repo: Repository, patient_id: str) -> dict[str, Any] | None:
    stored = await _stored(repo, patient_id)
    return orjson.loads(stored.body) if stored is not None and stored.body else None


def _identifiers(patient: dict[str, Any]) -> list[dict[str, Any]]:
    """The Patient's identifiers that have a system and a value: system, value, type, use."""
    return [
        {k: identifier[k] for k in _IDENTIFIER_KEYS if k in identifier}
        for identifier in patient.get("identifier") or []
        if isinstance(identifier, dict)
        and isinstance(identifier.get("system"), str)
        and isinstance(identifier.get("value"), str)
    ]
