"""Schema migrations: applied once, in order, recorded."""

from __future__ import annotations

import psycopg

from maillage.storage import available_migrations, current_version, upgrade


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
