"""Merge and unmerge of two source identities (a duplicate: one person, two records).

A merge (the identitovigilance cell's decision, or an HL7 A40) keeps the survivor: every
resource that pointed at the merged identity is re-pointed to the survivor (a new version
each, so history shows it), the merged Patient becomes inactive with a ``replaced-by``
link (the survivor gets ``replaces``), and the merged identity leaves the matching. What
moved — which resource, which reference inside it — is recorded in ``mpi_merge``.

An unmerge undoes exactly that: each recorded reference that still points at the survivor
points at the merged identity again (resources written after the merge, or changed by
someone since at that place, are left alone), the merged Patient gets back the content
it had before the merge, and its index row (territorial identity, link kind, score) is
restored. Both run in the caller's transaction: all or nothing.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import orjson

from maillage.errors import Conflict, InvalidRequest, NotFound
from maillage.fhir.repository import Repository
from maillage.mpi import candidates as candidate_store
from maillage.mpi import merge_store, store
from maillage.mpi.index import PatientIndex, internal_writes, repo_connection
from maillage.mpi.references import repoint, restore
from maillage.mpi.store import SourceRow


async def merge(
    index: PatientIndex,
    repo: Repository,
    *,
    survivor_id: str,
    merged_id: str,
    who: str,
    reason: str,
) -> int:
    """Merge ``merged_id`` into ``survivor_id``; returns the merge's id."""
    conn = repo_connection(repo)
    if survivor_id == merged_id:
        raise InvalidRequest("a source identity cannot be merged into itself")
    survivor_row = await _source(conn, survivor_id)
    merged_row = await _source(conn, merged_id)
    if not merged_row.active:
        raise Conflict(f"Patient/{merged_id} is already merged: unmerge it first")
    if not survivor_row.active:
        raise Conflict(f"Patient/{survivor_id} is merged into another identity: it cannot survive")
    await store.lock_keys(conn, [*survivor_row.blocking, *merged_row.blocking])
    survivor = await repo.read("Patient", survivor_id)
    merged = await repo.read("Patient", merged_id)
    moved = await _repoint_all(repo, f"Patient/{merged_id}", f"Patient/{survivor_id}")
    with internal_writes():
        await repo.update("Patient", merged_id, _retired(_body(merged.body), survivor_id))
        await repo.update("Patient", survivor_id, _with_link(_body(survivor.body), merged_id))
    await store.upsert_source(conn, dataclasses.replace(merged_row, active=False))
    merge_id = await merge_store.insert(
        conn,
        survivor_id=survivor_id,
        merged_id=merged_id,
        who=who,
        reason=reason,
        moved=moved,
        before={"source": _row_json(merged_row), "merged_version": merged.version_id},
    )
    await candidate_store.close_for(conn, merged_id)
    await store.add_event(
        conn,
        who=who,
        action="merged",
        patient_id=merged_id,
        territorial_id=merged_row.territorial_id,
        reason=reason,
        detail={"survivor": survivor_id, "merge": merge_id, "moved": len(moved)},
    )
    await index.refresh_golden(
        repo, merged_row.territorial_id, successor=survivor_row.territorial_id
    )
    if survivor_row.territorial_id != merged_row.territorial_id:
        await index.refresh_golden(repo, survivor_row.territorial_id)
    return merge_id


async def unmerge(
    index: PatientIndex, repo: Repository, *, merge_id: int, who: str, reason: str
) -> None:
    conn = repo_connection(repo)
    row = await merge_store.get(conn, merge_id)
    if row is None:
        raise NotFound(f"merge {merge_id} is not known")
    if row.unmerged_at is not None:
        raise Conflict(f"merge {merge_id} was already undone ({row.unmerged_at:%Y-%m-%d %H:%M})")
    survivor_ref, merged_ref = f"Patient/{row.survivor_id}", f"Patient/{row.merged_id}"
    for item in row.moved:
        stored = await repo.read(item["type"], item["id"])
        body = _body(stored.body)
        restored = restore(body, item["paths"], survivor_ref, merged_ref)
        if restored != body:
            await repo.update(item["type"], item["id"], restored)
    previous = _row_from_json(row.before["source"])
    before = await repo.vread("Patient", row.merged_id, str(row.before["merged_version"]))
    survivor = await repo.read("Patient", row.survivor_id)
    with internal_writes():
        await repo.update("Patient", row.merged_id, _body(before.body))
        await repo.update(
            "Patient", row.survivor_id, _without_link(_body(survivor.body), row.merged_id)
        )
    await store.ensure_territorial(conn, previous.territorial_id)
    await store.upsert_source(conn, previous)
    await merge_store.mark_unmerged(conn, merge_id, who, reason)
    await store.add_event(
        conn,
        who=who,
        action="unmerged",
        patient_id=row.merged_id,
        territorial_id=previous.territorial_id,
        reason=reason,
        detail={"survivor": row.survivor_id, "merge": merge_id},
    )
    await index.refresh_golden(repo, previous.territorial_id)
    current = await store.get_source(conn, row.survivor_id)
    if current is not None and current.territorial_id != previous.territorial_id:
        await index.refresh_golden(repo, current.territorial_id)


async def _source(conn: Any, patient_id: str) -> SourceRow:
    row = await store.get_source(conn, patient_id)
    if row is None:
        raise NotFound(f"Patient/{patient_id} is not a source identity of the patient index")
    return row


async def _repoint_all(repo: Repository, old: str, new: str) -> list[dict[str, Any]]:
    moved: list[dict[str, Any]] = []
    patient_id = old.removeprefix("Patient/")
    for resource_type, resource_id in await merge_store.referring(
        repo_connection(repo), patient_id
    ):
        stored = await repo.read(resource_type, resource_id)
        body, paths = repoint(_body(stored.body), old, new)
        if paths:
            await repo.update(resource_type, resource_id, body)
            moved.append({"type": resource_type, "id": resource_id, "paths": paths})
    return moved


def _body(text: str | None) -> dict[str, Any]:
    if text is None:
        raise Conflict("the resource was deleted meanwhile")
    return dict(orjson.loads(text))


def _retired(patient: dict[str, Any], survivor_id: str) -> dict[str, Any]:
    links = [link for link in patient.get("link", []) if link.get("type") != "refer"]
    links.append({"other": {"reference": f"Patient/{survivor_id}"}, "type": "replaced-by"})
    return {**patient, "active": False, "link": links}


def _with_link(patient: dict[str, Any], merged_id: str) -> dict[str, Any]:
    links = [*patient.get("link", [])]
    links.append({"other": {"reference": f"Patient/{merged_id}"}, "type": "replaces"})
    return {**patient, "link": links}


def _without_link(patient: dict[str, Any], merged_id: str) -> dict[str, Any]:
    target = f"Patient/{merged_id}"
    links = [
        link
        for link in patient.get("link", [])
        if not (link.get("type") == "replaces" and link.get("other", {}).get("reference") == target)
    ]
    result = {key: value for key, value in patient.items() if key != "link"}
    if links:
        result["link"] = links
    return result


def _row_json(row: SourceRow) -> dict[str, Any]:
    data = dataclasses.asdict(row)
    data.pop("updated_at", None)
    return data


def _row_from_json(data: dict[str, Any]) -> SourceRow:
    return SourceRow(**{**data, "active": True})
