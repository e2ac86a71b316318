"""The conditional references of a bulk load (``Practitioner?identifier=system|value``).

FHIR allows conditional references in transactions only, but bulk exports carry them
(Synthea's name every practitioner, organisation and location so). The loader resolves
them as a transaction would, by ``identifier=system|value`` through the search index
(as the store's conditional writes look up), into the literal ``Type/id`` of the one
current resource that carries it:

- before a chunk is prepared (``KnownReferences``): the references its lines hold are
  looked up among what is already stored, and the chunk's resources are prepared with
  the literals (``prepare.with_literals``); a folder's files are read referenced types
  first (``readers.expand_paths``), so the targets are stored when their referrers
  come. While the search tables' indexes are set aside (a big first load) no lookup
  can be made: the identifiers of the organisations, locations and practitioners the
  load writes are learned instead, when the store held none before;
- at the end of the load (``ConditionalReferences``), for the references still as
  written (their target came later or in a chunk still in flight, or could be neither
  looked up nor learned): each distinct one is looked up once, and every resource of the load naming
  a found one is rewritten in place — not a new version: the load's own write,
  completed — with its reference index rows extracted again, the care relationships or
  objection it records (``security/care.py`` reads literal references only), and the
  content hash of the resolved resource, which a later load of the same lines resolving
  them before preparation computes alike (found unchanged).

No match, several, criteria other than one identifier, or a load without search index:
left as written, and counted in the report by target type, never listed (the criteria
may hold a patient's identifier).
"""

from __future__ import annotations

import functools
from array import array
from collections import Counter
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import orjson
import psycopg

from maillage.fhir.batch_writes import identifier_hash
from maillage.fhir.conditional_references import conditional_references, with_literal_bytes
from maillage.fhir.definitions import params_for
from maillage.fhir.indexing.extractor import extract_index
from maillage.fhir.stamping import content_hash
from maillage.loading.prepare import PreparedChunk
from maillage.loading.readers import Item
from maillage.loading.writer import ChunkResult, write_care
from maillage.security.care import CARE_TYPES, OBJECTION_TYPE, grants_of, objection_of

__all__ = ["ConditionalReferences", "KnownReferences", "Resolution", "look_up"]

# Resources rewritten per transaction.
_BATCH = 1000
# Resolved references kept in memory between chunks (about 200 bytes each).
_KEPT = 200_000

_FIND = """
SELECT q.n, f.id FROM unnest(%s::bigint[], %s::text[], %s::int[]) AS q(hash, type, n)
CROSS JOIN LATERAL (
    SELECT DISTINCT r.id FROM sp_token x JOIN resource r ON r.rid = x.rid
    WHERE x.system_code_hash = q.hash AND r.resource_type = q.type AND NOT r.deleted
    LIMIT 2
) AS f
"""
_LOCK = """
SELECT rid, resource_type, content::text FROM resource
WHERE rid = ANY(%s) AND NOT deleted ORDER BY rid FOR UPDATE
"""
# Binary parameters (%b): a text array in text format is escaped character by character.
_UPDATE = """
UPDATE resource r SET content = u.content::jsonb, content_hash = u.hash
FROM unnest(%b::bigint[], %b::text[], %b::bytea[]) AS u(rid, content, hash)
WHERE r.rid = u.rid
"""
# The reference rows of the rewritten resources, extracted again: a parameter such as
# Encounter's ``practitioner`` (``where(resolve() is Practitioner)``) has no row for a
# reference whose type was unknown.
_DELETE_INDEX = "DELETE FROM sp_reference WHERE rid = ANY(%s)"
_INSERT_INDEX = """
INSERT INTO sp_reference (rid, resource_type, param, target_type, target_id, target_url)
SELECT * FROM unnest(%b::bigint[], %b::text[], %b::text[], %b::text[], %b::text[], %b::text[])
"""


def look_up(
    conn: psycopg.Connection,
    references: list[str],
    unresolved: Counter[tuple[str, str]] | None = None,
) -> dict[str, str]:
    """reference -> ``Type/id`` for the references that match exactly one current
    resource, in one statement; the others counted in ``unresolved`` by (type, reason)."""
    asked: list[tuple[str, str, int]] = []  # (reference, type, token hash)
    missed: Counter[tuple[str, str]] = Counter() if unresolved is None else unresolved
    for reference in references:
        resource_type, _, query = reference.partition("?")
        hashed = identifier_hash(resource_type, parse_qsl(query, keep_blank_values=True))
        if hashed is None:
            missed[(resource_type, "criteria other than one identifier")] += 1
        else:
            asked.append((reference, resource_type, hashed))
    found: dict[int, list[str]] = {}
    columns = ([h for _, _, h in asked], [t for _, t, _ in asked], list(range(len(asked))))
    for number, resource_id in conn.execute(_FIND, columns).fetchall():
        found.setdefault(int(number), []).append(str(resource_id))
    targets: dict[str, str] = {}
    for number, (reference, resource_type, _) in enumerate(asked):
        ids = found.get(number, [])
        if len(ids) == 1:
            targets[reference] = f"{resource_type}/{ids[0]}"
        else:
            missed[(resource_type, "no match" if not ids else "several matches")] += 1
    return targets


class KnownReferences:
    """The conditional references already resolvable when a chunk is submitted for
    preparation, and the ``Type/id`` each stands for (at most ``_KEPT`` kept).

    ``mode``: ``lookup`` — looked up among what is stored (the search index); ``learn`` —
    while the search tables' indexes are set aside, no lookup can be made: the
    identifiers of the resources of ``LEARNED_TYPES`` the load writes are learned as
    their chunks commit (an identifier carried twice is no answer), which is the whole
    truth when the store held none of those types before; ``off`` — none."""

    def __init__(self, conninfo: str, *, mode: str) -> None:
        self.conninfo = conninfo
        self.mode = mode
        self.known: dict[str, str] = {}
        self._twice: set[str] = set()
        self._conn: psycopg.Connection | None = None

    def for_items(self, items: list[Item]) -> dict[str, str]:
        """The references the items hold that are known, and their literals."""
        if self.mode == "off" or (self.mode == "learn" and not self.known):
            return {}
        held: dict[str, None] = {}
        for item in items:
            raw = item.raw if isinstance(item.raw, bytes) else orjson.dumps(item.raw)
            held.update(dict.fromkeys(conditional_references(raw)))
        unknown = [reference for reference in held if reference not in self.known]
        if unknown and self.mode == "lookup":
            if len(self.known) > _KEPT:
                self.known.clear()
            if self._conn is None:
                self._conn = psycopg.connect(self.conninfo, autocommit=True)
            self.known.update(look_up(self._conn, unknown))
        return {reference: self.known[reference] for reference in held if reference in self.known}

    def learn(self, prepared: PreparedChunk, result: ChunkResult) -> None:
        """In ``learn`` mode: the identifiers of what a committed chunk wrote."""
        if self.mode != "learn" or len(self.known) > _KEPT:
            return
        for seq, _, _ in result.written:
            literal = f"{prepared.types[seq]}/{prepared.ids[seq]}"
            for key in prepared.identified[seq]:
                if key in self._twice:
                    continue
                if self.known.setdefault(key, literal) != literal:
                    del self.known[key]
                    self._twice.add(key)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


@dataclass
class Resolution:
    """What the resolution did: references written as literals when prepared, then
    rewritten at the end (one per resource and reference) and the resources rewritten,
    and the distinct references left as written, by target type and reason."""

    before: int = 0
    rewritten: int = 0
    resources: int = 0
    unresolved: Counter[tuple[str, str]] = field(default_factory=Counter)


class ConditionalReferences:
    """Collects the conditional references of what a load wrote, then resolves them."""

    def __init__(self, care_recent_days: int) -> None:
        self.care_recent_days = care_recent_days
        # reference -> the rids of the load's resources naming it (8 bytes each)
        self.named_by: dict[str, array[int]] = {}

    def note(self, prepared: PreparedChunk, result: ChunkResult) -> None:
        """Note the conditional references of the resources a chunk wrote."""
        for seq, rid, _ in result.written:
            for reference in prepared.conditional[seq]:
                self.named_by.setdefault(reference, array("q")).append(rid)

    def resolve(self, conn: psycopg.Connection, *, indexed: bool) -> Resolution:
        """Look each reference up and rewrite the resources naming the ones found once."""
        resolution = Resolution()
        if not self.named_by:
            return resolution
        if not indexed:  # nothing to look them up in
            for reference in self.named_by:
                resolution.unresolved[(_target_type(reference), "loaded without index")] += 1
            return resolution
        targets = look_up(conn, list(self.named_by), resolution.unresolved)
        touched: dict[int, dict[str, None]] = {}  # a resource written twice: noted twice
        for reference in targets:
            for rid in self.named_by[reference]:
                touched.setdefault(rid, {})[reference] = None
        rids = sorted(touched)
        for start in range(0, len(rids), _BATCH):
            batch = {rid: list(touched[rid]) for rid in rids[start : start + _BATCH]}
            with conn.transaction():
                self._rewrite(conn, batch, targets)
        resolution.resources = len(touched)
        resolution.rewritten = sum(len(found) for found in touched.values())
        return resolution

    def _rewrite(
        self, conn: psycopg.Connection, batch: dict[int, list[str]], targets: dict[str, str]
    ) -> None:
        """Rewrite a batch of resources (rid -> the references to rewrite in it), their
        JSON as text, as the loader rewrites its lines (``with_literal_bytes``)."""
        rows = conn.execute(_LOCK, (list(batch),)).fetchall()
        rids: list[int] = []
        contents: list[str] = []
        hashes: list[bytes] = []
        index: list[tuple[int, str, str, str | None, str | None, str | None]] = []
        care: list[tuple[str, str, list[Any]]] = []
        objections: list[tuple[str, str | None]] = []
        for rid, resource_type, content in rows:
            rewritten, _ = with_literal_bytes(content.encode(), targets)
            body = orjson.loads(rewritten)
            rids.append(int(rid))
            contents.append(rewritten.decode())
            hashes.append(content_hash(body))
            extracted = extract_index(body, _reference_codes(resource_type))
            for code, target_type, target_id, url in extracted.reference:
                index.append((int(rid), resource_type, code, target_type, target_id, url))
            if resource_type in CARE_TYPES:
                care.append((resource_type, body["id"], self._grants(body)))
            elif resource_type == OBJECTION_TYPE:
                objections.append((body["id"], objection_of(body)))
        if not rids:
            return
        conn.execute(_UPDATE, (rids, contents, hashes))
        conn.execute(_DELETE_INDEX, (rids,))
        if index:
            conn.execute(_INSERT_INDEX, [list(column) for column in zip(*index, strict=True)])
        with conn.cursor() as cursor:
            write_care(cursor, care, objections)

    def _grants(self, body: dict[str, Any]) -> list[Any]:
        return grants_of(body, recent_days=self.care_recent_days)


@functools.cache
def _reference_codes(resource_type: str) -> frozenset[str]:
    """The type's reference parameters: their rows are extracted again."""
    return frozenset(
        code for code, param in params_for(resource_type).items() if param.type == "reference"
    )


def _target_type(reference: str) -> str:
    return reference.partition("?")[0]
