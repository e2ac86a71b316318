"""Links a person decides, in the caller's transaction (the review service's, or an HL7
message's): a source identity placed into a territorial identity as a *verified* link
(the machine never moves it again), or a source leaving its territorial identity for a
new one of its own, never to be linked back by the machine.

- ``place``: the review queue's "link", and IHE PAM FR A24 (link patient information);
- ``leave``: the review queue's "unlink", and A37 (unlink patient information).

Each writes the golden records of both territorial identities, the source's ``refer``
link, and an ``mpi_event`` (who, why) for the history.
"""

from __future__ import annotations

import dataclasses

import orjson

from maillage.errors import NotFound
from maillage.fhir.repository import Repository
from maillage.identity.golden import source_link
from maillage.mpi import candidates as candidate_store
from maillage.mpi import store
from maillage.mpi.candidates import CandidateRow
from maillage.mpi.index import PatientIndex, internal_writes, new_territorial_id, repo_connection


async def place(
    index: PatientIndex,
    repo: Repository,
    patient_id: str,
    territorial_id: str,
    candidate: CandidateRow | None,
    reason: str,
    action: str = "link-verified",
    who: str | None = None,
) -> None:
    """Move a source to a territorial identity as a verified link, and rewrite the
    golden records and the source's ``refer`` link."""
    conn = repo_connection(repo)
    row = await store.get_source(conn, patient_id)
    if row is None or not row.active:
        raise NotFound(f"Patient/{patient_id} is not an active source identity")
    await store.lock_keys(conn, row.blocking)
    previous = row.territorial_id
    await store.ensure_territorial(conn, territorial_id)
    await store.upsert_source(
        conn,
        dataclasses.replace(
            row,
            territorial_id=territorial_id,
            link_kind="verified",
            score=candidate.score if candidate else None,
            matched_patient_id=candidate.matched_patient_id if candidate else None,
            explanation=candidate.explanation if candidate else None,
        ),
    )
    source = await repo.read("Patient", patient_id)
    assert source.body is not None
    with internal_writes():
        await repo.update(
            "Patient", patient_id, source_link(orjson.loads(source.body), territorial_id)
        )
    await store.add_event(
        conn,
        who=who or repo.ctx.who,
        action=action,
        patient_id=patient_id,
        territorial_id=territorial_id,
        reason=reason,
        detail={"from": previous, **({"candidate": candidate.id} if candidate else {})},
    )
    await index.refresh_golden(repo, territorial_id)
    if previous != territorial_id:
        await index.refresh_golden(repo, previous, successor=territorial_id)


async def link_of(repo: Repository, patient_id: str) -> tuple[str, str]:
    """The territorial identity of an active source identity, and the link's kind (auto,
    verified, candidate)."""
    row = await store.get_source(repo_connection(repo), patient_id)
    if row is None or not row.active:
        raise NotFound(f"Patient/{patient_id} is not an active source identity")
    return row.territorial_id, row.link_kind


async def leave(
    index: PatientIndex, repo: Repository, patient_id: str, reason: str, who: str | None = None
) -> str:
    """The source leaves its territorial identity for a new one (verified), never to be
    linked back to the one it left; returns the new territorial identity. ``who``: the
    decision's author (default: the repository's user)."""
    conn = repo_connection(repo)
    author = who or repo.ctx.who
    left, _ = await link_of(repo, patient_id)
    await candidate_store.mark_never(conn, patient_id, left, patient_id, author, reason)
    territorial_id = new_territorial_id()
    await place(index, repo, patient_id, territorial_id, None, reason, "unlinked", author)
    return territorial_id
