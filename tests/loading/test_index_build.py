"""Search indexes set aside by a large load and built once at its end: the store ends
exactly as a row-by-row load leaves it, and an interrupted load loses no index."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import psycopg
import pytest
from typer.testing import CliRunner

from maillage.cli.main import app
from maillage.loading.prepare import INDEX_COLUMNS
from maillage.loading.service import BulkLoader
from maillage.storage import deferred_indexes, prepare_database
from tests.conftest import empty_tables
from tests.loading.conftest import SMALL_TERRITORY, SYNTHEA_10, read_ndjson

SEARCH_TABLES = list(INDEX_COLUMNS)


def _secondary_indexes(conninfo: str) -> dict[str, str]:
    with psycopg.connect(conninfo) as conn:
        rows = conn.execute(
            "SELECT indexname, indexdef FROM pg_indexes"
            " WHERE schemaname = current_schema() AND tablename = ANY(%s)",
            (SEARCH_TABLES,),
        ).fetchall()
    return {str(name): str(definition) for name, definition in rows}


def _index_rows(conninfo: str) -> dict[str, int]:
    with psycopg.connect(conninfo) as conn:
        return {
            table: int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])  # type: ignore[index]
            for table in SEARCH_TABLES
        }


@pytest.fixture
def indexes_restored(clean_database: str) -> Iterator[dict[str, str]]:
    """The search tables' indexes as the migrations made them; rebuilt after the test
    whatever it did, so that no other test runs without them."""
    before = _secondary_indexes(clean_database)
    yield before
    deferred_indexes.build(clean_database)
    assert _secondary_indexes(clean_database) == before


def test_a_load_building_indexes_after_ends_like_a_row_by_row_load(
    http: httpx.Client, clean_database: str, indexes_restored: dict[str, str]
) -> None:
    row_by_row = BulkLoader(clean_database, index_build="during").load_paths([SYNTHEA_10])
    rows_row_by_row = _index_rows(clean_database)
    assert not row_by_row.indexes_built_after
    with psycopg.connect(clean_database, autocommit=True) as conn:
        empty_tables(conn)

    report = BulkLoader(clean_database, index_build="after").load_paths([SYNTHEA_10])

    assert report.rejected == [] and report.created == row_by_row.created > 7000
    assert report.indexes_built_after and report.index_build_seconds > 0
    assert _secondary_indexes(clean_database) == indexes_restored
    assert _index_rows(clean_database) == rows_row_by_row
    with psycopg.connect(clean_database) as conn:
        assert deferred_indexes.pending(conn) == []
    encounters = read_ndjson(SYNTHEA_10 / "Encounter.000.ndjson")
    subject = encounters[0]["subject"]["reference"]
    expected = sum(1 for encounter in encounters if encounter["subject"]["reference"] == subject)
    found = http.get("/Encounter", params={"subject": subject, "_count": "1000"}).json()
    assert len(found["entry"]) == expected


def test_a_small_load_keeps_building_indexes_row_by_row(
    clean_database: str, indexes_restored: dict[str, str]
) -> None:
    report = BulkLoader(clean_database).load_paths([SMALL_TERRITORY])

    assert report.created == 7
    assert not report.indexes_built_after
    assert _secondary_indexes(clean_database) == indexes_restored


def test_indexes_an_interrupted_load_set_aside_are_built_at_the_next_start(
    http: httpx.Client, clean_database: str, indexes_restored: dict[str, str]
) -> None:
    BulkLoader(clean_database).load_paths([SMALL_TERRITORY])
    patient = next(r for r in read_ndjson(SMALL_TERRITORY) if r["resourceType"] == "Patient")
    family = patient["name"][0]["family"]
    with psycopg.connect(clean_database) as conn:
        set_aside = deferred_indexes.defer(conn, SEARCH_TABLES)
        recorded = deferred_indexes.pending(conn)

    assert sorted(set_aside) == sorted(indexes_restored) == recorded
    assert _secondary_indexes(clean_database) == {}
    # Searches stay correct without the indexes, only slower.
    found = http.get("/Patient", params={"family": family}).json()
    assert patient["id"] in {entry["resource"]["id"] for entry in found["entry"]}

    prepare_database(clean_database)  # what `maillage serve` and `maillage load` run first

    assert _secondary_indexes(clean_database) == indexes_restored
    with psycopg.connect(clean_database) as conn:
        assert deferred_indexes.pending(conn) == []


def test_a_build_interrupted_after_an_index_was_made_only_unrecords_it(
    clean_database: str, indexes_restored: dict[str, str]
) -> None:
    name, definition = next(iter(sorted(indexes_restored.items())))
    with psycopg.connect(clean_database) as conn:
        conn.execute(
            "INSERT INTO deferred_index (name, table_name, definition) VALUES (%s, %s, %s)",
            (name, "sp_date", definition),
        )
        conn.commit()

    assert deferred_indexes.build(clean_database) == [name]

    assert _secondary_indexes(clean_database) == indexes_restored
    with psycopg.connect(clean_database) as conn:
        assert deferred_indexes.pending(conn) == []


def test_the_cli_names_the_index_build_choices_when_given_another(clean_database: str) -> None:
    result = CliRunner().invoke(
        app,
        ["load", "--index-build", "sometimes", str(SMALL_TERRITORY)],
        env={"MAILLAGE_DATABASE_URL": clean_database},
    )

    assert result.exit_code == 2
    assert "--index-build 'sometimes'" in result.output
    assert "auto, during, after" in result.output
