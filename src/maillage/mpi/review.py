"""The identitovigilance cell's service: the review queue, decisions, merges, history.

Every decision names who took it and why (a reason is required), runs in one
transaction with everything it changes, and is written to ``mpi_event`` (the history).

- ``decide(candidate, "link")``: the source identity joins the candidate's territorial
  identity, as a *verified* link (the machine never moves it again);
- ``decide(candidate, "never")``: the machine will never link that pair;
- ``unlink(patient)``: the source leaves its territorial identity for a new one of its
  own (verified), and is never linked back to the one it left;
- ``merge`` / ``unmerge``: see ``merging.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from maillage.errors import Conflict, Forbidden, Gone, InvalidRequest, NotFound
from maillage.fhir.repository import FhirStore, Repository
from maillage.mpi import candidates as candidate_store
from maillage.mpi import linking, merging, store
from maillage.mpi.candidates import CandidateRow
from maillage.mpi.index import PatientIndex, repo_connection
from maillage.mpi.store import Event
from maillage.security import RequestContext

DECISIONS = ("link", "never")


@dataclass(frozen=True, slots=True)
class CandidateView:
    """A candidate with both identities side by side (their current Patients)."""

    candidate: CandidateRow
    patient: dict[str, Any] | None
    matched: dict[str, Any] | None
    territorial: dict[str, Any] | None


class ReviewService:
    def __init__(self, store: FhirStore, index: PatientIndex) -> None:
        self.store = store
        self.index = index

    # -- reading the queue -------------------------------------------------------------
    async def candidates(
        self,
        ctx: RequestContext,
        *,
        status: str | None = "open",
        flag: str | None = None,
        min_probability: float | None = None,
        patient_id: str | None = None,
        limit: int = 50,
        after: int | None = None,
    ) -> list[CandidateRow]:
        async with self.store.db.connection() as conn:
            return await candidate_store.listing(
                conn,
                status=status,
                flag=flag,
                min_probability=min_probability,
                patient_id=patient_id,
                limit=max(1, min(limit, 500)),
                after=after,
            )

    async def candidate(self, ctx: RequestContext, candidate_id: int) -> CandidateView:
        async with self.store.db.connection() as conn:
            row = await candidate_store.get(conn, candidate_id)
        if row is None:
            raise NotFound(f"candidate {candidate_id} is not known")
        repo = self.store.repository(ctx)
        return CandidateView(
            row,
            await _maybe(repo, row.patient_id),
            await _maybe(repo, row.matched_patient_id),
            await _maybe(repo, row.territorial_id),
        )

    async def territorial(self, ctx: RequestContext, territorial_id: str) -> dict[str, Any]:
        """A territorial identity: its golden record, which source each trait came from,
        and its sources with how each was placed (link kind, score, explanation)."""
        async with self.store.db.connection() as conn:
            if not await store.is_territorial(conn, territorial_id):
                raise NotFound(f"Patient/{territorial_id} is not a territorial identity")
            sources = await store.sources_of(conn, territorial_id)
            trait_sources = await store.trait_sources(conn, territorial_id)
        repo = self.store.repository(ctx)
        return {
            "territorial": await _maybe(repo, territorial_id),
            "trait_sources": trait_sources,
            "sources": [
                {
                    "patient_id": row.patient_id,
                    "ipp_system": row.ipp_system,
                    "ipp": row.ipp,
                    "reliability": row.reliability,
                    "link_kind": row.link_kind,
                    "score": row.score,
                    "matched_patient_id": row.matched_patient_id,
                    "explanation": row.explanation,
                    "patient": await _maybe(repo, row.patient_id),
                }
                for row in sources
            ],
        }

    async def history(
        self,
        ctx: RequestContext,
        *,
        patient_id: str | None = None,
        territorial_id: str | None = None,
        limit: int = 200,
    ) -> list[Event]:
        if not patient_id and not territorial_id:
            raise InvalidRequest("name a patient or a territorial identity")
        async with self.store.db.connection() as conn:
            return await store.events(
                conn, patient_id=patient_id, territorial_id=territorial_id, limit=limit
            )

    # -- decisions ---------------------------------------------------------------------
    async def decide(
        self, ctx: RequestContext, candidate_id: int, decision: str, reason: str
    ) -> CandidateRow:
        if decision not in DECISIONS:
            raise InvalidRequest(f"decision must be one of {', '.join(DECISIONS)}")
        _require_reason(reason)
        async with self.store.repository(ctx).atomic() as repo:
            conn = repo_connection(repo)
            row = await candidate_store.get(conn, candidate_id, lock=True)
            if row is None:
                raise NotFound(f"candidate {candidate_id} is not known")
            if row.status in ("linked", "never"):
                raise Conflict(f"candidate {candidate_id} was already decided ({row.status})")
            if decision == "link":
                await linking.place(
                    self.index, repo, row.patient_id, row.territorial_id, row, reason
                )
                await candidate_store.decide(conn, candidate_id, "linked", ctx.who, reason)
            else:
                await candidate_store.decide(conn, candidate_id, "never", ctx.who, reason)
                await store.add_event(
                    conn,
                    who=ctx.who,
                    action="never-link",
                    patient_id=row.patient_id,
                    territorial_id=row.territorial_id,
                    reason=reason,
                    detail={"candidate": candidate_id},
                )
            decided = await candidate_store.get(conn, candidate_id)
        assert decided is not None
        return decided

    async def link(
        self, ctx: RequestContext, patient_id: str, territorial_id: str, reason: str
    ) -> None:
        """A person links a source to a territorial identity (verified)."""
        _require_reason(reason)
        async with self.store.repository(ctx).atomic() as repo:
            if not await store.is_territorial(repo_connection(repo), territorial_id):
                raise NotFound(f"Patient/{territorial_id} is not a territorial identity")
            await linking.place(self.index, repo, patient_id, territorial_id, None, reason)

    async def unlink(self, ctx: RequestContext, patient_id: str, reason: str) -> str:
        """The source leaves its territorial identity; returns its new one."""
        _require_reason(reason)
        async with self.store.repository(ctx).atomic() as repo:
            return await linking.leave(self.index, repo, patient_id, reason)

    async def merge(
        self, ctx: RequestContext, survivor_id: str, merged_id: str, reason: str
    ) -> int:
        _require_reason(reason)
        async with self.store.repository(ctx).atomic() as repo:
            return await merging.merge(
                self.index,
                repo,
                survivor_id=survivor_id,
                merged_id=merged_id,
                who=ctx.who,
                reason=reason,
            )

    async def unmerge(self, ctx: RequestContext, merge_id: int, reason: str) -> None:
        _require_reason(reason)
        async with self.store.repository(ctx).atomic() as repo:
            await merging.unmerge(self.index, repo, merge_id=merge_id, who=ctx.who, reason=reason)


def _require_reason(reason: str | None) -> None:
    if not reason or not reason.strip():
        raise InvalidRequest("a decision needs a reason: say why (it is kept in the history)")


async def _maybe(repo: Repository, patient_id: str) -> dict[str, Any] | None:
    try:
        stored = await repo.read("Patient", patient_id)
    except (NotFound, Gone, Forbidden):  # a deleted or hidden Patient shows as absent
        return None
    return dict(orjson.loads(stored.body)) if stored.body else None
