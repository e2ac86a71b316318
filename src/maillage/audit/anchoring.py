"""The audit chain's head, published outside the database.

The chain catches any altered, removed or reordered row, except one case: someone able
to rewrite the table rewrites every hash from the altered row on, or deletes the last
rows. A head ``(seq, hash)`` kept where that person cannot write catches both: the row
``seq`` must still carry that hash (``chain.Verifier``'s anchor). The hub appends its
head, when it moved, to ``MAILLAGE_AUDIT_ANCHOR_FILE`` (put it where the database's
administrators cannot rewrite it: another host's mount, a write-once store, the log
collector) every ``MAILLAGE_AUDIT_ANCHOR_INTERVAL_S`` and logs the same line;
``maillage audit anchor`` does it on demand, and ``maillage audit verify --anchor-file``
checks the chain against the file's last line.

A line: ``<seq> <sha-256 hex> <UTC time>``. No patient data: a row number and a hash.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from pathlib import Path

from maillage.audit.service import AuditTrail
from maillage.errors import ConfigurationError
from maillage.jobs.periodic import Periodic

log = logging.getLogger(__name__)


def anchor_line(seq: int, head_hash: bytes, moment: dt.datetime) -> str:
    return f"{seq} {head_hash.hex()} {moment.astimezone(dt.UTC).isoformat(timespec='seconds')}"


def parse_anchor(text: str, where: str = "the anchor") -> tuple[int, bytes]:
    """``seq hash`` (what follows is ignored); a bad one says what to fix."""
    parts = text.split()
    try:
        seq, hashed = int(parts[0]), bytes.fromhex(parts[1])
    except (IndexError, ValueError):
        raise ConfigurationError(
            f"{where}: {text.strip()!r} is not '<row number> <sha-256 hex>'"
        ) from None
    if seq < 1 or len(hashed) != 32:
        raise ConfigurationError(f"{where}: a row number >= 1 and a 64-digit hex hash")
    return seq, hashed


def last_anchor(path: Path) -> tuple[int, bytes] | None:
    """The file's last anchor (the latest covers every row before it), None if empty."""
    try:
        lines = [line for line in path.read_text(encoding="ascii").splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigurationError(f"cannot read the anchor file {path}: {error}") from error
    if not lines:
        return None
    return parse_anchor(lines[-1], f"{path}, line {len(lines)}")


def append_anchor(path: Path, line: str) -> None:
    # One short write in append mode: lines of several processes do not interleave.
    with path.open("a", encoding="ascii") as handle:
        handle.write(line + "\n")


class AnchorPublisher:
    """Every ``interval_s``, the head when it moved: logged, and appended to ``path``."""

    def __init__(self, trail: AuditTrail, path: Path | None, interval_s: float) -> None:
        self.trail = trail
        self.path = path
        self.interval_s = interval_s
        self._published: int | None = None
        self._loop = Periodic("audit-anchor", interval_s, self.publish)

    async def publish(self) -> str | None:
        """The line published now, or None when the head has not moved since."""
        seq, head_hash = await self.trail.head()
        if seq == 0 or seq == self._published:
            return None
        line = anchor_line(seq, head_hash, dt.datetime.now(dt.UTC))
        if self.path is not None:
            await asyncio.to_thread(append_anchor, self.path, line)
        log.info("audit head: %s", line)
        self._published = seq
        return line

    def start(self) -> None:
        self._loop.start()

    async def stop(self) -> None:
        await self._loop.stop()
