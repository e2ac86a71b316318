"""The one resource that conditional criteria match (http.html#cond-update, #cdelete,
#ccreate): none, one, or a ``MultipleMatches`` error."""

from __future__ import annotations

from collections.abc import Callable
from hashlib import blake2b

import psycopg
from psycopg import sql

from maillage.errors import InvalidRequest, MultipleMatches
from maillage.fhir.model import StoredResource
from maillage.fhir.search.engine import SearchEngine


def identifier_criteria(system: str, value: str) -> list[tuple[str, str]]:
    """The search criteria ``identifier=system|value`` for one identifier, its value
    escaped as search values are (backslashes and commas: ``conditions.split_commas``)."""
    escaped = value.replace("\\", "\\\\").replace(",", "\\,")
    return [("identifier", f"{system}|{escaped}")]


def criteria_lock_key(resource_type: str, criteria: list[tuple[str, str]]) -> int:
    """A 64-bit advisory lock key for these criteria (their order does not matter)."""
    digest = blake2b(repr((resource_type, sorted(criteria))).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


async def single_match(
    conn: psycopg.AsyncConnection,
    engine: SearchEngine,
    resource_type: str,
    criteria: list[tuple[str, str]],
    *,
    authorize: Callable[[], None],
    visible: Callable[[str], sql.Composable],
) -> StoredResource | None:
    """The resource ``criteria`` match, searched as the caller (``authorize`` raises when
    the caller may not search, ``visible`` is the policy's row filter)."""
    if not criteria:
        raise InvalidRequest("a conditional interaction needs search criteria")
    authorize()
    # Serialise conditional writes on the same criteria until the transaction ends, so
    # two concurrent conditional creates cannot both create.
    await conn.execute(
        "SELECT pg_advisory_xact_lock(%s)", (criteria_lock_key(resource_type, criteria),)
    )
    page = await engine.search(
        conn, resource_type, [*criteria, ("_count", "2")], strict=True, visible=visible
    )
    if len(page.entries) > 1:
        raise MultipleMatches(
            f"the criteria match more than one {resource_type}; be more selective"
        )
    return page.entries[0] if page.entries else None
