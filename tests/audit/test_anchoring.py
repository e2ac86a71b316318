"""The chain's head kept outside the database: ``maillage audit anchor`` and
``verify --anchor-file`` catch what the chain alone cannot (rows cut at the end), and the
hub's publisher appends the head when it moved."""

from __future__ import annotations

import asyncio
from pathlib import Path

from typer.testing import CliRunner

from maillage.audit import AuditTrail
from maillage.audit.anchoring import AnchorPublisher, last_anchor
from maillage.cli.main import app

from .conftest import DOCTOR, fill, opened, tamper


def _invoke(database_url: str, *args: str):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(app, ["audit", *args], env={"MAILLAGE_DATABASE_URL": database_url})


def test_rows_cut_at_the_end_are_caught_against_the_anchor_only(
    clean_database: str, tmp_path: Path
) -> None:
    anchors = tmp_path / "audit-anchors.txt"
    fill(clean_database, 5)
    taken = _invoke(clean_database, "anchor", "--append", str(anchors))
    assert taken.exit_code == 0, taken.output
    seq, _ = last_anchor(anchors) or (0, b"")
    assert seq == 5
    assert taken.output.split()[0] == "5"
    ok = _invoke(clean_database, "verify", "--anchor-file", str(anchors))
    assert ok.exit_code == 0, ok.output
    assert "anchored row 5 matches" in ok.output

    tamper(clean_database, "DELETE FROM audit_event WHERE seq > 3")
    assert _invoke(clean_database, "verify").exit_code == 0  # the chain alone looks whole
    caught = _invoke(clean_database, "verify", "--anchor-file", str(anchors))
    assert caught.exit_code == 1, caught.output
    assert "rows were deleted at the end" in caught.output


def test_an_anchor_whose_row_changed_hash_is_a_break(clean_database: str) -> None:
    fill(clean_database, 3)
    line = _invoke(clean_database, "anchor").output.split()
    forged = f"{line[0]} {'0' * 64}"
    caught = _invoke(clean_database, "verify", "--anchor", forged)
    assert caught.exit_code == 1, caught.output
    assert "anchor" in caught.output


def test_a_bad_anchor_says_what_to_fix(clean_database: str, tmp_path: Path) -> None:
    bad = _invoke(clean_database, "verify", "--anchor", "five abc")
    assert bad.exit_code == 2, bad.output
    assert "'<row number> <sha-256 hex>'" in bad.output
    empty = _invoke(clean_database, "anchor")
    assert empty.exit_code == 2
    assert "nothing to anchor yet" in empty.output


def test_the_publisher_appends_the_head_when_it_moved(clean_database: str, tmp_path: Path) -> None:
    anchors = tmp_path / "anchors.txt"

    async def scenario() -> list[str | None]:
        async with opened(clean_database) as trail:
            publisher = AnchorPublisher(trail, anchors, interval_s=3600)
            published = [await publisher.publish()]  # nothing recorded yet
            await _read(trail, "o1")
            published.append(await publisher.publish())
            published.append(await publisher.publish())  # the head has not moved
            await _read(trail, "o2")
            published.append(await publisher.publish())
            return published

    first_none, first, unmoved, second = asyncio.run(scenario())
    assert first_none is None and unmoved is None
    assert first is not None and second is not None
    assert anchors.read_text().splitlines() == [first, second]
    assert int(second.split()[0]) == int(first.split()[0]) + 1


async def _read(trail: AuditTrail, observation: str) -> None:
    await trail.record(DOCTOR, "read", "Observation", [observation], ["p1"], wait=True)
