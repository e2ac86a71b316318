"""The audit against the real test database: a trail per test, and the attacker's tools
(a superuser connection that disables the append-only trigger)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import psycopg

from maillage.audit import AuditTrail
from maillage.security import RequestContext
from maillage.storage import Database

T = TypeVar("T")

DOCTOR = RequestContext(
    who="Practitioner/dr-martin",
    site="chu-nord",
    roles=frozenset({"physician"}),
    organisation="Organization/chu-nord",
)
DPO = RequestContext(who="Practitioner/dpo", site="chu-nord", roles=frozenset({"security"}))


@asynccontextmanager
async def opened(database_url: str, **options: Any) -> AsyncIterator[AuditTrail]:
    database = Database(database_url, min_size=1, max_size=6)
    await database.open()
    trail = AuditTrail(database, **options)
    try:
        yield trail
    finally:
        await trail.close()
        await database.close()


def run(database_url: str, test: Callable[[AuditTrail], Awaitable[T]], **options: Any) -> T:
    async def main() -> T:
        async with opened(database_url, **options) as trail:
            return await test(trail)

    return asyncio.run(main())


def tamper(database_url: str, statement: str, params: tuple[Any, ...] = ()) -> None:
    """What an attacker with superuser rights does: disable the trigger, change rows."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("ALTER TABLE audit_event DISABLE TRIGGER audit_event_append_only")
        try:
            conn.execute(statement, params)
        finally:
            conn.execute("ALTER TABLE audit_event ENABLE TRIGGER audit_event_append_only")


def fill(database_url: str, count: int) -> None:
    """``count`` reads of different patients by the doctor."""

    async def write(trail: AuditTrail) -> None:
        for number in range(count):
            await trail.record(DOCTOR, "read", "Patient", [f"p{number}"], [f"p{number}"])

    run(database_url, write)
