"""New versions that change some search parameters only (``prepare_changed``): the
patient index's ``refer`` links written in bulk."""

from __future__ import annotations

from typing import Any

import orjson
import psycopg
import pytest

from maillage.fhir.indexing.extractor import extract_index
from maillage.identity.golden import source_link
from maillage.loading import writer
from maillage.loading.prepare import prepare_changed
from maillage.loading.service import BulkLoader
from tests.factories import source_identity

LINK = frozenset({"link"})


def _index_rows(conn: psycopg.Connection, rid: int) -> set[tuple[Any, ...]]:
    rows: set[tuple[Any, ...]] = set()
    for table, columns in (
        ("sp_token", "param, system, code"),
        ("sp_string", "param, value_norm, value_exact"),
        ("sp_date", "param, low, high"),
        ("sp_reference", "param, target_type, target_id"),
    ):
        for row in conn.execute(f"SELECT {columns} FROM {table} WHERE rid = %s", (rid,)):
            rows.add((table, *row))
    return rows


def _write(conninfo: str, bodies: list[dict[str, Any]]) -> writer.ChunkResult:
    with psycopg.connect(conninfo) as conn:
        writer.create_staging(conn)
        with conn.transaction():
            return writer.write_chunk(conn, prepare_changed(bodies, LINK))


def test_a_changed_link_is_a_new_version_with_its_rows_replaced(clean_database: str) -> None:
    patient = source_identity(birth_name="Durand", given=("Lise",))
    patient["id"] = "src-1"
    BulkLoader(clean_database, workers=1).load_resources([patient])
    with psycopg.connect(clean_database) as conn:
        (rid,) = conn.execute("SELECT rid FROM resource WHERE id = 'src-1'").fetchone() or ()
        before = _index_rows(conn, rid)

    result = _write(clean_database, [source_link(patient, "terr-1")])

    assert (result.updated, result.created) == (1, 0)
    with psycopg.connect(clean_database) as conn:
        version, content = conn.execute(
            "SELECT version_id, content FROM resource WHERE id = 'src-1'"
        ).fetchone() or (None, None)
        archived = conn.execute(
            "SELECT version_id FROM resource_version WHERE id = 'src-1'"
        ).fetchall()
        after = _index_rows(conn, rid)
    body = orjson.loads(content) if isinstance(content, str | bytes) else content
    assert version == 2 and body["meta"]["versionId"] == "2" and archived == [(1,)]
    assert body["link"] == [{"other": {"reference": "Patient/terr-1"}, "type": "refer"}]
    # the other parameters' rows are kept as they were, the link's added
    assert after - before == {("sp_reference", "link", "Patient", "terr-1")}
    assert before <= after
    # and the whole is what a full extraction of the new version gives
    full = extract_index(body)
    expected = {
        *(("sp_token", p, s, c) for p, s, c, _, _ in full.token),
        *(("sp_string", *row) for row in full.string),
        *(("sp_date", *row) for row in full.date),
        *(("sp_reference", p, t, i) for p, t, i, _ in full.reference),
    }
    assert after == expected


def test_a_second_link_replaces_the_first(clean_database: str) -> None:
    patient = source_identity()
    patient["id"] = "src-2"
    BulkLoader(clean_database, workers=1).load_resources([patient])
    _write(clean_database, [source_link(patient, "terr-a")])
    _write(clean_database, [source_link(patient, "terr-b")])
    with psycopg.connect(clean_database) as conn:
        links = conn.execute(
            "SELECT target_id FROM sp_reference r JOIN resource x ON x.rid = r.rid"
            " WHERE x.id = 'src-2' AND r.param = 'link'"
        ).fetchall()
    assert links == [("terr-b",)]


def test_a_change_of_a_resource_not_stored_writes_nothing(clean_database: str) -> None:
    stray = source_identity()
    stray["id"] = "never-loaded"
    with pytest.raises(ValueError, match="not stored"):
        _write(clean_database, [source_link(stray, "terr-1")])
    with psycopg.connect(clean_database) as conn:
        assert conn.execute("SELECT count(*) FROM resource").fetchone() == (0,)
