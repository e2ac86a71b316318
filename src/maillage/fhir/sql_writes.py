"""The SQL that writes a resource version and its index rows in one round trip."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import psycopg

from maillage.fhir.indexing.values import IndexRows

# Each index table gets its rows from parallel arrays; empty arrays insert nothing,
# so one fixed statement (prepared once) serves every resource.
_INDEX_INSERTS = """
  t AS (INSERT INTO sp_token (rid, resource_type, param, system, code, code_hash, system_code_hash)
        SELECT r.rid, r.resource_type, x.* FROM r,
        unnest(%(tk_param)s::text[], %(tk_system)s::text[], %(tk_code)s::text[],
               %(tk_hash)s::bigint[], %(tk_shash)s::bigint[]) AS x),
  s AS (INSERT INTO sp_string (rid, resource_type, param, value_norm, value_exact)
        SELECT r.rid, r.resource_type, x.* FROM r,
        unnest(%(st_param)s::text[], %(st_norm)s::text[], %(st_exact)s::text[]) AS x),
  d AS (INSERT INTO sp_date (rid, resource_type, param, low, high)
        SELECT r.rid, r.resource_type, x.* FROM r,
        unnest(%(dt_param)s::text[], %(dt_low)s::timestamptz[], %(dt_high)s::timestamptz[]) AS x),
  n AS (INSERT INTO sp_number (rid, resource_type, param, value)
        SELECT r.rid, r.resource_type, x.* FROM r,
        unnest(%(nb_param)s::text[], %(nb_value)s::numeric[]) AS x),
  q AS (INSERT INTO sp_quantity (rid, resource_type, param, system, code, value)
        SELECT r.rid, r.resource_type, x.* FROM r,
        unnest(%(qt_param)s::text[], %(qt_system)s::text[], %(qt_code)s::text[],
               %(qt_value)s::numeric[]) AS x),
  u AS (INSERT INTO sp_uri (rid, resource_type, param, uri)
        SELECT r.rid, r.resource_type, x.* FROM r,
        unnest(%(ur_param)s::text[], %(ur_uri)s::text[]) AS x),
  f AS (INSERT INTO sp_reference (rid, resource_type, param, target_type, target_id, target_url)
        SELECT r.rid, r.resource_type, x.* FROM r,
        unnest(%(rf_param)s::text[], %(rf_type)s::text[], %(rf_id)s::text[],
               %(rf_url)s::text[]) AS x)
"""

_INSERT_RESOURCE = (
    """
WITH r AS (
  INSERT INTO resource (resource_type, id, version_id, last_updated, deleted, method,
                        content, content_hash)
  VALUES (%(type)s, %(id)s, %(vid)s, %(ts)s, false, %(method)s, %(body)s::jsonb, %(hash)s)
  RETURNING rid, resource_type),
"""
    + _INDEX_INSERTS
    + "SELECT rid FROM r"
)

_INDEX_TABLES = (
    "sp_token",
    "sp_string",
    "sp_date",
    "sp_number",
    "sp_quantity",
    "sp_uri",
    "sp_reference",
)
_DELETE_INDEX = ",\n".join(
    f"del_{table} AS (DELETE FROM {table} WHERE rid = %(rid)s)" for table in _INDEX_TABLES
)
_ARCHIVE_CURRENT = """
  archived AS (INSERT INTO resource_version
               (rid, resource_type, id, version_id, last_updated, deleted, method, content)
               SELECT rid, resource_type, id, version_id, last_updated, deleted, method, content
               FROM resource WHERE rid = %(rid)s)
"""

_UPDATE_RESOURCE = (
    "WITH "
    + _ARCHIVE_CURRENT
    + ",\n"
    + _DELETE_INDEX
    + """,
  r AS (UPDATE resource SET version_id = %(vid)s, last_updated = %(ts)s, deleted = false,
               method = %(method)s, content = %(body)s::jsonb, content_hash = %(hash)s
        WHERE rid = %(rid)s RETURNING rid, resource_type),
"""
    + _INDEX_INSERTS
    + "SELECT rid FROM r"
)

_DELETE_RESOURCE = (
    "WITH "
    + _ARCHIVE_CURRENT
    + ",\n"
    + _DELETE_INDEX
    + """
UPDATE resource SET version_id = %(vid)s, last_updated = %(ts)s, deleted = true,
       method = 'DELETE', content = NULL, content_hash = NULL
WHERE rid = %(rid)s
"""
)


def index_parameters(rows: IndexRows) -> dict[str, list[Any]]:
    """The parallel arrays the index inserts take."""
    return {
        "tk_param": [row[0] for row in rows.token],
        "tk_system": [row[1] for row in rows.token],
        "tk_code": [row[2] for row in rows.token],
        "tk_hash": [row[3] for row in rows.token],
        "tk_shash": [row[4] for row in rows.token],
        "st_param": [row[0] for row in rows.string],
        "st_norm": [row[1] for row in rows.string],
        "st_exact": [row[2] for row in rows.string],
        "dt_param": [row[0] for row in rows.date],
        "dt_low": [row[1] for row in rows.date],
        "dt_high": [row[2] for row in rows.date],
        "nb_param": [row[0] for row in rows.number],
        "nb_value": [row[1] for row in rows.number],
        "qt_param": [row[0] for row in rows.quantity],
        "qt_system": [row[1] for row in rows.quantity],
        "qt_code": [row[2] for row in rows.quantity],
        "qt_value": [row[3] for row in rows.quantity],
        "ur_param": [row[0] for row in rows.uri],
        "ur_uri": [row[1] for row in rows.uri],
        "rf_param": [row[0] for row in rows.reference],
        "rf_type": [row[1] for row in rows.reference],
        "rf_id": [row[2] for row in rows.reference],
        "rf_url": [row[3] for row in rows.reference],
    }


async def insert_resource(
    conn: psycopg.AsyncConnection,
    *,
    resource_type: str,
    resource_id: str,
    version_id: int,
    last_updated: datetime,
    method: str,
    body: str,
    content_hash: bytes,
    rows: IndexRows,
) -> int:
    params = {
        "type": resource_type,
        "id": resource_id,
        "vid": version_id,
        "ts": last_updated,
        "method": method,
        "body": body,
        "hash": content_hash,
        **index_parameters(rows),
    }
    cursor = await conn.execute(_INSERT_RESOURCE, params)
    row = await cursor.fetchone()
    assert row is not None
    return int(row[0])


async def replace_resource(
    conn: psycopg.AsyncConnection,
    *,
    rid: int,
    version_id: int,
    last_updated: datetime,
    method: str,
    body: str,
    content_hash: bytes,
    rows: IndexRows,
) -> None:
    params = {
        "rid": rid,
        "vid": version_id,
        "ts": last_updated,
        "method": method,
        "body": body,
        "hash": content_hash,
        **index_parameters(rows),
    }
    await conn.execute(_UPDATE_RESOURCE, params)


async def mark_deleted(
    conn: psycopg.AsyncConnection, *, rid: int, version_id: int, last_updated: datetime
) -> None:
    await conn.execute(_DELETE_RESOURCE, {"rid": rid, "vid": version_id, "ts": last_updated})
