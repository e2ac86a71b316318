"""Online matching: every write of a source identity (a Patient) is matched and placed in
its territorial identity in the same transaction as the write.

``PatientIndex.before_write`` is the FHIR store's write hook for Patient (the repository
calls it on create, update, patch, conditional writes, Bundle entries and delete, inside
the write's transaction, before the row is stamped and stored). It

1. refuses a write of a territorial identity (the golden records are the index's own);
2. reads the identity's traits, takes the locks of its blocking keys, scores the filed
   identities that share a key (``identity.scoring``), and places it
   (``identity.linking.place``: join, stay, or a new territorial identity; the pairs to
   review go to the queue);
3. rewrites the golden record of each territorial identity it touched;
4. returns the Patient with its ``refer`` link to its territorial identity.

A failure anywhere rolls the whole write back: nothing half-linked is left.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Iterator
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

import psycopg

from maillage.errors import IdentityRejected, Issue
from maillage.fhir.repository import Repository
from maillage.identity.blocking import blocking_keys
from maillage.identity.checks import is_ipp, reliability_status
from maillage.identity.golden import (
    Golden,
    build_golden,
    is_territorial,
    retired_golden,
    source_link,
)
from maillage.identity.ins import INS_SYSTEMS
from maillage.identity.linking import Placement, Scored, place
from maillage.identity.model import Model
from maillage.identity.normalize import prepare
from maillage.identity.patient_traits import patient_traits
from maillage.identity.scoring import Scorer
from maillage.mpi import candidates as candidate_store
from maillage.mpi import store
from maillage.mpi.store import SourceRow
from maillage.security import RequestContext

logger = logging.getLogger(__name__)

# Set while the index writes its own Patients (golden records, merges): those writes go
# through the store like any other, and must not be matched or refused.
_INTERNAL: ContextVar[bool] = ContextVar("maillage_mpi_internal", default=False)

INDEX_CONTEXT = RequestContext.system("patient-index")
MAX_CANDIDATES = 2000  # a blocking key shared by more says nothing (a placeholder date)


@contextlib.contextmanager
def internal_writes() -> Iterator[None]:
    token = _INTERNAL.set(True)
    try:
        yield
    finally:
        _INTERNAL.reset(token)


class PatientIndex:
    """The territorial patient index (one per process)."""

    # Filing a Patient may rewrite another one (its golden record): see fhir/write_hooks.py.
    independent = False

    def __init__(self, model: Model) -> None:
        self.model = model
        self.scorer = Scorer(model)

    # -- the FHIR store's write hook ---------------------------------------------------
    async def before_write(
        self,
        repo: Repository,
        conn: psycopg.AsyncConnection,
        resource_id: str,
        resource: dict[str, Any] | None,
    ) -> dict[str, Any] | None:
        if _INTERNAL.get():
            return resource
        state = await store.write_state(conn, resource_id)
        if (resource is not None and is_territorial(resource)) or state.is_territorial:
            raise IdentityRejected(
                f"Patient/{resource_id} is a territorial identity: it is maintained by the "
                "patient index from its source identities; write the site's Patient instead",
                issues=[
                    Issue(
                        "territorial identities are written by the patient index only",
                        "Patient",
                        code="business-rule",
                    )
                ],
            )
        if resource is None:
            await self.remove(repo, conn, resource_id)
            return None
        territorial_id = await self.file(repo, conn, resource_id, resource, state)
        return source_link(resource, territorial_id)

    # -- filing a source identity ------------------------------------------------------
    async def file(
        self,
        repo: Repository,
        conn: psycopg.AsyncConnection,
        patient_id: str,
        patient: dict[str, Any],
        state: store.WriteState | None = None,
    ) -> str | None:
        """Match and place one source identity; returns its territorial identity (None
        for a merged, inactive source, which stays out of matching)."""
        prepared = prepare(patient_traits(patient))
        keys = blocking_keys(prepared)
        if state is None:
            state = await store.write_state(conn, patient_id)
        existing = state.source
        # The reads after the key locks run once they are held (one round trip for all).
        async with conn.pipeline():
            await store.lock_keys(conn, [*keys, *(existing.blocking if existing else [])])
            if existing is not None:
                existing = await store.get_source(conn, patient_id)  # as of the lock
            found = await store.candidates(conn, keys, patient_id, MAX_CANDIDATES)
        if existing is not None and not existing.active:
            row = source_row(patient_id, patient, prepared, keys, existing)
            await store.upsert_source(conn, row)
            return None
        scored = [
            Scored(other_id, other_territorial, self.scorer.score(prepared, traits))
            for other_id, other_territorial, traits in found
        ]
        current = existing.territorial_id if existing else None
        alone = current is None or (await store.members(conn, current)) == [patient_id]
        placement = place(
            scored,
            current=current,
            verified=existing is not None and existing.link_kind == "verified",
            alone=alone,
            never=state.never,
        )
        territorial_id = placement.territorial_id or new_territorial_id()
        new = placement.territorial_id is None
        # The golden record is built from the other sources as they are (this write's
        # own rows do not change them) before the index's writes, which then depend on
        # nothing they return: one round trip for them all, its state included.
        golden = await self._golden(conn, territorial_id, (patient_id, patient), new=new)
        async with conn.pipeline():
            if new:
                await store.ensure_territorial(conn, territorial_id)
            row = source_row(
                patient_id, patient, prepared, keys, existing, placement, territorial_id
            )
            await store.upsert_source(conn, row)
            if placement.review or existing is not None:  # a new identity: nothing to close
                await candidate_store.file_review(conn, patient_id, placement.review)
            await self._record(conn, repo, patient_id, current, territorial_id, placement)
            await store.set_territorial_state(
                conn, territorial_id, active=True, trait_sources=golden.trait_sources
            )
        await self._write_golden(repo, territorial_id, golden.body, new=new)
        if current is not None and current != territorial_id:
            await self.refresh_golden(repo, current, successor=territorial_id)
        return territorial_id

    async def remove(
        self, repo: Repository, conn: psycopg.AsyncConnection, patient_id: str
    ) -> None:
        """A deleted source identity leaves the index (its decisions stay as history)."""
        existing = await store.get_source(conn, patient_id)
        if existing is None:
            return
        await store.lock_keys(conn, existing.blocking)
        await store.delete_source(conn, patient_id)
        await candidate_store.close_for(conn, patient_id)
        await store.add_event(
            conn,
            who=repo.ctx.who,
            action="removed",
            patient_id=patient_id,
            territorial_id=existing.territorial_id,
        )
        await self.refresh_golden(repo, existing.territorial_id)

    # -- golden records ---------------------------------------------------------------
    async def refresh_golden(
        self,
        repo: Repository,
        territorial_id: str,
        *,
        successor: str | None = None,
    ) -> None:
        """Rewrite a territorial identity's golden record from its active sources (none
        left: retired, pointing to ``successor``)."""
        conn = repo_connection(repo)
        bodies = await store.member_patients(conn, territorial_id)
        if bodies:
            golden = build_golden(territorial_id, bodies)
            await self._write_golden(repo, territorial_id, golden.body)
            await store.set_territorial_state(
                conn, territorial_id, active=True, trait_sources=golden.trait_sources
            )
        else:
            retired = retired_golden(territorial_id, successor)
            await self._write_golden(repo, territorial_id, retired)
            await store.set_territorial_state(conn, territorial_id, active=False, trait_sources={})

    async def _golden(
        self,
        conn: psycopg.AsyncConnection,
        territorial_id: str,
        incoming: tuple[str, dict[str, Any]],
        *,
        new: bool,
    ) -> Golden:
        """The golden record with ``incoming`` (a source being written, not stored yet)
        among the sources (its only one when ``new``: a territorial identity this write
        creates)."""
        # not stamped yet: it is the most recent version of its source
        meta = {**(incoming[1].get("meta") or {}), "lastUpdated": now_iso()}
        bodies = [{**incoming[1], "id": incoming[0], "meta": meta}]
        if not new:
            bodies.extend(await store.member_patients(conn, territorial_id, exclude=incoming[0]))
        return build_golden(territorial_id, bodies)

    async def _write_golden(
        self, repo: Repository, territorial_id: str, body: dict[str, Any], *, new: bool = False
    ) -> None:
        # The index reads and writes with its own context: the golden record gathers
        # every site's source, whatever the caller may see.
        repo = Repository(repo.store, INDEX_CONTEXT, repo_connection(repo))
        with internal_writes():
            if new:
                # a territorial identity created by this write: nothing to lock
                await repo.create(body, resource_id=territorial_id)
            else:
                await repo.update("Patient", territorial_id, body)

    async def _record(
        self,
        conn: psycopg.AsyncConnection,
        repo: Repository,
        patient_id: str,
        previous: str | None,
        territorial_id: str,
        placement: Placement,
    ) -> None:
        if previous == territorial_id:
            return
        matched = placement.matched
        action = "linked" if matched is not None else "registered"
        if previous is not None:
            action = "moved"
        detail: dict[str, Any] = {"from": previous} if previous else {}
        if matched is not None:
            detail["matched"] = matched.patient_id
            detail["score"] = matched.score.as_dict()
        await store.add_event(
            conn,
            who=repo.ctx.who,
            action=action,
            patient_id=patient_id,
            territorial_id=territorial_id,
            detail=detail,
        )
        logger.info(
            "patient index: Patient/%s %s to territorial %s", patient_id, action, territorial_id
        )


def repo_connection(repo: Repository) -> psycopg.AsyncConnection:
    """The connection of a repository bound to a transaction (the hook's)."""
    conn = repo.bound_connection
    if conn is None:
        raise RuntimeError("the patient index runs inside a write's transaction")
    return conn


def now_iso() -> str:
    return datetime.now(UTC).isoformat()


def new_territorial_id() -> str:
    return str(uuid.uuid4())


def source_row(
    patient_id: str,
    patient: dict[str, Any],
    prepared: dict[str, Any],
    keys: list[str],
    existing: SourceRow | None,
    placement: Placement | None = None,
    territorial_id: str | None = None,
) -> SourceRow:
    ipp_system, ipp = _ipp(patient)
    verified = existing is not None and existing.link_kind == "verified"
    matched = placement.matched if placement is not None else None
    keep = existing if existing is not None and (verified or placement is None) else None
    return SourceRow(
        patient_id=patient_id,
        territorial_id=territorial_id or (existing.territorial_id if existing else patient_id),
        ipp_system=ipp_system,
        ipp=ipp,
        traits=prepared,
        blocking=keys,
        reliability=reliability_status(patient),
        link_kind="verified" if verified else "auto",
        score=keep.score if keep else (matched.score.match_weight if matched else None),
        matched_patient_id=keep.matched_patient_id
        if keep
        else (matched.patient_id if matched else None),
        explanation=keep.explanation if keep else (matched.score.as_dict() if matched else None),
        active=existing.active if existing is not None else True,
    )


def _ipp(patient: dict[str, Any]) -> tuple[str | None, str | None]:
    """The identity's IPP: the first identifier typed PI (else the first one that is not
    an INS)."""
    identifiers = [i for i in patient.get("identifier") or [] if isinstance(i, dict)]
    typed = [i for i in identifiers if is_ipp(i)]
    plain = [i for i in identifiers if i.get("system") not in INS_SYSTEMS]
    for identifier in typed or plain:
        system, value = identifier.get("system"), identifier.get("value")
        if isinstance(system, str) and isinstance(value, str):
            return system, value
    return None, None
