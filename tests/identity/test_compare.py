"""Comparison levels (the Python classifier agrees with the SQL Splink trains on) and
blocking."""

from __future__ import annotations

import random
from typing import Any

import duckdb
import pytest

from maillage.identity.blocking import blocking_keys, candidate_pairs
from maillage.identity.compare import CATALOG
from maillage.identity.normalize import COLUMNS, LIST_COLUMNS, prepare
from tests.identity.synthetic import population, variant


def _pairs() -> list[tuple[dict[str, Any], dict[str, Any]]]:
    rng = random.Random(11)
    records, truth = population(300, 150, seed=3)
    prepared = [prepare(r) for r in records]
    pairs = [(prepared[i], prepared[j]) for i, j in truth]
    pairs += [(prepared[rng.randrange(300)], prepared[rng.randrange(300)]) for _ in range(300)]
    # more variants of variants, so that every level shows up
    for _ in range(300):
        source = records[rng.randrange(300)]
        pairs.append((prepare(source), prepare(variant(rng, variant(rng, source)))))
    pairs.append(
        (
            prepare({"birth_name": "Martin", "used_name": "Dubois"}),
            prepare({"birth_name": "Dubois"}),
        )
    )
    pairs.append(
        (
            prepare({"birth_name": "Martin", "first_name": "Paul"}),
            prepare({"birth_name": "Paul", "first_name": "Martin"}),
        )
    )
    pairs.append((prepare({"ins": "123456789012345"}), prepare({"ins": "123456789012354"})))
    return pairs


def _sql_value(record: dict[str, Any], column: str) -> Any:
    value = record[column]
    if column in LIST_COLUMNS:
        return list(value) if value else None
    return value if value not in ("", None) else None


@pytest.fixture(scope="module")
def pair_table() -> tuple[duckdb.DuckDBPyConnection, list[tuple[dict[str, Any], dict[str, Any]]]]:
    import pandas as pd

    pairs = _pairs()
    columns = [c for c in COLUMNS if c != "ins_qualified"]
    frame = pd.DataFrame(
        [
            {
                "n": n,
                **{
                    f"{c}_{side}": _sql_value(record, c)
                    for c in columns
                    for side, record in (("l", left), ("r", right))
                },
            }
            for n, (left, right) in enumerate(pairs)
        ]
    )
    connection = duckdb.connect()
    connection.register("pairs_frame", frame)
    connection.execute("CREATE TABLE pairs AS SELECT * FROM pairs_frame")
    return connection, pairs


@pytest.mark.parametrize("name", sorted(CATALOG))
def test_python_levels_agree_with_the_sql_splink_trains_on(
    name: str,
    pair_table: tuple[duckdb.DuckDBPyConnection, list[tuple[dict[str, Any], dict[str, Any]]]],
) -> None:
    comparison = CATALOG[name]
    connection, pairs = pair_table
    cases = " ".join(
        f"WHEN {sql} THEN {level}" for level, sql in enumerate(comparison.sql_conditions[:-1])
    )
    sql = (
        f"SELECT n, CASE WHEN {comparison.null_condition} THEN -1 {cases} "
        f"ELSE {len(comparison.levels) - 1} END FROM pairs ORDER BY n"
    )
    from_sql = dict(connection.execute(sql).fetchall())
    seen = set()
    for n, (left, right) in enumerate(pairs):
        level = comparison.level(left, right)
        seen.add(level)
        assert level == from_sql[n], (name, n)
    assert len(seen) >= 3  # the pairs exercise several levels, not just exact/missing


def test_married_name_and_swapped_names_meet_in_blocking() -> None:
    left = [
        prepare(
            {
                "birth_name": "Martin",
                "used_name": "Dubois",
                "first_name": "Anne",
                "birth_date": "1980-01-02",
            }
        )
    ]
    right = [
        prepare({"birth_name": "Dubois", "first_name": "Anne", "birth_date": "1980-02-01"}),
        prepare({"birth_name": "Anne", "first_name": "Martin", "birth_date": "1980-01-02"}),
        prepare({"birth_name": "Zola", "first_name": "Émile", "birth_date": "1840-04-02"}),
    ]
    assert candidate_pairs(left, right) == {(0, 0), (0, 1)}


def test_one_error_in_the_birth_date_still_meets() -> None:
    """A wrong year, month or day (with the names right), a wrong sex, or the names typed
    otherwise (with the date right): the same person is still compared. Two at once are
    not."""
    helene = {"birth_name": "Lefèvre", "first_name": "Hélène", "sex": "F"}
    filed = [prepare({**helene, "birth_date": "1962-07-23"})]
    typed = [
        prepare({**helene, "birth_name": "Lefevre", "birth_date": "1926-07-23"}),
        prepare({**helene, "birth_name": "LEFEVRE", "birth_date": "1962-01-23"}),
        prepare({**helene, "birth_date": "1962-07-28"}),
        prepare(
            {**helene, "birth_name": "Lfèvre", "first_name": "Élène", "birth_date": "1962-07-23"}
        ),
        prepare({**helene, "sex": "M", "birth_date": "1962-07-23"}),
        prepare({**helene, "birth_name": "Lfèvre", "birth_date": "1962-07-28"}),
        prepare({**helene, "birth_name": "Lfèvre", "sex": "M", "birth_date": "1962-07-23"}),
        prepare({**helene, "first_name": "Paul", "birth_date": "1963-02-11"}),
    ]
    assert candidate_pairs(filed, typed) == {(0, 0), (0, 1), (0, 2), (0, 3), (0, 4)}


def test_dedupe_pairs_are_ordered_and_unique() -> None:
    records = [
        prepare({"birth_name": "Petit", "first_name": "Léa", "birth_date": "2001-05-06"})
        for _ in range(4)
    ]
    pairs = candidate_pairs(records)
    assert pairs == {(a, b) for a in range(4) for b in range(4) if a < b}


def test_a_huge_block_is_skipped() -> None:
    records = [prepare({"birth_date": "1900-01-01"}) for _ in range(30)]
    assert candidate_pairs(records, max_block=10) == set()


def test_keys_carry_their_rule() -> None:
    marc = {"birth_name": "Dupont", "first_name": "Marc", "birth_date": "1975-06-07", "ins": "X"}
    keys = blocking_keys(prepare({**marc, "sex": "male"}))
    assert set(keys) == {
        "birth_date_sex:19750607|M",
        "first_last_date:dup|mar|0607",
        "name_year_month:dupo|197506",
        "name_year_day:dupo|197507",
        "ins:X",
    }
    # an unknown sex is filed under both
    unknown = blocking_keys(prepare(marc))
    assert {"birth_date_sex:19750607|M", "birth_date_sex:19750607|F"} <= set(unknown)
