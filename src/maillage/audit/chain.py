"""The audit hash chain: canonical JSON, link hashes, and the verification walk. Pure.

Each row ``n`` of the audit table is hashed with the previous row's hash:

    hash_n = sha256(hash_{n-1} || canonical(record_n)),   hash_0 = GENESIS

where ``record_n`` is every column but the hashes (``seq``, ``recorded``, ``patient``,
``who``, ``action``, ``outcome``, ``body``) and ``canonical`` is JSON with sorted keys, no
spaces, UTF-8 (non-ASCII characters as themselves). Because the record carries its
sequence number and the previous hash, altering, deleting, reordering or inserting a row
breaks the chain at that row; the verification names the first such row and what is
wrong there. A superuser who rewrites the whole chain from the altered row onwards is
caught only against a head published elsewhere (``anchor``: a ``(seq, hash)`` taken
earlier), which also catches rows deleted at the end.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final

import orjson

GENESIS: Final = hashlib.sha256(b"maillage audit chain v1").digest()


def canonical(record: Any) -> bytes:
    """Sorted keys, no whitespace, UTF-8: the bytes that are hashed."""
    return orjson.dumps(record, option=orjson.OPT_SORT_KEYS)


def link_hash(prev_hash: bytes, record: Any) -> bytes:
    return hashlib.sha256(prev_hash + canonical(record)).digest()


def recorded_text(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True, slots=True)
class ChainRow:
    """One row of the audit table as stored."""

    seq: int
    recorded: dt.datetime
    patient_id: str | None
    who: str
    action: str
    outcome: int
    body: dict[str, Any]
    prev_hash: bytes
    hash: bytes

    def record(self) -> dict[str, Any]:
        return record_of(
            self.seq,
            self.recorded,
            self.patient_id,
            self.who,
            self.action,
            self.outcome,
            self.body,
        )


def record_of(
    seq: int,
    recorded: dt.datetime,
    patient_id: str | None,
    who: str,
    action: str,
    outcome: int,
    body: dict[str, Any],
) -> dict[str, Any]:
    return {
        "seq": seq,
        "recorded": recorded_text(recorded),
        "patient": patient_id,
        "who": who,
        "action": action,
        "outcome": outcome,
        "body": body,
    }


class Problem(StrEnum):
    ALTERED_BODY = "altered-body"
    ALTERED_HASH = "altered-hash"
    ALTERED = "altered"
    DELETED = "deleted"
    REORDERED = "reordered"
    INSERTED = "inserted"
    BROKEN_LINK = "broken-link"
    ANCHOR = "anchor"


@dataclass(frozen=True)
class Break:
    """The first broken link: the row's sequence number and what is wrong there."""

    seq: int
    problem: Problem
    detail: str


@dataclass
class _Suspect:
    row: ChainRow
    recomputed: bytes
    bad_link: bool


class Verifier:
    """Fed the rows in sequence order, stops at the first break. A row whose link or
    content is wrong is classified with the next row (one row of look-ahead): whether
    the next row still links to the row's original hash (its hash was altered) or to its
    stored hash (its content was altered), to the row before it (rows swapped, or a row
    inserted)."""

    def __init__(self, *, genesis: bytes = GENESIS, anchor: tuple[int, bytes] | None = None):
        self.checked = 0
        self.broken: Break | None = None
        self.last_seq = 0
        self._anchor = anchor
        self._next_seq = 1
        self._prev_hash = genesis
        self._prev2_hash: bytes | None = None
        self._suspect: _Suspect | None = None

    def feed(self, row: ChainRow) -> Break | None:
        if self.broken is not None:
            return self.broken
        if self._suspect is not None:
            self.broken = self._classify(self._suspect, row)
            return self.broken
        if row.seq != self._next_seq:
            if row.seq > self._next_seq:
                missing = (
                    f"row {self._next_seq} is"
                    if row.seq == self._next_seq + 1
                    else f"rows {self._next_seq} to {row.seq - 1} are"
                )
                self.broken = Break(
                    self._next_seq,
                    Problem.DELETED,
                    f"{missing} missing (deleted): row {row.seq} follows row {self._next_seq - 1}",
                )
            else:
                self.broken = Break(
                    row.seq, Problem.REORDERED, f"row {row.seq} comes after row {self.last_seq}"
                )
            return self.broken
        recomputed = link_hash(row.prev_hash, row.record())
        bad_link = row.prev_hash != self._prev_hash
        if bad_link or recomputed != row.hash:
            self._suspect = _Suspect(row, recomputed, bad_link)
            return None
        self._accept(row)
        return None

    def finish(self) -> Break | None:
        """The verdict once every row was fed (None: intact)."""
        if self.broken is None and self._suspect is not None:
            self.broken = self._classify(self._suspect, None)
        if self.broken is None and self._anchor is not None and self._anchor[0] > self.last_seq:
            self.broken = Break(
                self.last_seq + 1,
                Problem.ANCHOR,
                f"the chain ends at row {self.last_seq}, before the anchored head row "
                f"{self._anchor[0]}: rows were deleted at the end",
            )
        return self.broken

    def _accept(self, row: ChainRow) -> None:
        if self._anchor is not None and row.seq == self._anchor[0] and row.hash != self._anchor[1]:
            self.broken = Break(
                row.seq,
                Problem.ANCHOR,
                f"row {row.seq}'s hash is not the anchored head's: the chain was rewritten "
                "up to here",
            )
            return
        self.checked += 1
        self.last_seq = row.seq
        self._next_seq = row.seq + 1
        self._prev2_hash = self._prev_hash
        self._prev_hash = row.hash

    def _classify(self, suspect: _Suspect, following: ChainRow | None) -> Break:
        row = suspect.row
        seq = row.seq
        if suspect.bad_link:
            if row.prev_hash == self._prev2_hash:
                return Break(
                    seq - 1,
                    Problem.INSERTED,
                    f"row {seq} links to row {seq - 2}: row {seq - 1} was inserted (forged)",
                )
            if following is not None and following.prev_hash == self._prev_hash:
                return Break(
                    seq,
                    Problem.REORDERED,
                    f"rows {seq} and {following.seq} are out of order: row {following.seq} "
                    f"links to row {seq - 1}",
                )
            return Break(
                seq,
                Problem.BROKEN_LINK,
                f"row {seq} does not link to row {seq - 1} (its prev_hash differs): a row "
                "was inserted, deleted or moved here and the rest renumbered",
            )
        if following is not None and following.prev_hash == suspect.recomputed:
            return Break(
                seq,
                Problem.ALTERED_HASH,
                f"row {seq}'s hash was altered: its content still matches the hash row "
                f"{following.seq} links to",
            )
        if following is not None and following.prev_hash == row.hash:
            return Break(
                seq,
                Problem.ALTERED_BODY,
                f"row {seq} was altered: its content no longer matches its hash",
            )
        where = "it is the last row" if following is None else "nor does the next row link to it"
        return Break(
            seq,
            Problem.ALTERED,
            f"row {seq}'s content does not match its hash ({where}): altered or forged",
        )
