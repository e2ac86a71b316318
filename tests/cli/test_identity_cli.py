"""`maillage identity train|dedupe|evaluate` against the test database."""

from __future__ import annotations

import json
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

    deduped = runner.invoke(app, ["identity", "dedupe"], env=env(clean_database, tmp_path))
    assert deduped.exit_code == 0, deduped.output
    assert f"filed {len(people)}" in deduped.output
    again = runner.invoke(app, ["identity", "dedupe"], env=env(clean_database, tmp_path))
    assert "filed 0" in again.output
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
