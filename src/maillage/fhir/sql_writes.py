"""The SQL that writes a resource version and its index rows in one round trip."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

import orjson
import psycopg

from maillage.fhir.indexing.values import IndexRows

# Each index table gets its rows from one JSON array of row arrays, unpacked by the server;
# empty arrays insert nothing, so one fixed statement (prepared once) serves every resource.
# (Passing them as 23 typed arrays made the driver inspect every element of every array:
# ~0.3 ms per write, more than the validation.)
_INDEX_INSERTS = """
  t AS (INSERT INTO sp_token (rid, resource_type, param, system, code, code_hash, system_code_hash)
        SELECT r.rid, r.resource_type, e->>0, e->>1, e->>2, (e->>3)::bigint, (e->>4)::bigint
        FROM r, json_array_elements(%(tk)s::json) AS e),
  s AS (INSERT INTO sp_string (rid, resource_type, param, value_norm, value_exact)
        SELECT r.rid, r.resource_type, e->>0, e->>1, e->>2
        FROM r, json_array_elements(%(st)s::json) AS e),
  d AS (INSERT INTO sp_date (rid, resource_type, param, low, high)
        SELECT r.rid, r.resource_type, e->>0, (e->>1)::timestamptz, (e->>2)::timestamptz
        FROM r, json_array_elements(%(dt)s::json) AS e),
  n AS (INSERT INTO sp_number (rid, resource_type, param, value)
        SELECT r.rid, r.resource_type, e->>0, (e->>1)::numeric
        FROM r, json_array_elements(%(nb)s::json) AS e),
  q AS (INSERT INTO sp_quantity (rid, resource_type, param, system, code, value)
        SELECT r.rid, r.resource_type, e->>0, e->>1, e->>2, (e->>3)::numeric
        FROM r, json_array_elements(%(qt)s::json) AS e),
  u AS (INSERT INTO sp_uri (rid, resource_type, param, uri)
        SELECT r.rid, r.resource_type, e->>0, e->>1
        FROM r, json_array_elements(%(ur)s::json) AS e),
  f AS (INSERT INTO sp_reference (rid, resource_type, param, target_type, target_id, target_url)
        SELECT r.rid, r.resource_type, e->>0, e->>1, e->>2, e->>3
        FROM r, json_array_elements(%(rf)s::json) AS e)
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


def _exact_decimal(value: Any) -> str:
    # Decimals go as JSON strings, so that the numeric cast keeps every digit.
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not an index value")


def _rows_json(rows: list[Any]) -> str:
    # datetimes come out as RFC 3339 with their offset, which timestamptz reads back.
    return orjson.dumps(rows, default=_exact_decimal).decode()


def index_parameters(rows: IndexRows) -> dict[str, str]:
    """Each index table's rows as one JSON text parameter."""
    return {
        "tk": _rows_json(rows.token),
        "st": _rows_json(rows.string),
        "dt": _rows_json(rows.date),
        "nb": _rows_json(rows.number),
        "qt": _rows_json(rows.quantity),
        "ur": _rows_json(rows.uri),
        "rf": _rows_json(rows.reference),
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
