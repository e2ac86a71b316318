"""The steps the write paths share (the repository's one by one, ``batch_writes``' by
group): the current row locked, a new version replacing it, and the write's audit events
staged in its transaction (``audit/journal.py``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson
import psycopg
from psycopg import sql

from maillage.audit.events import Interaction
from maillage.fhir import sql_writes
from maillage.fhir.indexing.extractor import extract_index
from maillage.fhir.model import StoredResource, WriteOutcome
from maillage.fhir.stamping import content_hash, now_instant, stamp_meta

if TYPE_CHECKING:
    from maillage.fhir.repository import Repository

Written = tuple[str, dict[str, Any] | None]


@dataclass(frozen=True)
class Current:
    """The current row of a resource, as a write sees it (locked)."""

    rid: int
    version_id: int
    deleted: bool
    content_hash: bytes | None
    visible: bool = True  # whether the caller's access rules let them see it


async def lock_current(
    conn: psycopg.AsyncConnection, visible: sql.Composable, resource_type: str, resource_id: str
) -> Current | None:
    """The current row, locked; ``visible`` is the policy's row filter on alias ``r``
    (writes apply the same filter as reads)."""
    query = sql.SQL(
        "SELECT r.rid, r.version_id, r.deleted, r.content_hash, ({visible}) FROM resource r"
        " WHERE r.resource_type = %s AND r.id = %s FOR UPDATE"
    ).format(visible=visible)
    cursor = await conn.execute(query, (resource_type, resource_id))
    row = await cursor.fetchone()
    if row is None:
        return None
    return Current(int(row[0]), int(row[1]), bool(row[2]), row[3], bool(row[4]))


async def replace_version(
    conn: psycopg.AsyncConnection,
    *,
    rid: int,
    version_id: int,
    resource: dict[str, Any],
    method: str,
) -> StoredResource:
    """Store ``resource`` as the version after ``version_id`` of the row ``rid``."""
    moment = now_instant()
    new_version = version_id + 1
    stamped = stamp_meta(resource, resource["id"], new_version, moment)
    body = orjson.dumps(stamped).decode()
    await sql_writes.replace_resource(
        conn,
        rid=rid,
        version_id=new_version,
        last_updated=moment,
        method=method,
        body=body,
        content_hash=content_hash(stamped),
        rows=extract_index(stamped),
    )
    return StoredResource(
        stamped["resourceType"], resource["id"], new_version, moment, False, method, body
    )


async def journal(
    repo: Repository,
    conn: psycopg.AsyncConnection,
    interaction: Interaction,
    resource_type: str,
    written: Sequence[Written],
) -> None:
    """The write's audit events, staged in its transaction (no journal: nothing)."""
    if repo.store.journal is not None and written:
        await repo.store.journal.written(conn, repo.ctx, interaction, resource_type, written)


async def journal_outcomes(
    repo: Repository,
    conn: psycopg.AsyncConnection,
    resource_type: str,
    outcomes: Sequence[WriteOutcome],
    interaction: Interaction | None = None,
) -> None:
    """``journal`` for stored outcomes: each a create, else an update (unless told)."""
    if repo.store.journal is None:
        return
    by_interaction: dict[Interaction, list[Written]] = {}
    for outcome in outcomes:
        kind = interaction or (Interaction.CREATE if outcome.created else Interaction.UPDATE)
        stored = outcome.resource
        # a Patient's event is about itself: its body need not be read back
        body = orjson.loads(stored.body) if stored.body and resource_type != "Patient" else None
        by_interaction.setdefault(kind, []).append((stored.id, body))
    for kind, written in by_interaction.items():
        await journal(repo, conn, kind, resource_type, written)
