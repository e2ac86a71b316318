"""``maillage audit verify`` and ``maillage audit report`` through Typer's runner."""

from __future__ import annotations

from typer.testing import CliRunner

from maillage.cli.main import app

from .conftest import DOCTOR, fill, run, tamper


def _invoke(database_url: str, *args: str):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(app, ["audit", *args], env={"MAILLAGE_DATABASE_URL": database_url})


def test_verify_intact_then_broken(clean_database: str) -> None:
    fill(clean_database, 5)
    intact = _invoke(clean_database, "verify")
    assert intact.exit_code == 0, intact.output
    assert "intact: 5 events" in intact.output
    tamper(clean_database, "DELETE FROM audit_event WHERE seq = 2")
    broken = _invoke(clean_database, "verify")
    assert broken.exit_code == 1, broken.output
    assert "broken at row 2 (deleted)" in broken.output


def test_report_for_a_patient(clean_database: str) -> None:
    async def accesses(trail) -> None:  # type: ignore[no-untyped-def]
        await trail.record(DOCTOR, "read", "Observation", ["o1"], ["p7"])

    run(clean_database, accesses)
    result = _invoke(clean_database, "report", "--patient", "p7", "--since", "2000-01-01")
    assert result.exit_code == 0, result.output
    assert "Practitioner/dr-martin" in result.output and "Observation/o1" in result.output
    assert "physician" in result.output and "chu-nord" in result.output
    assert "Accesses to the record of Patient/p7: 1" in result.output
