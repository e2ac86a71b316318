"""Keeping the stored blocking keys in step with the rules.

``mpi_source.blocking`` holds each filed identity's keys, made by
``identity.blocking.blocking_keys`` when it was filed; ``mpi_blocking_rules`` says with
which rules. When the rules the hub runs on differ (an upgrade changed them), every
source's keys are recomputed from its stored traits before the hub serves: otherwise a
new identity would never meet the ones filed before. Run at start-up, once, under an
advisory lock (several processes may start together); about a minute per million
identities, logged with its progress.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

import orjson
import psycopg

from maillage.identity.blocking import DEFAULT_BLOCKING, blocking_keys
from maillage.identity.normalize import prepare

log = logging.getLogger(__name__)

_REKEY_LOCK = 0x4D504B59  # "MPKY"
BATCH = 5000


def stored_rules(conn: psycopg.Connection) -> tuple[str, ...] | None:
    row = conn.execute("SELECT rules FROM mpi_blocking_rules").fetchone()
    return tuple(row[0]) if row else None


def record_rules(conn: psycopg.Connection, rules: Sequence[str]) -> None:
    """Say the stored keys are made with ``rules`` (after filing them so)."""
    conn.execute(
        "INSERT INTO mpi_blocking_rules (rules) VALUES (%s) ON CONFLICT (singleton)"
        " DO UPDATE SET rules = EXCLUDED.rules, updated_at = now()",
        (list(rules),),
    )


def ensure_blocking_keys(conninfo: str, rules: Sequence[str] = DEFAULT_BLOCKING) -> int:
    """Recompute the stored keys if they were made with other rules; the number of
    source identities rekeyed (0: nothing to do)."""
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (_REKEY_LOCK,))
        try:
            if stored_rules(conn) == tuple(rules):
                return 0
            return _rekey(conn, rules)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_REKEY_LOCK,))


def _rekey(conn: psycopg.Connection, rules: Sequence[str]) -> int:
    total = conn.execute("SELECT count(*) FROM mpi_source").fetchone()
    log.warning(
        "the patient index's blocking rules changed: recomputing the keys of %d source identities",
        total[0] if total else 0,
    )
    started = time.monotonic()
    done = 0
    after = ""
    # One transaction: a stopped rekey leaves the old keys and the old rules, and the
    # next start does it again.
    with conn.transaction():
        while True:
            rows = conn.execute(
                "SELECT patient_id, traits FROM mpi_source WHERE patient_id > %s"
                " ORDER BY patient_id LIMIT %s",
                (after, BATCH),
            ).fetchall()
            if not rows:
                break
            keyed = [
                {"patient_id": patient_id, "blocking": blocking_keys(_traits(traits), rules)}
                for patient_id, traits in rows
            ]
            conn.execute(
                "UPDATE mpi_source s SET blocking = v.blocking FROM jsonb_to_recordset(%s::jsonb)"
                " AS v(patient_id text, blocking text[]) WHERE s.patient_id = v.patient_id",
                (orjson.dumps(keyed).decode(),),
            )
            done += len(rows)
            after = rows[-1][0]
            if done % (BATCH * 20) == 0:
                log.info("blocking keys: %d source identities rekeyed", done)
        record_rules(conn, rules)
    log.warning(
        "blocking keys of %d source identities recomputed in %.1f s",
        done,
        time.monotonic() - started,
    )
    return done


_EMPTY = prepare({})


def _traits(value: Any) -> dict[str, Any]:
    """A stored prepared record (jsonb: a dict, or its text on a pool that loads text),
    with every field a key may read (a record prepared by an older version may lack one)."""
    return {**_EMPTY, **(orjson.loads(value) if isinstance(value, str | bytes) else value)}
