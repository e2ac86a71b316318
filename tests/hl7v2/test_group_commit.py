"""Group commit of accepted messages: those that arrive together share one INSERT, each
caller gets its own row's outcome once committed, duplicates are recognised within the
group and against the store, and a failed commit reaches every caller of the group."""

from __future__ import annotations

import asyncio

import psycopg
import pytest

from maillage.hl7v2.group_commit import GroupCommit
from maillage.hl7v2.store import MessageStore, NewMessage
from maillage.storage import Database
from tests.hl7v2.conftest import rows


def _message(key: str) -> NewMessage:
    return NewMessage(
        raw=f"MSH|^~\\&|GAM|CHM|||20260101||ADT^A28|{key}|P|2.5".encode(),
        status="received",
        site="CHM",
        sender="GAM|CHM",
        control_id=key,
        idempotency_key=f"GAM|CHM|{key}",
        message_type="ADT",
        trigger_event="A28",
        patient_key=f"CHM|{key}",
        charset="utf-8",
    )


async def _together(conninfo: str, keys: list[str]) -> tuple[list[int | None], int]:
    """All inserted at once: the outcomes in order, and how many statements were used."""
    database = Database(conninfo, min_size=1, max_size=2)
    await database.open()
    store = MessageStore(database)
    statements = {"count": 0}
    insert, insert_many = store.insert, store.insert_many

    async def counted(message: NewMessage) -> int | None:
        statements["count"] += 1
        return await insert(message)

    async def counted_many(messages: list[NewMessage]) -> list[int | None]:
        statements["count"] += 1
        return await insert_many(messages)

    store.insert, store.insert_many = counted, counted_many  # type: ignore[method-assign]
    try:
        commits = GroupCommit(store)
        # the first arrives alone; the others while its commit is in flight
        first = asyncio.create_task(commits.insert(_message(keys[0])))
        while not statements["count"]:
            await asyncio.sleep(0)
        others = await asyncio.gather(*(commits.insert(_message(key)) for key in keys[1:]))
        outcomes = [await first, *others]
    finally:
        await database.close()
    return list(outcomes), statements["count"]


def test_messages_arriving_together_share_a_commit_each_with_its_outcome(
    hl7_database: str,
) -> None:
    asyncio.run(_together(hl7_database, ["K0"]))
    keys = ["K1", "K2", "K0", "K3", "K2", "K4"]  # K0 stored before, K2 twice in the group
    outcomes, statements = asyncio.run(_together(hl7_database, keys))
    # the first alone (nothing in flight), the five that came meanwhile in one statement
    assert statements == 2
    stored = dict(rows(hl7_database, "SELECT control_id, id FROM hl7_message"))
    assert outcomes == [stored["K1"], stored["K2"], None, stored["K3"], None, stored["K4"]]
    # ids follow arrival order (the processor's order per patient)
    assert stored["K1"] < stored["K2"] < stored["K3"] < stored["K4"]
    assert len(stored) == 5


def test_a_failed_commit_reaches_every_caller_of_its_group(hl7_database: str) -> None:
    with psycopg.connect(hl7_database, autocommit=True) as conn:
        # a constraint that the third message breaks: its group's statement fails
        conn.execute(
            "ALTER TABLE hl7_message ADD CONSTRAINT test_no_bad CHECK (control_id <> 'BAD')"
        )
    try:
        with pytest.raises(psycopg.errors.CheckViolation):
            asyncio.run(_together(hl7_database, ["G1", "G2", "BAD", "G3"]))
        # the first was committed alone, before the group came; nothing of the group was
        stored = rows(hl7_database, "SELECT control_id FROM hl7_message")
        assert [row[0] for row in stored] == ["G1"]
    finally:
        with psycopg.connect(hl7_database, autocommit=True) as conn:
            conn.execute("ALTER TABLE hl7_message DROP CONSTRAINT test_no_bad")
