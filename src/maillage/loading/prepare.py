"""Turn a chunk of input items into COPY data: the CPU-bound half of a load.

Runs in worker processes (or inline for small loads). For each item it does what
the store's create does before writing: parse, ``validate_resource``, the business
rules (``check_business_rules``), the access decision point, meta stamping
(``stamp_meta``), ``content_hash`` and ``extract_index``; then it formats the rows
in PostgreSQL's COPY text format, so that the process that talks to the database
only streams bytes.
"""

from __future__ import annotations

import functools
import os
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson

from maillage.audit.events import patients_of
from maillage.errors import MaillageError
from maillage.fhir import validation
from maillage.fhir.business_rules import check_business_rules
from maillage.fhir.conditional_references import (
    conditional_references,
    with_literal_bytes,
    with_literals,
)
from maillage.fhir.definitions import resource_types, search_params
from maillage.fhir.indexing.extractor import extract_index
from maillage.fhir.indexing.values import IndexRows
from maillage.fhir.stamping import check_id, content_hash, now_instant, stamp_meta
from maillage.fhir.validation import validate_resource
from maillage.loading.readers import Item
from maillage.security import AccessPolicy, Action, AllowAll, RequestContext
from maillage.security.care import CARE_TYPES, OBJECTION_TYPE, Grant, grants_of, objection_of

# Columns of a prepared resource row; the writer puts the seq (staging) or the rid,
# version and deleted flag (straight into ``resource``) in front.
RESOURCE_COLUMNS = "resource_type, id, method, last_updated, content, content_hash"
# Columns of the COPY straight into each index table; the writer puts the rid in front.
INDEX_COLUMNS: dict[str, str] = {
    "sp_token": "rid, resource_type, param, system, code, code_hash, system_code_hash",
    "sp_string": "rid, resource_type, param, value_norm, value_exact",
    "sp_date": "rid, resource_type, param, low, high",
    "sp_number": "rid, resource_type, param, value",
    "sp_quantity": "rid, resource_type, param, system, code, value",
    "sp_uri": "rid, resource_type, param, uri",
    "sp_reference": "rid, resource_type, param, target_type, target_id, target_url",
}

_NULL = "\\N"

# The types whose identifiers a load learns while its indexes are set aside: those that
# other resources name by conditional reference, few (not Patient: a million of them).
LEARNED_TYPES = frozenset({"Organization", "Location", "Practitioner", "PractitionerRole"})


@dataclass(frozen=True, slots=True)
class Rejection:
    file: str
    line: int
    message: str
    entry: int | None = None


@dataclass
class PreparedChunk:
    """COPY text for one chunk; ``seq`` numbers the chunk's resources from 0.

    ``resources`` holds, per seq, the resource's row (``RESOURCE_COLUMNS``, starting
    with a tab). ``index`` holds, per index table and per seq, that resource's index
    rows without their ``rid`` (each line starting with a tab). The writer puts the
    seq or the rid in front once it knows them.
    """

    count: int = 0
    resources: list[bytes] = field(default_factory=list)
    types: list[str] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)
    index: dict[str, list[bytes]] = field(default_factory=dict)
    rejected: list[Rejection] = field(default_factory=list)
    # Items whose (type, id) already appears earlier in the chunk: written after it.
    deferred: list[Item] = field(default_factory=list)
    # Index in the chunk's items of each prepared resource, by seq.
    sources: list[int] = field(default_factory=list)
    # What the store's write hooks keep for these types, computed here because a bulk
    # load does not go through the repository: the care relationships an Encounter,
    # CareTeam or referral grants (type, id, grants), the objection a Consent records.
    care: list[tuple[str, str, list[Grant]]] = field(default_factory=list)
    objections: list[tuple[str, str | None]] = field(default_factory=list)
    # The patients each resource is about, by seq (its audit events name them).
    patients: list[tuple[str, ...]] = field(default_factory=list)
    # The conditional references each resource holds, by seq (``loading/references.py``),
    # and how many were written as literals when prepared (one per resource and reference).
    conditional: list[tuple[str, ...]] = field(default_factory=list)
    literals: int = 0
    # For the resources of ``LEARNED_TYPES``, by seq: the conditional references that
    # name them (``Type?identifier=system|value``), learned while no lookup can be made.
    identified: list[tuple[str, ...]] = field(default_factory=list)
    # None: every parameter's rows (a create or a full rewrite); else new versions of
    # stored resources whose rows change for these parameters only (``prepare_changed``)
    reindexed: frozenset[str] | None = None


_policy: AccessPolicy = AllowAll()
_ctx: RequestContext = RequestContext.system("loader")
# False for a load that skips the search index (`maillage load --no-index`).
_index: bool = True
# How long an ended encounter keeps its care relationship (settings.care_recent_days).
_care_days: int = 30


def warm_up() -> None:
    """Load the definitions and compile the validation rules that validation and indexing
    use, before forking workers: they inherit them instead of each building its own."""
    resource_types()
    search_params()
    validation.warm_up()


def configure_worker(
    policy: AccessPolicy, ctx: RequestContext, index: bool = True, care_days: int = 30
) -> None:
    """The access decision point and context preparation answers to (in this process),
    and whether it extracts index rows."""
    global _policy, _ctx, _index, _care_days
    _policy, _ctx, _index, _care_days = policy, ctx, index, care_days


# Workers run at a lower priority: the single database session that writes the chunks is
# the serial part of a load, so it gets the CPU first and the workers use the rest.
WORKER_NICENESS = 5


def start_worker(
    policy: AccessPolicy, ctx: RequestContext, index: bool = True, care_days: int = 30
) -> None:
    """Pool initializer of a worker process."""
    configure_worker(policy, ctx, index, care_days)
    if WORKER_NICENESS and hasattr(os, "nice"):
        os.nice(WORKER_NICENESS)


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


# Index rows are formatted with their values as they are, then checked as a whole: only
# when some value holds a tab, a newline, a carriage return or a backslash (rare) are the
# rows formatted again with every value escaped. NUL stands for NULL while formatting (no
# stored text can hold one: such resources are rejected before).
_NUL = "\x00"
# Index dates repeat (their parsing is cached too), so their text is cached. Equal
# instants with different offsets share an entry: the timestamptz stored is the same.
_iso = functools.lru_cache(maxsize=16384)(datetime.isoformat)
# Tabs per row (two around the resource type, then one between each column) and the
# IndexRows list of each table.
_ROW_TABS = {
    "sp_token": (6, "token"),
    "sp_string": (4, "string"),
    "sp_date": (4, "date"),
    "sp_number": (3, "number"),
    "sp_quantity": (5, "quantity"),
    "sp_uri": (3, "uri"),
    "sp_reference": (5, "reference"),
}


def _index_blocks(resource_type: str, rows: IndexRows) -> dict[str, bytes]:
    """This resource's rows for each index table, in COPY text, each line starting with a
    tab (the rid goes in front of it)."""
    raw = _raw_blocks(resource_type, rows)
    blocks: dict[str, bytes] = {}
    for table, text in raw.items():
        tabs, attribute = _ROW_TABS[table]
        count = len(getattr(rows, attribute))
        if (
            "\\" in text
            or "\r" in text
            or text.count("\t") != tabs * count
            or text.count("\n") != count
        ):
            return _escaped_blocks(resource_type, rows)
        blocks[table] = text.replace(_NUL, _NULL).encode()
    return blocks


def _raw_blocks(resource_type: str, rows: IndexRows) -> dict[str, str]:
    head = f"\t{resource_type}\t"
    nul = _NUL
    blocks: dict[str, str] = {}
    if rows.token:
        blocks["sp_token"] = "".join(
            [
                f"{head}{p}\t{nul if s is None else s}\t{nul if c is None else c}\t{h}\t{sh}\n"
                for p, s, c, h, sh in rows.token
            ]
        )
    if rows.string:
        blocks["sp_string"] = "".join([f"{head}{p}\t{n}\t{e}\n" for p, n, e in rows.string])
    if rows.date:
        blocks["sp_date"] = "".join(
            [f"{head}{p}\t{_iso(low)}\t{_iso(high)}\n" for p, low, high in rows.date]
        )
    if rows.number:
        blocks["sp_number"] = "".join([f"{head}{p}\t{v}\n" for p, v in rows.number])
    if rows.quantity:
        blocks["sp_quantity"] = "".join(
            [
                f"{head}{p}\t{nul if s is None else s}\t{nul if c is None else c}\t{v}\n"
                for p, s, c, v in rows.quantity
            ]
        )
    if rows.uri:
        blocks["sp_uri"] = "".join([f"{head}{p}\t{u}\n" for p, u in rows.uri])
    if rows.reference:
        blocks["sp_reference"] = "".join(
            [
                f"{head}{p}\t{nul if t is None else t}\t{nul if i is None else i}"
                f"\t{nul if u is None else u}\n"
                for p, t, i, u in rows.reference
            ]
        )
    return blocks


def _escaped_blocks(resource_type: str, rows: IndexRows) -> dict[str, bytes]:
    """``_index_blocks`` the slow way: every text value escaped on its own."""
    head = "\t" + _text(resource_type) + "\t"
    blocks: dict[str, bytes] = {}
    if rows.token:
        blocks["sp_token"] = "".join(
            f"{head}{_text(p)}\t{_text(s)}\t{_text(c)}\t{h}\t{sh}\n"
            for p, s, c, h, sh in rows.token
        ).encode()
    if rows.string:
        blocks["sp_string"] = "".join(
            f"{head}{_text(p)}\t{_text(n)}\t{_text(e)}\n" for p, n, e in rows.string
        ).encode()
    if rows.date:
        blocks["sp_date"] = "".join(
            f"{head}{_text(p)}\t{_iso(low)}\t{_iso(high)}\n" for p, low, high in rows.date
        ).encode()
    if rows.number:
        blocks["sp_number"] = "".join(f"{head}{_text(p)}\t{v}\n" for p, v in rows.number).encode()
    if rows.quantity:
        blocks["sp_quantity"] = "".join(
            f"{head}{_text(p)}\t{_text(s)}\t{_text(c)}\t{v}\n" for p, s, c, v in rows.quantity
        ).encode()
    if rows.uri:
        blocks["sp_uri"] = "".join(f"{head}{_text(p)}\t{_text(u)}\n" for p, u in rows.uri).encode()
    if rows.reference:
        blocks["sp_reference"] = "".join(
            f"{head}{_text(p)}\t{_text(t)}\t{_text(i)}\t{_text(u)}\n"
            for p, t, i, u in rows.reference
        ).encode()
    return blocks


def _parse(item: Item) -> Any:
    if isinstance(item.raw, bytes | bytearray | memoryview | str):
        return orjson.loads(item.raw)
    return item.raw


def prepare_one(resource: Any, moment: datetime) -> tuple[dict[str, Any], str, bytes, IndexRows]:
    """Validate, authorize, stamp, hash and index one parsed resource, as the store's
    create does. Returns (stamped resource, method, body JSON, index rows)."""
    resource = check_business_rules(validate_resource(resource))
    resource_type = resource["resourceType"]
    _policy.authorize(_ctx, Action.CREATE, resource_type, resource)
    given_id = resource.get("id")
    if given_id is None:
        resource_id, method = str(uuid.uuid4()), "POST"
    else:
        resource_id, method = str(given_id), "PUT"
        check_id(resource_id)
    stamped = stamp_meta(resource, resource_id, 1, moment)
    rows = extract_index(stamped) if _index else IndexRows()
    return stamped, method, orjson.dumps(stamped), rows


def prepare_chunk(items: list[Item], resolved: Mapping[str, str] | None = None) -> PreparedChunk:
    """Prepare every item of a chunk; bad items are rejected with their location.
    ``resolved``: conditional references (``Type?identifier=...``) already known, and the
    ``Type/id`` each stands for: written so, as a transaction would (``references.py``)."""
    chunk = PreparedChunk()
    moment = now_instant()
    moment_text = moment.isoformat().encode()
    index: dict[str, list[bytes]] = {table: [] for table in INDEX_COLUMNS}
    seen: set[tuple[str, str]] = set()
    for position, item in enumerate(items):
        try:
            resource, named = _parsed_with_literals(item, resolved)
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
        _append(chunk, index, position, stamped, method, moment_text, body, rows)
        chunk.literals += named  # counted once written (not if rejected)
    chunk.index = {table: lines for table, lines in index.items() if any(lines)}
    return chunk


def _identified_as(resource: dict[str, Any]) -> tuple[str, ...]:
    """The conditional references that name ``resource`` by one of its identifiers."""
    keys = []
    for identifier in resource.get("identifier") or ():
        system, value = identifier.get("system"), identifier.get("value")
        if isinstance(system, str) and isinstance(value, str) and system and value:
            keys.append(f"{resource['resourceType']}?identifier={system}|{value}")
    return tuple(keys)


def _parsed_with_literals(item: Item, resolved: Mapping[str, str] | None) -> tuple[Any, int]:
    """The item parsed, its ``resolved`` conditional references written as literals, and
    how many were (a line is rewritten as bytes, before parsing: most hold none)."""
    if resolved and isinstance(item.raw, bytes) and b"?" in item.raw:
        raw, named = with_literal_bytes(item.raw, resolved)
        return orjson.loads(raw), named
    resource = _parse(item)
    if resolved and isinstance(resource, dict):
        return _with_literal_values(resource, resolved)
    return resource, 0


def _with_literal_values(
    resource: dict[str, Any], resolved: Mapping[str, str]
) -> tuple[dict[str, Any], int]:
    """``_with_literal_bytes`` for a resource given parsed (``load_resources``)."""
    count = sum(1 for found in conditional_references(orjson.dumps(resource)) if found in resolved)
    return (with_literals(resource, resolved), count) if count else (resource, 0)


def prepare_changed(resources: list[dict[str, Any]], codes: frozenset[str]) -> PreparedChunk:
    """New versions of stored resources (each with its ``id``, once) that differ from
    their current version in the search parameters ``codes`` alone (the patient index's
    ``refer`` links): stamped, hashed and indexed for ``codes`` only, not validated again
    (the stored version was; the change is the hub's own). The writer replaces the rows of
    those parameters and keeps the others."""
    chunk = PreparedChunk(reindexed=codes)
    moment = now_instant()
    moment_text = moment.isoformat().encode()
    index: dict[str, list[bytes]] = {table: [] for table in INDEX_COLUMNS}
    for position, resource in enumerate(resources):
        stamped = stamp_meta(resource, str(resource["id"]), 1, moment)
        rows = extract_index(stamped, codes) if _index else IndexRows()
        _append(chunk, index, position, stamped, "PUT", moment_text, orjson.dumps(stamped), rows)
    chunk.index = {table: lines for table, lines in index.items() if any(lines)}
    return chunk


def _append(
    chunk: PreparedChunk,
    index: dict[str, list[bytes]],
    position: int,
    stamped: dict[str, Any],
    method: str,
    moment_text: bytes,
    body: bytes,
    rows: IndexRows,
) -> None:
    """Add one prepared resource to the chunk: its row, its index rows, its care rows."""
    resource_type, resource_id = stamped["resourceType"], stamped["id"]
    if resource_type in CARE_TYPES:
        chunk.care.append((resource_type, resource_id, grants_of(stamped, recent_days=_care_days)))
    elif resource_type == OBJECTION_TYPE:
        chunk.objections.append((resource_id, objection_of(stamped)))
    chunk.count += 1
    chunk.sources.append(position)
    chunk.types.append(resource_type)
    chunk.ids.append(resource_id)
    chunk.patients.append(tuple(sorted(patients_of(stamped))))
    chunk.conditional.append(conditional_references(body))
    chunk.identified.append(_identified_as(stamped) if resource_type in LEARNED_TYPES else ())
    chunk.resources.append(
        b"\t%s\t%s\t%s\t%s\t%s\t\\\\x%s\n"
        % (
            _text(resource_type).encode(),
            _text(resource_id).encode(),
            method.encode(),
            moment_text,
            body.replace(b"\\", b"\\\\"),
            content_hash(stamped).hex().encode(),
        )
    )
    blocks = _index_blocks(resource_type, rows)
    for table, lines in index.items():
        lines.append(blocks.get(table, b""))
