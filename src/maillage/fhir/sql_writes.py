"""The SQL that writes a resource version and its index rows in one round trip."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import orjson
import psycopg

from maillage.fhir.indexing.values import IndexRows


@dataclass(frozen=True)
class IndexTable:
    """An index table: the short key of its JSON parameter, its value columns (after
    ``rid, resource_type, param``) with the cast each needs from JSON text, and the
    ``IndexRows`` field holding its rows."""

    key: str
    table: str
    columns: tuple[tuple[str, str], ...]
    field: str

    def values_from_json(self, first: int) -> str:
        """The value columns read from a JSON row array ``e`` starting at ``e->>first``."""
        return ", ".join(
            f"(e->>{first + n}){cast}" if cast else f"e->>{first + n}"
            for n, (_, cast) in enumerate(self.columns)
        )

    @property
    def column_names(self) -> str:
        return ", ".join(name for name, _ in self.columns)


INDEX_TABLES = (
    IndexTable(
        "tk",
        "sp_token",
        (("system", ""), ("code", ""), ("code_hash", "::bigint"), ("system_code_hash", "::bigint")),
        "token",
    ),
    IndexTable("st", "sp_string", (("value_norm", ""), ("value_exact", "")), "string"),
    IndexTable("dt", "sp_date", (("low", "::timestamptz"), ("high", "::timestamptz")), "date"),
    IndexTable("nb", "sp_number", (("value", "::numeric"),), "number"),
    IndexTable(
        "qt", "sp_quantity", (("system", ""), ("code", ""), ("value", "::numeric")), "quantity"
    ),
    IndexTable("ur", "sp_uri", (("uri", ""),), "uri"),
    IndexTable(
        "rf",
        "sp_reference",
        (("target_type", ""), ("target_id", ""), ("target_url", "")),
        "reference",
    ),
)

# Each index table gets its rows from one JSON array of row arrays, unpacked by the server;
# empty arrays insert nothing, so one fixed statement (prepared once) serves every resource.
# (Passing them as 23 typed arrays made the driver inspect every element of every array:
# ~0.3 ms per write, more than the validation.)
_INDEX_INSERTS = (
    ",\n".join(
        f"  ins_{spec.table} AS (INSERT INTO {spec.table}"
        f" (rid, resource_type, param, {spec.column_names})"
        f" SELECT r.rid, r.resource_type, e->>0, {spec.values_from_json(1)}"
        f" FROM r, json_array_elements(%({spec.key})s::json) AS e)"
        for spec in INDEX_TABLES
    )
    + "\n"
)

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

_DELETE_INDEX = ",\n".join(
    f"del_{table} AS (DELETE FROM {table} WHERE rid = %(rid)s)"
    for table in (spec.table for spec in INDEX_TABLES)
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


def exact_decimal(value: Any) -> str:
    """orjson's ``default`` for index rows: decimals go as JSON strings, so that the
    numeric cast keeps every digit."""
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not an index value")


def index_parameters(rows: IndexRows) -> dict[str, str]:
    """Each index table's rows as one JSON text parameter (datetimes come out as RFC 3339
    with their offset, which timestamptz reads back)."""
    return {
        spec.key: orjson.dumps(getattr(rows, spec.field), default=exact_decimal).decode()
        for spec in INDEX_TABLES
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


# Many new resources of one type and their index rows in one statement (a feed's group of
# results): the bodies go as one JSON array of the texts already serialised, each index
# row carries its resource's id first, to find the rid the insert gave it.
_INSERT_MANY = (
    """
WITH r AS (
  INSERT INTO resource (resource_type, id, version_id, last_updated, deleted, method,
                        content, content_hash)
  SELECT %(type)s, x.id, 1, %(ts)s, false, %(method)s, b.value::jsonb, x.hash
  FROM unnest(%(ids)s::text[], %(hashes)s::bytea[]) WITH ORDINALITY AS x(id, hash, n)
  JOIN json_array_elements(%(bodies)s::json) WITH ORDINALITY AS b(value, n) USING (n)
  RETURNING rid, resource_type, id),
"""
    + ",\n".join(
        f"  ins_{spec.table} AS (INSERT INTO {spec.table}"
        f" (rid, resource_type, param, {spec.column_names})"
        f" SELECT r.rid, r.resource_type, e->>1, {spec.values_from_json(2)}"
        f" FROM json_array_elements(%({spec.key})s::json) AS e JOIN r ON r.id = e->>0)"
        for spec in INDEX_TABLES
    )
    + "\nSELECT count(*) FROM r"
)


@dataclass(frozen=True)
class NewVersion:
    """A resource's first version, stamped and serialised, with its index rows."""

    resource_id: str
    body: str
    content_hash: bytes
    rows: IndexRows


async def insert_resources(
    conn: psycopg.AsyncConnection,
    *,
    resource_type: str,
    last_updated: datetime,
    method: str,
    resources: list[NewVersion],
) -> None:
    params: dict[str, Any] = {
        "type": resource_type,
        "ts": last_updated,
        "method": method,
        "ids": [new.resource_id for new in resources],
        "hashes": [new.content_hash for new in resources],
        "bodies": "[" + ",".join(new.body for new in resources) + "]",
    }
    for spec in INDEX_TABLES:
        keyed = [
            (new.resource_id, *row) for new in resources for row in getattr(new.rows, spec.field)
        ]
        params[spec.key] = orjson.dumps(keyed, default=exact_decimal).decode()
    cursor = await conn.execute(_INSERT_MANY, params)
    row = await cursor.fetchone()
    assert row is not None and row[0] == len(resources)
