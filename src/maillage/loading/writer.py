"""The database half of a load: COPY a prepared chunk into a temporary staging table,
merge it into ``resource`` and ``resource_version``, then COPY the index rows of the
resources written (new or changed) straight into the index tables.

One chunk is one transaction. The merge does what the store's update does for each
resource: an unknown (type, id) is inserted at version 1; a known one whose
``content_hash`` is unchanged is left alone (no new version); a changed (or deleted)
one has its current row moved to ``resource_version``, its index rows replaced and
its version increased, with ``meta.versionId`` set to match.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg

from maillage.loading.prepare import INDEX_COLUMNS, RESOURCE_COLUMNS, PreparedChunk
from maillage.security.care import Grant

_CREATE_STAGING = """
CREATE TEMP TABLE IF NOT EXISTS load_resource (
    seq integer NOT NULL, resource_type text NOT NULL, id text NOT NULL, method text NOT NULL,
    last_updated timestamptz NOT NULL, content jsonb NOT NULL, content_hash bytea NOT NULL
) ON COMMIT DELETE ROWS;
-- What the merge decided for each staged resource: n(ew), c(hanged), u(nchanged).
CREATE TEMP TABLE IF NOT EXISTS load_match (
    seq integer NOT NULL, rid bigint NOT NULL, resource_type text NOT NULL, action "char" NOT NULL
) ON COMMIT DELETE ROWS;
"""

# Existing rows are locked so that a concurrent API write cannot interleave.
_MATCH_EXISTING = """
INSERT INTO load_match (seq, rid, resource_type, action)
SELECT s.seq, r.rid, r.resource_type,
       CASE WHEN NOT r.deleted AND r.content_hash = s.content_hash THEN 'u' ELSE 'c' END
FROM load_resource s JOIN resource r ON r.resource_type = s.resource_type AND r.id = s.id
ORDER BY r.rid
FOR UPDATE OF r
"""

_ARCHIVE_CHANGED = """
INSERT INTO resource_version
    (rid, resource_type, id, version_id, last_updated, deleted, method, content)
SELECT r.rid, r.resource_type, r.id, r.version_id, r.last_updated, r.deleted, r.method, r.content
FROM resource r JOIN load_match m ON m.rid = r.rid
WHERE m.action = 'c'
"""

_UPDATE_CHANGED = """
UPDATE resource r
SET version_id = r.version_id + 1,
    last_updated = s.last_updated,
    deleted = false,
    method = s.method,
    content = jsonb_set(s.content, '{meta,versionId}', to_jsonb((r.version_id + 1)::text)),
    content_hash = s.content_hash
FROM load_match m JOIN load_resource s ON s.seq = m.seq
WHERE r.rid = m.rid AND m.action = 'c'
"""

_INSERT_NEW = """
WITH inserted AS (
    INSERT INTO resource (resource_type, id, version_id, last_updated, deleted, method,
                          content, content_hash)
    SELECT s.resource_type, s.id, 1, s.last_updated, false, s.method, s.content, s.content_hash
    FROM load_resource s
    WHERE NOT EXISTS (SELECT 1 FROM load_match m WHERE m.seq = s.seq)
    ORDER BY s.seq
    ON CONFLICT (resource_type, id) DO NOTHING
    RETURNING rid, resource_type, id
)
INSERT INTO load_match (seq, rid, resource_type, action)
SELECT s.seq, i.rid, i.resource_type, 'n'
FROM inserted i JOIN load_resource s ON s.resource_type = i.resource_type AND s.id = i.id
"""

_DELETE_INDEX = [
    f"DELETE FROM {table} x USING load_match m WHERE x.rid = m.rid AND m.action = 'c'"
    for table in INDEX_COLUMNS
]
_DELETE_PARAMS_INDEX = [
    f"DELETE FROM {table} x USING load_match m WHERE x.rid = m.rid AND m.action = 'c'"
    " AND split_part(x.param, ':', 1) = ANY(%s)"
    for table in INDEX_COLUMNS
]
_WRITTEN = "SELECT seq, rid, action = 'n' FROM load_match WHERE action <> 'u'"


@dataclass(frozen=True)
class ChunkResult:
    created: int
    updated: int
    unchanged: int
    # seq of staged resources that were neither matched nor inserted (created by
    # another writer between our match and insert).
    missing: list[int]
    # (seq, rid, created) of each resource written: created, or a new version of a stored
    # one
    written: list[tuple[int, int, bool]] = field(default_factory=list)


def create_staging(conn: psycopg.Connection) -> None:
    """Create the staging tables of this session. Chunks then commit without waiting for
    their WAL to reach the disk (``synchronous_commit = off``); ``flush`` waits for all of
    it at the end, so a load reported as done is durable."""
    with conn.transaction():
        conn.execute(_CREATE_STAGING)
    conn.execute("SET synchronous_commit = off")
    conn.commit()


def flush(conn: psycopg.Connection) -> None:
    """Wait until every chunk committed so far is on disk: a synchronous commit of a
    transaction with an id flushes the WAL up to its own commit record."""
    with conn.transaction():
        conn.execute("SET LOCAL synchronous_commit = on")
        conn.execute("SELECT txid_current()")


def clear_staging(conn: psycopg.Connection) -> None:
    """Empty the staging tables inside the current transaction (they empty on commit)."""
    conn.execute("TRUNCATE load_resource, load_match")


def write_chunk(conn: psycopg.Connection, chunk: PreparedChunk) -> ChunkResult:
    """COPY and merge one prepared chunk; the caller holds the transaction.

    When none of the chunk's (type, id) is stored yet (a first load), the rows go
    straight into ``resource`` with rids taken from its identity sequence: no staging,
    no merge. Otherwise, or if another writer creates one of them meanwhile, the chunk
    goes through the staging table and the merge.
    """
    if chunk.count == 0:
        return ChunkResult(0, 0, 0, [])
    with conn.cursor() as cursor:
        write_care(cursor, chunk.care, chunk.objections)
        if chunk.reindexed is not None:
            return _merge(cursor, chunk)  # new versions of stored resources only
        cursor.execute(_ANY_STORED, (chunk.types, chunk.ids))
        if cursor.fetchone() is None:
            try:
                with conn.transaction():
                    return _insert_all(cursor, chunk)
            except psycopg.errors.UniqueViolation:
                pass  # created meanwhile by another writer: merge instead
        return _merge(cursor, chunk)


def write_care(
    cursor: psycopg.Cursor[Any],
    care: Sequence[tuple[str, str, Sequence[Grant]]],
    objections: Sequence[tuple[str, str | None]],
) -> None:
    """The care relationships (type, id, grants) and objections (consent id, patient id)
    of these resources, replacing what earlier versions recorded (as the store's write
    hooks do)."""
    if care:
        cursor.execute(
            "DELETE FROM care_access c USING unnest(%s::text[], %s::text[]) AS k(t, i)"
            " WHERE c.source_type = k.t AND c.source_id = k.i",
            ([t for t, _, _ in care], [i for _, i, _ in care]),
        )
        rows = [
            (g.patient_id, g.principal, g.until, kind, source_id)
            for kind, source_id, grants in care
            for g in grants
        ]
        if rows:
            with cursor.copy(
                "COPY care_access (patient_id, principal, until, source_type, source_id) FROM STDIN"
            ) as copy:
                for row in rows:
                    copy.write_row(row)
    if objections:
        cursor.execute(
            "DELETE FROM care_objection WHERE consent_id = ANY(%s)",
            ([consent for consent, _ in objections],),
        )
        for consent, patient in objections:
            if patient is not None:
                cursor.execute(
                    "INSERT INTO care_objection (consent_id, patient_id) VALUES (%s, %s)",
                    (consent, patient),
                )


_ANY_STORED = """
SELECT 1 FROM unnest(%s::text[], %s::text[]) AS k(resource_type, id)
JOIN resource r ON r.resource_type = k.resource_type AND r.id = k.id
LIMIT 1
"""
_NEXT_RIDS = "SELECT nextval(pg_get_serial_sequence('resource', 'rid')) FROM generate_series(1, %s)"


def _insert_all(cursor: psycopg.Cursor[Any], chunk: PreparedChunk) -> ChunkResult:
    cursor.execute(_NEXT_RIDS, (chunk.count,))
    rids = [str(row[0]).encode() for row in cursor.fetchall()]
    data = b"".join(rid + b"\t1\tf" + row for rid, row in zip(rids, chunk.resources, strict=True))
    statement = f"COPY resource (rid, version_id, deleted, {RESOURCE_COLUMNS}) FROM STDIN"
    with cursor.copy(statement) as copy:
        copy.write(data)
    _copy_index(cursor, chunk, dict(enumerate(rids)))
    written = [(seq, int(rid), True) for seq, rid in enumerate(rids)]
    return ChunkResult(chunk.count, 0, 0, [], written)


def _merge(cursor: psycopg.Cursor[Any], chunk: PreparedChunk) -> ChunkResult:
    data = b"".join(b"%d" % seq + row for seq, row in enumerate(chunk.resources))
    with cursor.copy(f"COPY load_resource (seq, {RESOURCE_COLUMNS}) FROM STDIN") as copy:
        copy.write(data)
    # Temporary tables have no statistics until analysed: without them the planner
    # hashes the whole resource (or index) table for each chunk instead of probing its
    # unique index, which makes a load into a big database quadratic.
    cursor.execute("ANALYZE load_resource")
    cursor.execute(_MATCH_EXISTING)
    if chunk.reindexed is not None and cursor.rowcount != chunk.count:
        raise ValueError("a changed resource is not stored: it cannot be written as a change")
    if cursor.rowcount:
        cursor.execute("ANALYZE load_match")
        cursor.execute(_ARCHIVE_CHANGED)
        if cursor.rowcount:
            if chunk.reindexed is None:
                for statement in _DELETE_INDEX:
                    cursor.execute(statement)
            else:  # the rows of the changed parameters (and their derived keys) only
                for statement in _DELETE_PARAMS_INDEX:
                    cursor.execute(statement, (list(chunk.reindexed),))
            cursor.execute(_UPDATE_CHANGED)
    cursor.execute(_INSERT_NEW)
    cursor.execute(_WRITTEN)
    written = cursor.fetchall()
    _copy_index(cursor, chunk, {int(seq): str(rid).encode() for seq, rid, _ in written})
    cursor.execute("SELECT action::text, count(*) FROM load_match GROUP BY action")
    counts = {str(action): int(number) for action, number in cursor.fetchall()}
    missing: list[int] = []
    if sum(counts.values()) != chunk.count:
        cursor.execute(
            "SELECT seq FROM load_resource s"
            " WHERE NOT EXISTS (SELECT 1 FROM load_match m WHERE m.seq = s.seq) ORDER BY seq"
        )
        missing = [int(row[0]) for row in cursor.fetchall()]
    return ChunkResult(
        counts.get("n", 0),
        counts.get("c", 0),
        counts.get("u", 0),
        missing,
        [(int(seq), int(rid), bool(created)) for seq, rid, created in written],
    )


def _copy_index(cursor: psycopg.Cursor[Any], chunk: PreparedChunk, rids: dict[int, bytes]) -> None:
    for table, blocks in chunk.index.items():
        data = _with_rids(blocks, rids)
        if data:
            with cursor.copy(f"COPY {table} ({INDEX_COLUMNS[table]}) FROM STDIN") as copy:
                copy.write(data)


def _with_rids(blocks: list[bytes], rids: dict[int, bytes]) -> bytes:
    """The index rows of the written resources, each line prefixed with its rid. COPY text
    escapes tabs and newlines inside values, so a raw newline + tab is a row boundary."""
    parts = []
    for seq, block in enumerate(blocks):
        if block:
            rid = rids.get(seq)
            if rid is not None:
                parts.append(rid + block.replace(b"\n\t", b"\n" + rid + b"\t"))
    return b"".join(parts)
