"""The bulk dedupe: files the source identities the online index never saw (bulk-loaded
Patients, the demo) with the online rules, matched from memory and written by COPY.

The outcome is the online path's for the same identities filed one after the other in
id order (``mpi/batch.py`` does exactly that through ``PatientIndex.file``, a few
hundred identities/s): each identity is scored (``identity.scoring``) against every
filed identity sharing a blocking key — the index's, and those filed before it in this
run — and placed by ``identity.linking.place``; its source row, review pairs and event
are the online ones. What differs is how: the filed identities' traits and keys are held
in memory (``_Memory``), and each chunk of identities is written in one transaction, by
COPY: ``mpi_*`` rows, the golden records of the territorial identities it touched and
each source's ``refer`` link (through the bulk loader's writer: versions, history and
search index as the store keeps them), and their audit events (staged, chained by the
sealer).

Online writes keep going meanwhile: each takes the index's bulk lock shared
(``store.lock_keys``), each chunk takes it exclusive, then re-reads the identities
written since the chunk before (``updated_at``, the statement's clock), and reloads the
whole index when some were removed. A chunk that fails (a deadlock with an online write
holding a Patient row) is rolled back, forgotten from memory, and taken again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from maillage.audit.service import AuditEvents
from maillage.audit.store import stage_sync
from maillage.errors import ValidationFailed
from maillage.identity.golden import build_golden, source_link
from maillage.identity.linking import Scored, place
from maillage.identity.model import Model
from maillage.identity.scoring import Scorer
from maillage.loading import dedupe_store, writer
from maillage.loading.dedupe_store import EventRow, FiledRow, IndexRows
from maillage.loading.dedupe_workers import Workers, golden_rows, identity_traits, link_rows
from maillage.loading.prepare import PreparedChunk
from maillage.mpi.candidates import review_pair
from maillage.mpi.index import MAX_CANDIDATES, new_territorial_id, source_row
from maillage.security import RequestContext

log = logging.getLogger(__name__)

DEDUPE_CONTEXT = RequestContext.system("identity-dedupe")
CHUNK_SIZE = 10_000
_RETRIES = 5
_RETRYABLE = (psycopg.errors.DeadlockDetected, psycopg.errors.LockNotAvailable)


class _Memory:
    """The filed, active source identities: traits, keys, territorial identity."""

    def __init__(self) -> None:
        self.filed: dict[str, FiledRow] = {}
        self.by_key: dict[str, list[str]] = {}
        # one copy of each text (names and keys recur): 1.4 kB an identity instead of 2.4
        self._texts: dict[str, str] = {}

    def put(self, row: FiledRow) -> None:
        self.drop(row.patient_id)
        if not row.active:
            return
        texts = self._texts
        traits = {
            name: texts.setdefault(value, value)
            if isinstance(value, str)
            else [texts.setdefault(v, v) for v in value]
            if isinstance(value, list)
            else value
            for name, value in row.traits.items()
        }
        keys = [texts.setdefault(key, key) for key in row.blocking]
        self.filed[row.patient_id] = FiledRow(
            row.patient_id, row.territorial_id, traits, keys, True
        )
        for key in keys:
            self.by_key.setdefault(key, []).append(row.patient_id)

    def drop(self, patient_id: str) -> None:
        old = self.filed.pop(patient_id, None)
        if old is None:
            return
        for key in old.blocking:
            members = self.by_key.get(key)
            if members is not None:
                members.remove(patient_id)

    def candidates(self, keys: list[str], exclude: str) -> list[FiledRow]:
        """Filed identities sharing a key (at most ``MAX_CANDIDATES``, as online)."""
        seen: dict[str, FiledRow] = {}
        for key in keys:
            for patient_id in self.by_key.get(key, ()):
                if patient_id != exclude and patient_id not in seen:
                    seen[patient_id] = self.filed[patient_id]
                    if len(seen) >= MAX_CANDIDATES:
                        return list(seen.values())
        return list(seen.values())


@dataclass
class _Chunk:
    """What one chunk decided, before it is written."""

    placed: list[tuple[str, dict[str, Any], str]] = field(default_factory=list)  # id, body, tid
    new_territorial: set[str] = field(default_factory=set)
    rows: IndexRows = field(default_factory=lambda: IndexRows({}, {}, [], [], []))


class BulkDedupe:
    def __init__(
        self,
        conninfo: str,
        model: Model,
        *,
        chunk_size: int = CHUNK_SIZE,
        audit_events: AuditEvents | None = None,
        workers: int = 0,
    ) -> None:
        """``workers``: processes preparing identities and rows (``dedupe_workers``)."""
        self.conninfo = conninfo
        self.workers = workers
        self.scorer = Scorer(model)
        self.chunk_size = chunk_size
        self.audit_events = audit_events
        self._memory = _Memory()
        self._mark: Any = None  # clock of the last re-read of the filed identities
        self._pool = Workers(0, DEDUPE_CONTEXT)
        # seconds spent per phase over the run (logged at the end; the bench prints them)
        self.timings: dict[str, float] = {}

    @contextmanager
    def _timed(self, phase: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            spent = time.perf_counter() - started
            self.timings[phase] = self.timings.get(phase, 0.0) + spent

    def pending(self) -> int:
        with psycopg.connect(self.conninfo) as conn:
            return dedupe_store.pending(conn)

    def run(self, progress: Callable[[int], None] | None = None) -> int:
        """File the source identities pending when it starts; the number filed.
        ``progress``: called after each chunk with the number of identities it took."""
        filed = 0
        self._pool = Workers(self.workers, DEDUPE_CONTEXT)
        try:
            with psycopg.connect(self.conninfo) as conn:
                writer.create_staging(conn)
                with self._timed("list pending"):
                    pending = dedupe_store.pending_ids(conn)
                conn.commit()
                for start in range(0, len(pending), self.chunk_size):
                    ids = pending[start : start + self.chunk_size]
                    filed += self._chunk_with_retries(conn, ids)
                    if progress is not None:
                        progress(len(ids))
                with self._timed("flush"):
                    writer.flush(conn)
        finally:
            self._pool.close()
        log.info(
            "identity dedupe: %d filed; %s",
            filed,
            ", ".join(f"{phase} {seconds:.1f} s" for phase, seconds in self.timings.items()),
        )
        return filed

    def _chunk_with_retries(self, conn: psycopg.Connection, ids: list[str]) -> int:
        for attempt in range(1, _RETRIES + 1):
            placed: list[str] = []
            try:
                with conn.transaction():
                    return self._chunk(conn, ids, placed)
            except _RETRYABLE:
                for patient_id in reversed(placed):  # rolled back: not filed after all
                    self._memory.drop(patient_id)
                log.info("identity dedupe: chunk from %s retried (attempt %d)", ids[0], attempt)
                if attempt == _RETRIES:
                    raise
        return 0

    def _chunk(self, conn: psycopg.Connection, ids: list[str], placed: list[str]) -> int:
        """File the identities of ``ids`` still pending (one may have been filed online
        since the run started); how many."""
        with self._timed("lock and refresh"):
            dedupe_store.take_bulk_lock(conn)
            self._refresh(conn)
        with self._timed("read bodies"):
            batch = dedupe_store.pending_bodies(conn, ids)
            if not batch:
                return 0
        with self._timed("read never"):
            never = dedupe_store.never_of(conn, [patient_id for patient_id, _ in batch])
        pool = self._pool
        with self._timed("prepare identities"):
            bodies = [body for _, body in batch]
            traits = identity_traits(bodies)  # inline: sending bodies costs more
        chunk = _Chunk()
        with self._timed("match and place"):
            for (patient_id, body), (prepared, keys) in zip(batch, traits, strict=True):
                never_for = never.get(patient_id, frozenset())
                self._place(chunk, patient_id, body, prepared, keys, never_for)
                placed.append(patient_id)
        with self._timed("golden records"):
            goldens = self._golden_records(conn, chunk)
            new = [g for g in goldens if g["id"] in chunk.new_territorial]
            changed = [g for g in goldens if g["id"] not in chunk.new_territorial]
            # the new ones apart: nothing of theirs is stored, they go straight in by COPY
            rows = [*pool.map(golden_rows, new), *pool.map(golden_rows, changed)]
        with self._timed("refer links"):
            linked = [source_link(body, tid) for _, body, tid in chunk.placed]
            rows.append(link_rows(linked))  # inline, as identities
        with self._timed("write index rows"):
            dedupe_store.write_index(conn, chunk.rows, who=DEDUPE_CONTEXT.who)
        with self._timed("write resources"):
            for part in rows:
                self._write_resources(conn, part)
        with self._timed("audit"):
            self._audit(conn, chunk)
        log.info("identity dedupe: %d source identities filed (last %s)", len(batch), batch[-1][0])
        return len(batch)

    def _refresh(self, conn: psycopg.Connection) -> None:
        """Bring the memory up to the index as committed (under the bulk lock)."""
        mark = dedupe_store.clock(conn)
        if self._mark is None:
            self._load_all(conn)
        else:
            for row in dedupe_store.filed_since(conn, self._mark):
                self._memory.put(row)
            if dedupe_store.active_count(conn) != len(self._memory.filed):
                self._load_all(conn)  # some were removed meanwhile: start from the index
        self._mark = mark

    def _load_all(self, conn: psycopg.Connection) -> None:
        self._memory = _Memory()
        for row in dedupe_store.filed_since(conn, None):
            self._memory.put(row)

    def _place(
        self,
        chunk: _Chunk,
        patient_id: str,
        body: dict[str, Any],
        prepared: dict[str, Any],
        keys: list[str],
        never: frozenset[str],
    ) -> None:
        score = self.scorer.placement_score
        scored = [
            Scored(other.patient_id, other.territorial_id, score(prepared, other.traits))
            for other in self._memory.candidates(keys, patient_id)
        ]
        placement = place(scored, never=never)
        territorial_id = placement.territorial_id or new_territorial_id()
        if placement.territorial_id is None:
            chunk.new_territorial.add(territorial_id)
        row = source_row(patient_id, body, prepared, keys, None, placement, territorial_id)
        chunk.rows.sources.append(row)
        chunk.placed.append((patient_id, body, territorial_id))
        self._memory.put(FiledRow(patient_id, territorial_id, prepared, keys, True))
        chunk.rows.reviews.extend(review_pair(patient_id, review) for review in placement.review)
        matched = placement.matched
        detail: dict[str, Any] = {}
        if matched is not None:  # the row's explanation is the score's (rounding is slow)
            detail = {"matched": matched.patient_id, "score": row.explanation}
        action = "linked" if matched is not None else "registered"
        chunk.rows.events.append(EventRow(action, patient_id, territorial_id, detail))

    def _golden_records(self, conn: psycopg.Connection, chunk: _Chunk) -> list[dict[str, Any]]:
        """The golden record of each territorial identity the chunk touched, from all its
        active sources (those filed before, as stored; the chunk's, as about to be)."""
        # Online, each source is the newest of its territorial identity when it is filed:
        # a microsecond apart in placement order, the later wins a tie as it would.
        now = datetime.now(UTC)
        members: dict[str, list[dict[str, Any]]] = {}
        for position, (patient_id, body, territorial_id) in enumerate(chunk.placed):
            filed_at = (now + timedelta(microseconds=position)).isoformat()
            meta = {**(body.get("meta") or {}), "lastUpdated": filed_at}
            members.setdefault(territorial_id, []).append({**body, "id": patient_id, "meta": meta})
        existing = [tid for tid in members if tid not in chunk.new_territorial]
        for territorial_id, bodies in dedupe_store.member_bodies(conn, existing).items():
            members[territorial_id].extend(bodies)
        goldens = []
        for territorial_id, bodies in members.items():
            golden = build_golden(territorial_id, bodies)
            goldens.append(golden.body)
            target = (
                chunk.rows.new_territorial
                if territorial_id in chunk.new_territorial
                else chunk.rows.touched_territorial
            )
            target[territorial_id] = golden.trait_sources
        return goldens

    @staticmethod
    def _write_resources(conn: psycopg.Connection, prepared: PreparedChunk) -> None:
        if prepared.rejected or prepared.deferred:
            first = prepared.rejected[0].message if prepared.rejected else "a resource twice"
            raise ValidationFailed(f"identity dedupe: a Patient it writes is refused: {first}")
        writer.clear_staging(conn)
        writer.write_chunk(conn, prepared)

    def _audit(self, conn: psycopg.Connection, chunk: _Chunk) -> None:
        if self.audit_events is None:
            return
        created = [(tid, [f"Patient/{tid}"]) for tid in chunk.rows.new_territorial]
        updated = [(tid, [f"Patient/{tid}"]) for tid in chunk.rows.touched_territorial]
        updated += [(pid, [f"Patient/{pid}"]) for pid, _, _ in chunk.placed]
        events = self.audit_events(DEDUPE_CONTEXT, "create", "Patient", groups=created)
        events += self.audit_events(DEDUPE_CONTEXT, "update", "Patient", groups=updated)
        stage_sync(conn, events)
