"""Schema migrations: applied once, in order, recorded."""

from __future__ import annotations

import re

import psycopg

from maillage.fhir.definitions import official_params
from maillage.storage import available_migrations, current_version, upgrade
from tests.conftest import fresh_database


def test_migrations_are_numbered_without_gaps() -> None:
    versions = [migration.version for migration in available_migrations()]
    assert versions == list(range(1, len(versions) + 1))


def test_upgrade_is_idempotent_and_records_the_version(database_url: str) -> None:
    assert upgrade(database_url) == []  # the fixture already applied everything
    assert current_version(database_url) == available_migrations()[-1].version
    with psycopg.connect(database_url) as conn:
        tables = {
            row[0]
            for row in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
            )
        }
    assert {"resource", "resource_version", "sp_token", "sp_reference"} <= tables


def _shared_rows_migration() -> str:
    found = [m for m in available_migrations() if m.name == "shared_reference_rows"]
    assert len(found) == 1
    return found[0].sql


def test_the_shared_reference_rows_migration_names_the_official_pairs() -> None:
    """0014 deletes the rows of the parameters read from another's rows: its list must be
    the one the definitions compute, or a search would miss rows (or keep dead ones)."""
    listed = set(
        re.findall(r"\('(\w+)', '([\w-]+)', '([\w-]+)', '(\w+)'\)", _shared_rows_migration())
    )
    computed = {
        (resource_type, code, *param.rows_of)
        for resource_type, params in official_params().items()
        for code, param in params.items()
        if param.rows_of is not None
    }
    assert ("Observation", "patient", "subject", "Patient") in computed
    assert listed == computed


def test_the_shared_reference_rows_migration_keeps_what_searches_read(
    server_url: str,
) -> None:
    """On rows written before 0014: the copies go, and an identifier row of the kept
    parameter gets the type the copy proved (``patient:identifier`` reads it)."""
    with fresh_database(server_url, "maillage_0014") as url, psycopg.connect(url) as conn:
        rows = [
            (1, "Observation", "subject", "Patient", "p1", None),
            (1, "Observation", "patient", "Patient", "p1", None),
            (1, "Observation", "subject", None, None, "urn:sys|42"),
            (1, "Observation", "patient", None, None, "urn:sys|42"),
            (2, "Observation", "subject", None, None, "urn:sys|43"),  # to a Group
            (3, "Encounter", "participant", "Practitioner", "d1", None),
            (3, "Encounter", "practitioner", "Practitioner", "d1", None),
            (4, "Condition", "asserter", "Practitioner", "d1", None),
        ]
        with conn.cursor() as cursor:
            cursor.executemany(
                "INSERT INTO sp_reference (rid, resource_type, param, target_type, target_id,"
                " target_url) VALUES (%s, %s, %s, %s, %s, %s)",
                rows,
            )
        conn.execute(_shared_rows_migration().encode())
        kept = set(
            conn.execute(
                "SELECT rid, resource_type, param, target_type, target_id, target_url"
                " FROM sp_reference"
            ).fetchall()
        )
    assert kept == {
        (1, "Observation", "subject", "Patient", "p1", None),
        (1, "Observation", "subject", "Patient", None, "urn:sys|42"),
        (2, "Observation", "subject", None, None, "urn:sys|43"),
        (3, "Encounter", "participant", "Practitioner", "d1", None),
        (4, "Condition", "asserter", "Practitioner", "d1", None),
    }
