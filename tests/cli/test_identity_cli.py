"""`maillage identity train|dedupe|evaluate` against the test database."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import psycopg
from typer.testing import CliRunner

from maillage.cli.main import app
from maillage.loading.service import BulkLoader
from tests.factories import source_identity

SURNAMES = ["Martin", "Bernard", "Thomas", "Petit", "Robert", "Richard", "Durand", "Dubois"]
GIVEN = ["Camille", "Louis", "Anne", "Jean", "Marie", "Paul", "Léa", "Hugo"]


def _people(count: int) -> list[dict]:
    out = []
    for person in range(count):
        for copy in range(2 if person % 3 == 0 else 1):
            body = source_identity(
                site=copy,
                birth_name=SURNAMES[person % 8],
                given=(GIVEN[(person // 8) % 8],),
                birth_date=f"19{50 + person % 50:02d}-{1 + person % 12:02d}-{1 + person % 28:02d}",
            )
            body["id"] = f"p{person:04d}-{copy}"
            out.append(body)
    return out


def env(url: str, tmp_path: Path) -> dict[str, str]:
    return {
        "MAILLAGE_DATABASE_URL": url,
        "MAILLAGE_IDENTITY_MODEL_FILE": str(tmp_path / "model.json"),
    }


def _dedupe(url: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "maillage", "identity", "dedupe"],
        env={**os.environ, **env(url, tmp_path)},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_train_refuses_too_few_identities(clean_database: str, tmp_path: Path) -> None:
    BulkLoader(clean_database, workers=1).load_resources(_people(3))
    result = CliRunner().invoke(app, ["identity", "train"], env=env(clean_database, tmp_path))
    assert result.exit_code != 0
    assert "training needs at least" in result.output
    assert not (tmp_path / "model.json").exists()


def test_train_dedupe_evaluate(clean_database: str, tmp_path: Path) -> None:
    people = _people(120)
    BulkLoader(clean_database, workers=1).load_resources(people)
    runner = CliRunner()
    trained = runner.invoke(
        app, ["identity", "train", "--u-pairs", "20000"], env=env(clean_database, tmp_path)
    )
    assert trained.exit_code == 0, trained.output
    assert "m=" in trained.output and "auto-link at" in trained.output
    assert json.loads((tmp_path / "model.json").read_text())["comparisons"]

    # in a process of its own, as it is run: the dedupe forks its workers, and a fork of
    # this process (its hubs' threads, the training's DuckDB threads) may not survive
    deduped = _dedupe(clean_database, tmp_path)
    assert deduped.returncode == 0, deduped.stdout + deduped.stderr
    assert f"filed {len(people)}" in deduped.stdout
    again = _dedupe(clean_database, tmp_path)
    assert again.returncode == 0 and "filed 0" in again.stdout, again.stdout + again.stderr
    with psycopg.connect(clean_database) as conn:
        row = conn.execute("SELECT count(*) FROM mpi_source").fetchone()
    assert row == (len(people),)

    truth = tmp_path / "truth.csv"
    lines = ["id,person"] + [f"Patient/{p['id']},{p['id'].split('-')[0]}" for p in people]
    truth.write_text("\n".join(lines) + "\n")
    scored = runner.invoke(
        app,
        ["identity", "evaluate", str(truth), "--id-column", "id", "--truth-column", "person"],
        env=env(clean_database, tmp_path),
    )
    assert scored.exit_code == 0, scored.output
    assert "precision" in scored.output and "f1" in scored.output

    bad = runner.invoke(
        app,
        ["identity", "evaluate", str(truth), "--id-column", "nope", "--truth-column", "person"],
        env=env(clean_database, tmp_path),
    )
    assert bad.exit_code != 0
    assert "nope" in bad.output
    missing = runner.invoke(
        app,
        [
            "identity",
            "evaluate",
            str(tmp_path / "none.csv"),
            "--id-column",
            "id",
            "--truth-column",
            "person",
        ],
        env=env(clean_database, tmp_path),
    )
    assert missing.exit_code != 0
