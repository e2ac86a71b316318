"""Conditional updates of many resources of one type by business identifier, in a few
statements (http.html#cond-update, each ``identifier=system|value``).

A feed writes the results of a lab order by their identifiers: one by one, each is a
criteria lock, a search (its time limit and its query), a row lock and an insert, with
the search engine's Python around each. Here the group takes its criteria locks in one
statement, finds every current match in one lookup (locked, through the access policy's
filter as the search applies it), and inserts the new resources with their index rows in
one statement. Each item's outcome is the one the one-by-one path gives (tested side by
side); a single conditional update by identifier takes this path too. What it cannot do
the same way goes one by one: several items of a type whose domain hook is not
``independent`` (Patient: see ``write_hooks.py``), criteria other than one
``identifier=system|value`` of a type that has that search, two items with the same
criteria.

Everything is validated before anything is written: a group with an invalid resource
writes nothing.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson
import psycopg
from psycopg import sql

from maillage.errors import Forbidden, IdMismatch, MalformedContent, MultipleMatches
from maillage.fhir import sql_writes
from maillage.fhir.business_rules import check_business_rules
from maillage.fhir.definitions import params_for
from maillage.fhir.indexing.extractor import extract_index
from maillage.fhir.indexing.normalize import token_hash
from maillage.fhir.matching import criteria_lock_key
from maillage.fhir.model import StoredResource, WriteOutcome
from maillage.fhir.stamping import content_hash, now_instant, stamp_meta
from maillage.fhir.validation import validate_resource
from maillage.fhir.write_steps import journal_outcomes, replace_version
from maillage.security import Action

if TYPE_CHECKING:
    from maillage.fhir.repository import Repository

Criteria = list[tuple[str, str]]

# Every current resource of the type whose identifier token is one of the group's, locked
# like the one-by-one path's update locks its row; ``writable`` is the policy's filter for
# an update (the lookup itself applies the search's, as the search would). Its shape keeps
# both tables on their indexes whatever the planner's statistics (a new hub's tables have
# none yet, and a join planned from none read every Observation): the rids come from the
# hash index, the rows from the primary key, each row's matching hashes from its own
# index rows (a resource may carry several of the group's identifiers). The type is
# checked on the token rows the hash found (a hash carries the type already, short of a
# collision), not on ``resource``, where it would read the type's whole index.
_LOOKUP = sql.SQL(
    "SELECT ARRAY(SELECT x.system_code_hash FROM sp_token x WHERE x.rid = r.rid"
    " AND x.system_code_hash = ANY(%(hashes)s::bigint[])), r.rid, r.id, r.version_id,"
    " r.content_hash, r.last_updated, r.method, r.content, ({writable}) FROM resource r"
    " WHERE r.rid = ANY(ARRAY(SELECT x.rid FROM sp_token x"
    " WHERE x.system_code_hash = ANY(%(hashes)s::bigint[]) AND x.resource_type = %(type)s))"
    " AND NOT r.deleted AND {visible} FOR UPDATE OF r"
)
# The same search without locks (a handler finding the patient of an IPP); at most two
# rows: one, or "several".
_FIND = sql.SQL(
    "SELECT DISTINCT r.resource_type, r.id, r.version_id, r.last_updated, r.deleted, r.method,"
    " r.content FROM sp_token x JOIN resource r ON r.rid = x.rid"
    " WHERE x.system_code_hash = %s AND r.resource_type = %s AND NOT r.deleted AND {visible}"
    " LIMIT 2"
)
# The same for several identifiers at once: at most two rows for each.
_FIND_MANY = sql.SQL(
    "SELECT h.hash, f.* FROM unnest(%s::bigint[]) AS h(hash) CROSS JOIN LATERAL ("
    "SELECT DISTINCT r.resource_type, r.id, r.version_id, r.last_updated, r.deleted, r.method,"
    " r.content FROM sp_token x JOIN resource r ON r.rid = x.rid"
    " WHERE x.system_code_hash = h.hash AND r.resource_type = %s AND NOT r.deleted AND {visible}"
    " LIMIT 2) AS f"
)
_LOCK = "SELECT pg_advisory_xact_lock(k) FROM unnest(%s::bigint[]) AS k"
_ITEMS_PER_TURN = 8


@dataclass(frozen=True)
class _Match:
    rid: int
    stored: StoredResource
    content_hash: bytes | None
    writable: bool


def identifier_hash(resource_type: str, criteria: Criteria) -> int | None:
    """The token hash an ``identifier=system|value`` search looks up, or None when the
    criteria are anything else (escapes included: the search's parser handles them)."""
    param = params_for(resource_type).get("identifier")
    if param is None or param.type != "token" or len(criteria) != 1:
        return None
    name, value = criteria[0]
    if name != "identifier" or "\\" in value or "," in value or value.count("|") != 1:
        return None
    system, code = value.split("|")
    if not system or not code:
        return None
    return token_hash(resource_type, "identifier", system, code)


def eligible(repo: Repository, resource_type: str, items: Sequence[tuple[Criteria, Any]]) -> bool:
    """Whether this path gives these items the outcome the one-by-one path gives."""
    if resource_type == "SearchParameter":  # a definitions change: its own checks
        return False
    if len(items) > 1 and not _independent(repo, resource_type):
        # A domain's write may change another item's row (the patient index's golden
        # record): each such item must see the rows as the previous one left them.
        return False
    locks = {criteria_lock_key(resource_type, criteria) for criteria, _ in items}
    return len(locks) == len(items) and all(
        identifier_hash(resource_type, criteria) is not None for criteria, _ in items
    )


async def _share_the_loop(position: int) -> None:
    """Every few items of a group, let the event loop run other tasks: validating and
    indexing a hundred resources is ~50 ms of CPU without a wait, during which the
    process's other work (the HL7 listener's ACKs) would otherwise stand still."""
    if position % _ITEMS_PER_TURN == _ITEMS_PER_TURN - 1:
        await asyncio.sleep(0)


def _independent(repo: Repository, resource_type: str) -> bool:
    """Whether the type's writes may be stored together (fhir/write_hooks.py)."""
    hook = repo.store.write_hooks.get(resource_type)
    return hook is None or bool(getattr(hook, "independent", False))


async def conditional_update_many(
    repo: Repository,
    conn: psycopg.AsyncConnection,
    resource_type: str,
    items: Sequence[tuple[Criteria, Any]],
) -> list[WriteOutcome]:
    """Each item's conditional update, in ``conn``'s transaction, outcomes in item order;
    ``items`` are ``eligible``. A type's domain (write hook) sees each write before it is
    stored, as one by one."""
    if not items:
        return []
    bodies = []
    for position, (_, body) in enumerate(items):
        await _share_the_loop(position)
        bodies.append(_checked(resource_type, body))
    repo._authorize(Action.SEARCH, resource_type)
    hashes = [identifier_hash(resource_type, criteria) or 0 for criteria, _ in items]
    locks = [criteria_lock_key(resource_type, criteria) for criteria, _ in items]
    matches = await _lookup(repo, conn, resource_type, hashes, locks)
    rids = [rid for found in matches.values() for rid in found]
    if len(set(rids)) < len(rids):
        # A resource carrying two of the group's identifiers: the first item's write may
        # change what the second matches, as one by one (the locks are the same).
        return [await repo.conditional_update(resource_type, c, b) for c, b in items]
    hooked = not _independent(repo, resource_type)  # then inserted one at a time
    outcomes: list[WriteOutcome | None] = [None] * len(items)
    delegated: set[int] = set()
    new: list[tuple[int, str, dict[str, Any]]] = []
    for position, body in enumerate(bodies):
        found = matches.get(hashes[position], {})
        if len(found) > 1:
            raise MultipleMatches(
                f"the criteria match more than one {resource_type}; be more selective"
            )
        if not found and body.get("id"):  # rare: as one by one, an update of that id
            outcomes[position] = await repo.update(resource_type, str(body["id"]), body)
            delegated.add(position)  # journaled by ``update``
            continue
        if not found:
            repo._authorize(Action.CREATE, resource_type, body)
            new.append((position, str(uuid.uuid4()), body))
            if hooked:
                await _insert_new(repo, conn, resource_type, new, outcomes)
                new = []
            continue
        (match,) = found.values()
        if body.get("id") not in (None, match.stored.id):
            raise IdMismatch("the body's id differs from the resource the criteria matched")
        body = {**body, "id": match.stored.id}
        repo._authorize(Action.UPDATE, resource_type, body)
        if not match.writable:
            raise Forbidden(f"this user may not write {match.stored.reference}")
        prepared = await repo._before_write(conn, resource_type, match.stored.id, body)
        assert prepared is not None
        if match.content_hash == content_hash(prepared):
            outcomes[position] = WriteOutcome(match.stored, created=False, changed=False)
        else:
            stored = await replace_version(
                conn,
                rid=match.rid,
                version_id=match.stored.version_id,
                resource=prepared,
                method="PUT",
            )
            outcomes[position] = WriteOutcome(stored, created=False)
    await _insert_new(repo, conn, resource_type, new, outcomes)
    written = [o for p, o in enumerate(outcomes) if o is not None and p not in delegated]
    await journal_outcomes(repo, conn, resource_type, written)
    return [outcome for outcome in outcomes if outcome is not None]


async def find_identified(
    repo: Repository,
    conn: psycopg.AsyncConnection,
    resource_type: str,
    system: str,
    value: str,
    *,
    lock: bool = False,
) -> list[StoredResource] | None:
    """The current resources an ``identifier=system|value`` search finds for this caller,
    or None when the type has no such search (the caller then searches). With ``lock``,
    the criteria lock of a conditional write on that identifier is taken first, in the
    same round trip, and held to the end of the transaction: what is found stays true
    for this transaction's writes, as in ``conditional_update_many``."""
    criteria = [("identifier", f"{system}|{value}")]
    hashed = identifier_hash(resource_type, criteria)
    if hashed is None:
        return None
    repo._authorize(Action.SEARCH, resource_type)
    query = _FIND.format(visible=repo._visible(Action.SEARCH, "r", resource_type))
    if not lock:
        cursor = await conn.execute(query, (hashed, resource_type))
        return [StoredResource.from_row(row) for row in await cursor.fetchall()]
    async with conn.pipeline():
        await lock_criteria(conn, resource_type, criteria)
        cursor = await conn.execute(query, (hashed, resource_type))
        rows = await cursor.fetchall()
    return [StoredResource.from_row(row) for row in rows]


async def find_identified_many(
    repo: Repository,
    conn: psycopg.AsyncConnection,
    resource_type: str,
    system: str,
    values: Sequence[str],
) -> tuple[dict[str, list[StoredResource]], list[str]]:
    """``find_identified`` for each of ``values`` in one statement: what it finds for each
    value, and the values it could not look up this way (the caller searches them)."""
    by_hash: dict[int, list[str]] = {}
    left: list[str] = []
    for value in values:
        hashed = identifier_hash(resource_type, [("identifier", f"{system}|{value}")])
        if hashed is None:
            left.append(value)
        else:
            by_hash.setdefault(hashed, []).append(value)
    found: dict[str, list[StoredResource]] = {
        value: [] for values in by_hash.values() for value in values
    }
    if not by_hash:
        return found, left
    repo._authorize(Action.SEARCH, resource_type)
    query = _FIND_MANY.format(visible=repo._visible(Action.SEARCH, "r", resource_type))
    cursor = await conn.execute(query, (list(by_hash), resource_type))
    for hashed, *row in await cursor.fetchall():
        for value in by_hash[int(hashed)]:
            found[value].append(StoredResource.from_row(tuple(row)))
    return found, left


async def lock_criteria(
    conn: psycopg.AsyncConnection, resource_type: str, criteria: Criteria
) -> None:
    """A conditional write's criteria lock, held to the end of the transaction."""
    await conn.execute(_LOCK, ([criteria_lock_key(resource_type, criteria)],))


def _checked(resource_type: str, body: Any) -> dict[str, Any]:
    found = body.get("resourceType") if isinstance(body, dict) else None
    if found != resource_type:
        raise MalformedContent(
            f"resourceType {found!r} does not match the URL type {resource_type!r}"
        )
    return check_business_rules(validate_resource(body, expected_type=resource_type))


async def _lookup(
    repo: Repository,
    conn: psycopg.AsyncConnection,
    resource_type: str,
    hashes: list[int],
    locks: list[int],
) -> dict[int, dict[int, _Match]]:
    """Per identifier hash, its matches by rid (the items' hashes are distinct: their
    criteria are). The criteria locks are taken first,
    in a statement of their own: the lookup's snapshot then sees whatever a concurrent
    conditional write on the same criteria committed before releasing them."""
    query = _LOOKUP.format(
        writable=repo._visible(Action.UPDATE, "r", resource_type),
        visible=repo._visible(Action.SEARCH, "r", resource_type),
    )
    async with conn.pipeline():
        await conn.execute(_LOCK, (sorted(locks),))
        cursor = await conn.execute(query, {"hashes": hashes, "type": resource_type})
        rows = await cursor.fetchall()
    found: dict[int, dict[int, _Match]] = {}
    for keys, rid, rid_id, version, hashed, moment, method, content, writable in rows:
        stored = StoredResource(resource_type, rid_id, int(version), moment, False, method, content)
        match = _Match(int(rid), stored, hashed, bool(writable))
        for key in keys:
            found.setdefault(int(key), {})[int(rid)] = match
    return found


async def _insert_new(
    repo: Repository,
    conn: psycopg.AsyncConnection,
    resource_type: str,
    new: list[tuple[int, str, dict[str, Any]]],
    outcomes: list[WriteOutcome | None],
) -> None:
    """Inserts ``new`` (position, id, body) in one statement, each after its type's
    domain saw it, and records their outcomes."""
    if not new:
        return
    moment = now_instant()
    versions = []
    for position, (_, resource_id, body) in enumerate(new):
        await _share_the_loop(position)
        prepared = await repo._before_write(conn, resource_type, resource_id, body)
        assert prepared is not None
        stamped = stamp_meta(prepared, resource_id, 1, moment)
        versions.append(
            sql_writes.NewVersion(
                resource_id,
                orjson.dumps(stamped).decode(),
                content_hash(stamped),
                extract_index(stamped),
            )
        )
    await sql_writes.insert_resources(
        conn, resource_type=resource_type, last_updated=moment, method="POST", resources=versions
    )
    for (position, _, _), version in zip(new, versions, strict=True):
        stored = StoredResource(
            resource_type, version.resource_id, 1, moment, False, "POST", version.body
        )
        outcomes[position] = WriteOutcome(stored, created=True)
