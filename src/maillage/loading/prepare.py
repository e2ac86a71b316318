"""Turn a chunk of input items into COPY data: the CPU-bound half of a load.

Runs in worker processes (or inline for small loads). For each item it does what
the store's create does before writing: parse, ``validate_resource``, the access
decision point, meta stamping (``stamp_meta``), ``content_hash`` and
``extract_index``; then it formats the staging rows in PostgreSQL's COPY text
format, so that the process that talks to the database only streams bytes.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson

from maillage.errors import MaillageError
from maillage.fhir.indexing.extractor import extract_index
from maillage.fhir.indexing.values import IndexRows
from maillage.fhir.repository import check_id, content_hash, now_instant, stamp_meta
from maillage.fhir.validation import validate_resource
from maillage.loading.readers import Item
from maillage.security import AccessPolicy, Action, AllowAll, RequestContext

# Staging tables, in the order their COPY data is kept in ``PreparedChunk.copies``.
STAGING_COLUMNS: dict[str, str] = {
    "load_resource": "seq, resource_type, id, method, last_updated, content, content_hash",
    "load_sp_token": "seq, param, system, code, code_hash, system_code_hash",
    "load_sp_string": "seq, param, value_norm, value_exact",
    "load_sp_date": "seq, param, low, high",
    "load_sp_number": "seq, param, value",
    "load_sp_quantity": "seq, param, system, code, value",
    "load_sp_uri": "seq, param, uri",
    "load_sp_reference": "seq, param, target_type, target_id, target_url",
}
STAGING_TABLES = tuple(STAGING_COLUMNS)

_NULL = "\\N"


@dataclass(frozen=True, slots=True)
class Rejection:
    file: str
    line: int
    message: str
    entry: int | None = None


@dataclass
class PreparedChunk:
    """COPY text for each staging table; ``seq`` numbers the chunk's resources from 0."""

    count: int = 0
    copies: dict[str, bytes] = field(default_factory=dict)
    rejected: list[Rejection] = field(default_factory=list)
    # Items whose (type, id) already appears earlier in the chunk: written after it.
    deferred: list[Item] = field(default_factory=list)
    # Index in the chunk's items of each prepared resource, by seq.
    sources: list[int] = field(default_factory=list)


_policy: AccessPolicy = AllowAll()
_ctx: RequestContext = RequestContext.system("loader")


def configure_worker(policy: AccessPolicy, ctx: RequestContext) -> None:
    """Pool initializer: the access decision point and context the worker answers to."""
    global _policy, _ctx
    _policy, _ctx = policy, ctx


def _text(value: str | None) -> str:
    if value is None:
        return _NULL
    if "\\" in value or "\n" in value or "\r" in value or "\t" in value:
        return (
            value.replace("\\", "\\\\")
            .replace("\n", "\\n")
            .replace("\r", "\\r")
            .replace("\t", "\\t")
        )
    return value


def _index_lines(seq: str, rows: IndexRows, out: dict[str, list[str]]) -> None:
    if rows.token:
        out["load_sp_token"].extend(
            f"{seq}\t{_text(p)}\t{_text(s)}\t{_text(c)}\t{h}\t{sh}\n" for p, s, c, h, sh in rows.token
        )
    if rows.string:
        out["load_sp_string"].extend(
            f"{seq}\t{_text(p)}\t{_text(n)}\t{_text(e)}\n" for p, n, e in rows.string
        )
    if rows.date:
        out["load_sp_date"].extend(
            f"{seq}\t{_text(p)}\t{low.isoformat()}\t{high.isoformat()}\n"
            for p, low, high in rows.date
        )
    if rows.number:
        out["load_sp_number"].extend(f"{seq}\t{_text(p)}\t{v}\n" for p, v in rows.number)
    if rows.quantity:
        out["load_sp_quantity"].extend(
            f"{seq}\t{_text(p)}\t{_text(s)}\t{_text(c)}\t{v}\n" for p, s, c, v in rows.quantity
        )
    if rows.uri:
        out["load_sp_uri"].extend(f"{seq}\t{_text(p)}\t{_text(u)}\n" for p, u in rows.uri)
    if rows.reference:
        out["load_sp_reference"].extend(
            f"{seq}\t{_text(p)}\t{_text(t)}\t{_text(i)}\t{_text(u)}\n"
            for p, t, i, u in rows.reference
        )


def _parse(item: Item) -> Any:
    if isinstance(item.raw, bytes | bytearray | memoryview | str):
        return orjson.loads(item.raw)
    return item.raw


def prepare_one(resource: Any, moment: datetime) -> tuple[dict[str, Any], str, bytes, IndexRows]:
    """Validate, authorize, stamp, hash and index one parsed resource, as the store's
    create does. Returns (stamped resource, method, body JSON, index rows)."""
    resource = validate_resource(resource)
    resource_type = resource["resourceType"]
    _policy.authorize(_ctx, Action.CREATE, resource_type, resource)
    given_id = resource.get("id")
    if given_id is None:
        resource_id, method = str(uuid.uuid4()), "POST"
    else:
        resource_id, method = str(given_id), "PUT"
        check_id(resource_id)
    stamped = stamp_meta(resource, resource_id, 1, moment)
    return stamped, method, orjson.dumps(stamped), extract_index(stamped)


def prepare_chunk(items: list[Item]) -> PreparedChunk:
    """Prepare every item of a chunk; bad items are rejected with their location."""
    chunk = PreparedChunk()
    moment = now_instant()
    moment_text = moment.isoformat()
    out: dict[str, list[str]] = {table: [] for table in STAGING_TABLES}
    resource_lines: list[bytes] = []
    seen: set[tuple[str, str]] = set()
    for position, item in enumerate(items):
        try:
            resource = _parse(item)
            stamped, method, body, rows = prepare_one(resource, moment)
        except orjson.JSONDecodeError as error:
            chunk.rejected.append(Rejection(item.file, item.line, f"invalid JSON: {error}"))
            continue
        except MaillageError as error:
            chunk.rejected.append(Rejection(item.file, item.line, error.message, item.entry))
            continue
        key = (stamped["resourceType"], stamped["id"])
        if key in seen:
            chunk.deferred.append(Item(item.file, item.line, stamped, item.entry))
            continue
        if b"\\u0000" in body:
            chunk.rejected.append(
                Rejection(
                    item.file,
                    item.line,
                    "contains a NUL character (\\u0000), which PostgreSQL cannot store",
                    item.entry,
                )
            )
            continue
        seen.add(key)
        seq = str(chunk.count)
        chunk.count += 1
        chunk.sources.append(position)
        resource_lines.append(
            b"%s\t%s\t%s\t%s\t%s\t%s\t\\\\x%s\n"
            % (
                seq.encode(),
                _text(key[0]).encode(),
                _text(key[1]).encode(),
                method.encode(),
                moment_text.encode(),
                body.replace(b"\\", b"\\\\"),
                content_hash(stamped).hex().encode(),
            )
        )
        _index_lines(seq, rows, out)
    chunk.copies["load_resource"] = b"".join(resource_lines)
    for table, lines in out.items():
        if lines:
            chunk.copies[table] = "".join(lines).encode()
    return chunk
