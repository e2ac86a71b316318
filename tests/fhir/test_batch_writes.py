"""Conditional updates of a group by identifier (``conditional_update_many``): the same
outcomes, rows and index rows as the one-by-one conditional updates a feed made before,
in a few statements; nothing written when any item fails."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import psycopg
import pytest

from maillage.errors import MalformedContent, MultipleMatches, ValidationFailed
from maillage.fhir.model import WriteOutcome
from maillage.fhir.repository import FhirStore, Repository
from maillage.fhir.search.engine import SearchEngine
from maillage.fhir.sql_writes import INDEX_TABLES
from maillage.security import AllowAll, RequestContext
from maillage.storage import Database
from tests import factories
from tests.conftest import empty_tables

SYSTEM = "urn:oid:1.2.250.1.999.1.2.3"
Item = tuple[list[tuple[str, str]], dict[str, Any]]
Writer = Callable[[Repository, str, list[Item]], Awaitable[list[WriteOutcome]]]


async def _one_by_one(
    repo: Repository, resource_type: str, items: list[Item]
) -> list[WriteOutcome]:
    async with repo.atomic() as bound:
        return [await bound.conditional_update(resource_type, c, b) for c, b in items]


async def _grouped(repo: Repository, resource_type: str, items: list[Item]) -> list[WriteOutcome]:
    return await repo.conditional_update_many(resource_type, items)


WRITERS = {"one by one": _one_by_one, "grouped": _grouped}


def _result(number: str, value: float, patient: str = "Patient/p1") -> Item:
    body = factories.observation(
        subject=patient,
        value=value,
        identifier=[{"system": SYSTEM, "value": number}],
    )
    return [("identifier", f"{SYSTEM}|{number}")], body


@asynccontextmanager
async def _repository(conninfo: str) -> AsyncIterator[Repository]:
    database = Database(conninfo, min_size=1, max_size=4)
    await database.open()
    try:
        yield FhirStore(database, AllowAll(), SearchEngine()).repository(
            RequestContext.system("test:batch")
        )
    finally:
        await database.close()


def _stored(conninfo: str) -> dict[str, Any]:
    """Each current Observation by identifier (content without id and meta, version),
    its index rows (rid replaced by the identifier), and the count of archived versions."""
    with psycopg.connect(conninfo) as conn:
        resources = conn.execute(
            "SELECT rid, id, version_id, content FROM resource WHERE resource_type = 'Observation'"
        ).fetchall()
        by_rid = {}
        found: dict[str, Any] = {}
        for rid, rid_id, version, content in resources:
            number = content["identifier"][0]["value"]
            by_rid[rid] = (number, rid_id)
            content = {k: v for k, v in content.items() if k not in ("id", "meta")}
            found[number] = {"version": version, "content": content, "index": set()}
        for spec in INDEX_TABLES:
            rows = conn.execute(
                f"SELECT rid, param, {spec.column_names} FROM {spec.table}"
                " WHERE resource_type = 'Observation'"
            ).fetchall()
            for rid, *values in rows:
                number, own_id = by_rid[rid]
                cleaned = tuple("<own id>" if v == own_id else v for v in values)
                found[number]["index"].add((spec.table, *cleaned))
        archived = conn.execute("SELECT count(*) FROM resource_version").fetchone()
    return {"resources": found, "archived": archived[0] if archived else None}


def _flags(outcomes: list[WriteOutcome]) -> list[tuple[bool, bool, int]]:
    return [(o.created, o.changed, o.resource.version_id) for o in outcomes]


def _run(conninfo: str, writer: Writer, steps: list[list[Item]]) -> list[Any]:
    async def scenario() -> list[Any]:
        async with _repository(conninfo) as repo:
            return [_flags(await writer(repo, "Observation", items)) for items in steps]

    return asyncio.run(scenario())


def test_a_group_gives_the_outcomes_rows_and_index_rows_of_one_by_one(
    clean_database: str,
) -> None:
    steps = [
        [_result("A1", 1), _result("A2", 2), _result("A3", 3)],
        # a replay (nothing new), then a correction of A2 beside a new A4
        [_result("A1", 1), _result("A2", 2), _result("A3", 3)],
        [_result("A1", 1), _result("A2", 2.5), _result("A4", 4)],
    ]
    seen = {}
    for name, writer in WRITERS.items():
        with psycopg.connect(clean_database, autocommit=True) as conn:
            empty_tables(
                conn,
                ("resource", "resource_version", *(spec.table for spec in INDEX_TABLES)),
            )
        seen[name] = (_run(clean_database, writer, steps), _stored(clean_database))
    flags, stored = seen["grouped"]
    assert flags == [
        [(True, True, 1), (True, True, 1), (True, True, 1)],
        [(False, False, 1), (False, False, 1), (False, False, 1)],
        [(False, False, 1), (False, True, 2), (True, True, 1)],
    ]
    assert stored["archived"] == 1
    assert stored["resources"]["A2"]["content"]["valueQuantity"]["value"] == 2.5
    # The index holds what a search needs: the identifier, the code, the subject, the date.
    index = stored["resources"]["A4"]["index"]
    assert {row[1] for row in index} >= {"identifier", "code", "subject", "date"}
    assert seen["grouped"] == seen["one by one"]


def test_two_matches_fail_the_group_and_write_nothing(clean_database: str) -> None:
    async def scenario() -> None:
        async with _repository(clean_database) as repo:
            twin = _result("T1", 1)[1]
            await repo.create(twin)
            await repo.create(twin)
            with pytest.raises(MultipleMatches):
                await repo.conditional_update_many(
                    "Observation", [_result("N1", 1), _result("T1", 2)]
                )

    asyncio.run(scenario())
    assert set(_stored(clean_database)["resources"]) == {"T1"}


@pytest.mark.parametrize(
    ("broken", "error"),
    [
        ({"status": 5}, ValidationFailed),
        ({"resourceType": "Patient"}, MalformedContent),
    ],
)
def test_an_invalid_item_fails_the_group_before_any_write(
    clean_database: str, broken: dict[str, Any], error: type[Exception]
) -> None:
    criteria, body = _result("B2", 2)

    async def scenario() -> None:
        async with _repository(clean_database) as repo:
            with pytest.raises(error):
                await repo.conditional_update_many(
                    "Observation", [_result("B1", 1), (criteria, {**body, **broken})]
                )

    asyncio.run(scenario())
    assert _stored(clean_database)["resources"] == {}


def test_concurrent_groups_on_the_same_identifiers_create_each_resource_once(
    clean_database: str,
) -> None:
    numbers = [f"C{n}" for n in range(20)]

    async def scenario() -> None:
        async with _repository(clean_database) as repo:

            async def group(order: list[str]) -> None:
                await repo.conditional_update_many(
                    "Observation", [_result(number, 1) for number in order]
                )

            await asyncio.gather(*(group(numbers[::step]) for step in (1, -1, 1, -1)))

    asyncio.run(scenario())
    with psycopg.connect(clean_database) as conn:
        rows = conn.execute(
            "SELECT content->'identifier'->0->>'value', count(*) FROM resource"
            " WHERE resource_type = 'Observation' GROUP BY 1"
        ).fetchall()
    assert dict(rows) == dict.fromkeys(numbers, 1)


def test_find_identified_answers_as_the_search_alone_or_many(clean_database: str) -> None:
    async def scenario() -> dict[str, Any]:
        async with _repository(clean_database) as repo:
            for number in ("F1", "F2", "F2", "a,b|c", "gone"):
                await repo.create(_result(number, 1)[1])
            (gone,) = await repo.find_identified("Observation", SYSTEM, "gone")
            await repo.delete("Observation", gone.id)
            answers = {}
            numbers = ("F1", "F2", "a,b|c", "gone", "none")
            together = await repo.find_identified_many("Observation", SYSTEM, [*numbers, "F1"])
            assert set(together) == set(numbers)
            for number in numbers:
                found = await repo.find_identified("Observation", SYSTEM, number)
                escaped = number.replace(",", "\\,").replace("|", "\\|")
                page = await repo.search(
                    "Observation", [("identifier", f"{SYSTEM}|{escaped}"), ("_count", "2")]
                )
                assert {f.id for f in found} == {e.id for e in page.entries}, number
                # several identifiers in one statement: what each alone finds
                assert {f.id for f in together[number]} == {f.id for f in found}, number
                answers[number] = len(found)
            return answers

    assert asyncio.run(scenario()) == {"F1": 1, "F2": 2, "a,b|c": 1, "gone": 0, "none": 0}


def test_a_resource_two_items_match_is_written_as_one_by_one(clean_database: str) -> None:
    """The first item's write drops the identifier the second matched: one by one, the
    second then matches nothing and creates."""
    both = [{"system": SYSTEM, "value": "D1"}, {"system": SYSTEM, "value": "D2"}]

    async def scenario() -> list[tuple[bool, bool, int]]:
        async with _repository(clean_database) as repo:
            await repo.create(factories.observation(subject="Patient/p1", identifier=both))
            return _flags(
                await repo.conditional_update_many(
                    "Observation", [_result("D1", 5), _result("D2", 6)]
                )
            )

    assert asyncio.run(scenario()) == [(False, True, 2), (True, True, 1)]
    stored = _stored(clean_database)["resources"]
    assert stored["D1"]["content"]["identifier"] == [both[0]]
    assert stored["D2"]["content"]["valueQuantity"]["value"] == 6


@pytest.mark.parametrize("number", ["L1", "a,b|c"])  # the token lookup, and the search
def test_a_locked_find_holds_the_conditional_writes_lock_to_the_end(
    clean_database: str, number: str
) -> None:
    """Found under the criteria lock: another transaction's conditional write on that
    identifier waits until this one ends (a create after none found is then the
    conditional create)."""
    from maillage.fhir.matching import criteria_lock_key, identifier_criteria

    key = criteria_lock_key("Observation", identifier_criteria(SYSTEM, number))

    def taken_elsewhere() -> bool:
        with psycopg.connect(clean_database, autocommit=True) as other:
            row = other.execute("SELECT pg_try_advisory_xact_lock(%s)", (key,)).fetchone()
        return not (row and row[0])

    async def scenario() -> tuple[bool, bool, bool]:
        async with _repository(clean_database) as repo, repo.atomic() as bound:
            plain = await bound.find_identified("Observation", SYSTEM, number)
            before = taken_elsewhere()
            locked = await bound.find_identified("Observation", SYSTEM, number, lock=True)
            during = taken_elsewhere()
            assert plain == locked == []
        return before, during, taken_elsewhere()

    assert asyncio.run(scenario()) == (False, True, False)
