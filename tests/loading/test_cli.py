"""`maillage load PATH...`: summary, exit codes 0 / 1 / 2, --strict."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from maillage.cli.main import app
from tests.loading.conftest import REPO, SMALL_TERRITORY, scalar, write_ndjson


def _load(database: str, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["load", *args], env={"MAILLAGE_DATABASE_URL": database})
    return result.exit_code, result.output


def test_a_clean_load_exits_0_with_a_summary(clean_database: str) -> None:
    code, output = _load(clean_database, str(SMALL_TERRITORY))

    assert code == 0, output
    assert "files: 1" in output
    assert "loaded: 7 (created 7, updated 0)" in output
    assert "unchanged: 0" in output and "rejected: 0" in output
    assert "resources/s" in output

    code, output = _load(clean_database, str(SMALL_TERRITORY))
    assert code == 0
    assert "loaded: 0" in output and "unchanged: 7" in output


def test_rejected_lines_exit_1_and_are_listed_with_file_and_line(
    clean_database: str, tmp_path: Path
) -> None:
    source = write_ndjson(
        tmp_path / "some-bad.ndjson",
        [
            {"resourceType": "Patient", "id": "a"},
            "{not json",
            {"resourceType": "Patient", "id": "b"},
        ],
    )

    code, output = _load(clean_database, str(source))

    assert code == 1, output
    assert f"{source}:2" in output
    assert "rejected: 1" in output
    assert "1 line(s) were rejected" in output
    assert scalar(clean_database, "SELECT count(*) FROM resource") == 2


def test_strict_exits_non_zero_and_stores_nothing_of_the_bad_chunk(
    clean_database: str, tmp_path: Path
) -> None:
    source = write_ndjson(
        tmp_path / "strict.ndjson",
        [{"resourceType": "Patient", "id": "a"}, {"resourceType": "Patient", "birthDate": "x"}],
    )

    code, output = _load(clean_database, "--strict", str(source))

    assert code != 0
    assert "stopped" in output and f"{source}:2" in output
    assert scalar(clean_database, "SELECT count(*) FROM resource") == 0


def test_a_file_that_is_not_fhir_input_is_a_usage_error(
    clean_database: str, tmp_path: Path
) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("hello")

    code, output = _load(clean_database, str(notes))

    assert code == 2
    assert "not an NDJSON" in output


def test_the_installed_command_loads_a_folder(clean_database: str, tmp_path: Path) -> None:
    folder = tmp_path / "export"
    folder.mkdir()
    (folder / "Resources.ndjson").write_bytes(SMALL_TERRITORY.read_bytes())
    env = {**os.environ, "MAILLAGE_DATABASE_URL": clean_database}

    finished = subprocess.run(
        [sys.executable, "-m", "maillage", "load", str(folder)],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert finished.returncode == 0, finished.stderr
    assert "loaded: 7" in finished.stdout
    assert scalar(clean_database, "SELECT count(*) FROM resource") == 7


def test_no_index_loads_and_says_searches_need_a_reindex(clean_database: str) -> None:
    code, output = _load(clean_database, "--no-index", str(SMALL_TERRITORY))

    assert code == 0, output
    assert "loaded: 7" in output
    assert "maillage reindex" in output
    assert scalar(clean_database, "SELECT count(*) FROM sp_token") == 0
