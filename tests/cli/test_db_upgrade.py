"""`maillage db upgrade` against a PostgreSQL named by MAILLAGE_DATABASE_URL."""

from __future__ import annotations

import uuid

import psycopg
from typer.testing import CliRunner

from maillage.cli.main import app
from maillage.storage import available_migrations


def test_db_upgrade_creates_the_schema_in_an_empty_database(server_url: str) -> None:
    name = f"maillage_cli_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    params = psycopg.conninfo.conninfo_to_dict(server_url)
    params["dbname"] = name
    url = psycopg.conninfo.make_conninfo("", **params)
    try:
        runner = CliRunner()
        first = runner.invoke(app, ["db", "upgrade"], env={"MAILLAGE_DATABASE_URL": url})
        assert first.exit_code == 0, first.output
        latest = available_migrations()[-1].version
        assert f"applied {latest} migration(s); schema at version {latest}" in first.output
        again = runner.invoke(app, ["db", "upgrade"], env={"MAILLAGE_DATABASE_URL": url})
        assert again.exit_code == 0
        assert "applied 0 migration(s)" in again.output
    finally:
        with psycopg.connect(server_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_load_of_a_missing_path_says_what_to_fix(database_url: str) -> None:
    result = CliRunner().invoke(
        app, ["load", "/nonexistent/file.ndjson"], env={"MAILLAGE_DATABASE_URL": database_url}
    )
    assert result.exit_code == 2
    assert "does not exist" in result.output
