"""The hash chain: canonical form, and every kind of tampering caught by ``verify`` —
done as an attacker would, with a superuser connection disabling the trigger."""

from __future__ import annotations

import datetime as dt

import psycopg
import pytest

from maillage.audit import AuditTrail, Problem, VerifyReport
from maillage.audit.chain import GENESIS, ChainRow, Verifier, canonical, link_hash

from .conftest import fill, run, tamper


def test_canonical_json_sorts_keys_without_spaces() -> None:
    assert (
        canonical({"b": 1, "a": {"d": "é", "c": [1, 2]}})
        == '{"a":{"c":[1,2],"d":"é"},"b":1}'.encode()
    )


def _rows(count: int) -> list[ChainRow]:
    rows, prev = [], GENESIS
    for seq in range(1, count + 1):
        row = ChainRow(seq, dt.datetime(2026, 1, 1, tzinfo=dt.UTC), f"p{seq}", "u", "R", 0,
                       {"n": seq}, prev, b"")  # fmt: skip
        digest = link_hash(prev, row.record())
        rows.append(_with(row, digest))
        prev = digest
    return rows


def _with(row: ChainRow, digest: bytes) -> ChainRow:
    return ChainRow(row.seq, row.recorded, row.patient_id, row.who, row.action, row.outcome,
                    row.body, row.prev_hash, digest)  # fmt: skip


def _verify(rows: list[ChainRow], **options: object) -> Verifier:
    verifier = Verifier(**options)  # type: ignore[arg-type]
    for row in rows:
        if verifier.feed(row) is not None:
            break
    verifier.finish()
    return verifier


def test_an_intact_chain_and_the_anchor() -> None:
    rows = _rows(5)
    assert _verify(rows).broken is None
    assert _verify(rows, anchor=(5, rows[-1].hash)).broken is None
    truncated = _verify(rows[:3], anchor=(5, rows[-1].hash)).broken
    assert truncated is not None and truncated.problem is Problem.ANCHOR
    # the whole chain recomputed by an attacker from row 2: only the anchor sees it
    forged = rows[:1]
    for row in rows[1:]:
        body = {"n": row.seq, "forged": True}
        prev = forged[-1].hash
        draft = ChainRow(row.seq, row.recorded, row.patient_id, row.who, row.action,
                         row.outcome, body, prev, b"")  # fmt: skip
        forged.append(_with(draft, link_hash(prev, draft.record())))
    assert _verify(forged).broken is None
    rewritten = _verify(forged, anchor=(5, rows[-1].hash)).broken
    assert rewritten is not None and (rewritten.seq, rewritten.problem) == (5, Problem.ANCHOR)


def test_an_altered_last_row() -> None:
    rows = _rows(3)
    rows[2] = _with(rows[2], b"x" * 32)
    broken = _verify(rows).broken
    assert broken is not None and (broken.seq, broken.problem) == (3, Problem.ALTERED)


# -- against the database ------------------------------------------------------------


def _report(database_url: str) -> VerifyReport:
    async def verify(trail: AuditTrail) -> VerifyReport:
        return await trail.verify()

    return run(database_url, verify)


@pytest.fixture
def chain(clean_database: str) -> str:
    fill(clean_database, 6)
    report = _report(clean_database)
    assert report.intact and report.checked == report.total == report.head_seq == 6
    return clean_database


def test_the_table_is_append_only(chain: str) -> None:
    with psycopg.connect(chain, autocommit=True) as conn:
        for statement in (
            "UPDATE audit_event SET who = 'x' WHERE seq = 2",
            "DELETE FROM audit_event WHERE seq = 2",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
                conn.execute(statement)


def test_an_altered_body(chain: str) -> None:
    tamper(
        chain, "UPDATE audit_event SET body = jsonb_set(body, '{action}', '\"C\"') WHERE seq = 3"
    )
    broken = _report(chain).broken
    assert broken is not None and (broken.seq, broken.problem) == (3, Problem.ALTERED_BODY)


def test_an_altered_column(chain: str) -> None:
    tamper(chain, "UPDATE audit_event SET who = 'Practitioner/someone-else' WHERE seq = 4")
    report = _report(chain)
    assert not report.intact and report.checked == 3
    assert report.broken is not None and report.broken.problem is Problem.ALTERED_BODY


def test_an_altered_hash(chain: str) -> None:
    tamper(chain, "UPDATE audit_event SET hash = sha256(hash) WHERE seq = 2")
    broken = _report(chain).broken
    assert broken is not None and (broken.seq, broken.problem) == (2, Problem.ALTERED_HASH)


def test_a_deleted_row(chain: str) -> None:
    tamper(chain, "DELETE FROM audit_event WHERE seq = 4")
    broken = _report(chain).broken
    assert broken is not None and (broken.seq, broken.problem) == (4, Problem.DELETED)
    assert "row 4 is missing" in broken.detail


def test_a_deleted_row_with_the_rest_renumbered(chain: str) -> None:
    tamper(chain, "DELETE FROM audit_event WHERE seq = 4")
    tamper(chain, "UPDATE audit_event SET seq = seq - 1 WHERE seq > 4")
    broken = _report(chain).broken
    assert broken is not None and (broken.seq, broken.problem) == (4, Problem.BROKEN_LINK)


def test_two_rows_reordered(chain: str) -> None:
    tamper(chain, "UPDATE audit_event SET seq = seq + 1000 WHERE seq IN (3, 4)")
    tamper(chain, "UPDATE audit_event SET seq = 1007 - seq WHERE seq > 1000")
    broken = _report(chain).broken
    assert broken is not None and (broken.seq, broken.problem) == (3, Problem.REORDERED)


def test_a_forged_row_inserted(chain: str) -> None:
    # the attacker renumbers rows 4.. and writes a row 4 that links to row 3, hashed right
    tamper(chain, "UPDATE audit_event SET seq = seq + 1000 WHERE seq >= 4")
    tamper(chain, "UPDATE audit_event SET seq = seq - 999 WHERE seq > 1000")
    with psycopg.connect(chain, autocommit=True) as conn:
        row = conn.execute(
            "SELECT seq, recorded, patient_id, who, action, outcome, body, prev_hash, hash"
            " FROM audit_event WHERE seq = 3"
        ).fetchone()
    assert row is not None
    forged = ChainRow(4, row[1], "p-forged", "Practitioner/nobody", "R", 0, {"forged": True},
                      bytes(row[8]), b"")  # fmt: skip
    digest = link_hash(forged.prev_hash, forged.record())
    tamper(
        chain,
        "INSERT INTO audit_event VALUES (4, %s, 'p-forged', 'Practitioner/nobody', 'R', 0,"
        " '{\"forged\": true}', %s, %s)",
        (row[1], forged.prev_hash, digest),
    )
    broken = _report(chain).broken
    assert broken is not None and (broken.seq, broken.problem) == (4, Problem.INSERTED)


def test_a_forged_row_appended_with_a_made_up_hash(chain: str) -> None:
    tamper(
        chain,
        "INSERT INTO audit_event SELECT 7, now(), 'p1', 'x', 'R', 0, '{}', hash, sha256('x')"
        " FROM audit_event WHERE seq = 6",
    )
    broken = _report(chain).broken
    assert broken is not None and (broken.seq, broken.problem) == (7, Problem.ALTERED)
