"""Bulk loading: the use case behind ``maillage load`` and the demo territory.

``BulkLoader`` streams items (NDJSON lines, Bundle entries, or Python dicts) in
chunks. Each chunk is prepared (validation, access decision, meta stamping,
content hash, index extraction: the store's own code) in a pool of worker
processes when the load is bigger than one chunk, and written by this process
with COPY into staging tables and one merge, in one transaction per chunk.
Chunks are written in input order, so a later line wins over an earlier one.

A bad item is rejected with its location and the rest goes on; with ``strict``
the load stops at the first chunk holding a bad item, and that chunk is not
written (earlier chunks stay committed).

A load bigger than what the store holds sets the search tables' B-tree indexes aside
and builds them once at the end (``storage.deferred_indexes``): building a B-tree from
a finished table is a sort, far cheaper than millions of single insertions.
"""

from __future__ import annotations

import gc
import itertools
import logging
import multiprocessing
import os
import time
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from maillage.audit.store import stage_sync
from maillage.fhir.search_definitions import install_from_store
from maillage.loading.audit_events import chunk_events
from maillage.loading.prepare import (
    INDEX_COLUMNS,
    LEARNED_TYPES,
    PreparedChunk,
    Rejection,
    configure_worker,
    prepare_chunk,
    start_worker,
    warm_up,
)
from maillage.loading.readers import Item, Problem, ProgressTracker, expand_paths, read_file
from maillage.loading.references import ConditionalReferences, KnownReferences
from maillage.loading.report import LoadReport, RejectedLine
from maillage.loading.writer import (
    ChunkResult,
    clear_staging,
    create_staging,
    flush,
    write_chunk,
)
from maillage.security import AccessPolicy, AllowAll, RequestContext
from maillage.storage import deferred_indexes

# When the search tables' indexes are built: as rows arrive, once at the end, or
# ``auto``: at the end when the input is at least AUTO_DEFER_BYTES and larger than the
# resources already stored (a first load, a site joining a small territory).
INDEX_BUILDS = ("auto", "during", "after")
AUTO_DEFER_BYTES = 256 * 1024 * 1024
# gzip'd NDJSON: about this many bytes of JSON per byte of file.
_GZIP_RATIO = 8

log = logging.getLogger(__name__)

# A chunk (one transaction, one unit of work for a worker) ends at ``chunk_size``
# resources or at this many bytes of NDJSON, whichever comes first: memory in flight
# then stays bounded (about 10 MB per chunk in flight) even with large resources.
MAX_CHUNK_BYTES = 1024 * 1024


@dataclass
class _Chunk:
    items: list[Item]
    problems: list[Problem]
    consumed: int  # input bytes read when the chunk was complete (for the progress bar)


class _StrictStop(Exception):
    pass


def _rejected(found: Rejection | Problem) -> RejectedLine:
    return RejectedLine(found.file, found.line, found.message, found.entry)


def _default_workers() -> int:
    """One worker per available core (at most 4): preparation is CPU-bound."""
    if hasattr(os, "sched_getaffinity"):
        return min(len(os.sched_getaffinity(0)), 4)
    return min(os.cpu_count() or 1, 4)


class BulkLoader:
    """Loads FHIR resources into the store with COPY, idempotently."""

    def __init__(
        self,
        conninfo: str,
        *,
        policy: AccessPolicy | None = None,
        ctx: RequestContext | None = None,
        chunk_size: int = 2000,
        workers: int | None = None,
        index: bool = True,
        care_recent_days: int = 30,
        index_build: str = "auto",
        audit: bool = True,
    ) -> None:
        """``audit``: stage the audit events of what each chunk writes, in its
        transaction (``loading/audit_events.py``); off only where the hub's audit is."""
        if chunk_size < 1:
            raise ValueError("chunk_size must be at least 1")
        if index_build not in INDEX_BUILDS:
            raise ValueError(f"index_build must be one of {', '.join(INDEX_BUILDS)}")
        self.conninfo = conninfo
        self.policy: AccessPolicy = policy if policy is not None else AllowAll()
        self.ctx = ctx if ctx is not None else RequestContext.system("loader")
        self.chunk_size = chunk_size
        self.workers = _default_workers() if workers is None else workers
        # False: resources are stored without search index rows (searches miss them
        # until a reindex); for a fast first load, and to measure what indexing costs.
        self.index = index
        self.care_recent_days = care_recent_days
        self.index_build = index_build
        self.audit = audit
        # per run: conditional references resolved before preparation, and after
        self._known = KnownReferences(conninfo, mode="off")
        self._references = ConditionalReferences(care_recent_days)

    # -- entry points -------------------------------------------------------------
    def load_resources(
        self, resources: Iterable[dict[str, Any]], *, source: str = "api"
    ) -> LoadReport:
        """Load parsed resources; a rejected one is reported at its 1-based position."""
        items = (Item(source, number, resource) for number, resource in enumerate(resources, 1))
        return self._run(items, strict=False, progress=None, input_bytes=0)

    def load_paths(
        self, paths: list[Path], *, strict: bool = False, progress: bool = False
    ) -> LoadReport:
        """Load NDJSON files (``.ndjson``, ``.ndjson.gz``), folders of them and Bundle
        JSON files. Raises ``ConfigurationError`` for a path that cannot be read."""
        files = expand_paths(paths)
        tracker = ProgressTracker()
        input_bytes = sum(
            path.stat().st_size * (_GZIP_RATIO if path.name.endswith(".gz") else 1)
            for path in files
        )

        def items() -> Iterator[Item | Problem]:
            for path in files:
                yield from read_file(path, tracker)

        if not progress:
            report = self._run(
                items(), strict=strict, progress=None, tracker=tracker, input_bytes=input_bytes
            )
        else:
            total = sum(path.stat().st_size for path in files)
            with Progress(
                TextColumn("[bold]loading"),
                BarColumn(),
                DownloadColumn(),
                TextColumn("{task.fields[resources]:,} resources"),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                console=Console(stderr=True),
                transient=False,
            ) as bar:
                task = bar.add_task("load", total=total, resources=0)

                def advance(consumed: int, done: int) -> None:
                    bar.update(task, completed=consumed, resources=done)

                report = self._run(
                    items(),
                    strict=strict,
                    progress=advance,
                    tracker=tracker,
                    input_bytes=input_bytes,
                )
                bar.update(task, completed=total)
        report.files = len(files)
        return report

    # -- pipeline -----------------------------------------------------------------
    def _chunks(
        self, items: Iterable[Item | Problem], tracker: ProgressTracker | None
    ) -> Iterator[_Chunk]:
        batch: list[Item] = []
        problems: list[Problem] = []
        size = 0
        for found in items:
            if isinstance(found, Problem):
                problems.append(found)
                continue
            batch.append(found)
            if isinstance(found.raw, bytes):
                size += len(found.raw)
            if len(batch) >= self.chunk_size or size >= MAX_CHUNK_BYTES:
                yield _Chunk(batch, problems, tracker.consumed if tracker else 0)
                batch, problems, size = [], [], 0
        if batch or problems:
            yield _Chunk(batch, problems, tracker.consumed if tracker else 0)

    def _prepare(self, items: list[Item]) -> PreparedChunk:
        """Prepare a chunk in this process, with the conditional references known."""
        return prepare_chunk(items, self._known.for_items(items))

    def _pool_allowed(self) -> bool:
        # Workers are forked: they inherit the loaded definitions and the policy as is.
        return self.workers >= 1 and "fork" in multiprocessing.get_all_start_methods()

    def _prepared(self, chunks: Iterator[_Chunk]) -> Iterator[tuple[_Chunk, PreparedChunk]]:
        """Chunks with their preparation, in input order. A load of one chunk is prepared
        here; a bigger one in a pool of worker processes, at most ``workers + 1`` chunks
        in flight (memory stays bounded whatever the input size)."""
        first = next(chunks, None)
        if first is None:
            return
        second = next(chunks, None)
        if second is None or not self._pool_allowed():
            yield first, self._prepare(first.items)
            if second is not None:
                yield second, self._prepare(second.items)
            for chunk in chunks:
                yield chunk, self._prepare(chunk.items)
            return
        # Workers are forked once the definitions are loaded, so they start warm and
        # share those pages with this process; frozen objects are not touched by the
        # collector, which keeps the shared pages shared.
        warm_up()
        gc.freeze()
        pool = ProcessPoolExecutor(
            max_workers=self.workers,
            mp_context=multiprocessing.get_context("fork"),
            initializer=start_worker,
            initargs=(self.policy, self.ctx, self.index, self.care_recent_days),
        )
        try:
            pending: deque[tuple[_Chunk, Future[PreparedChunk]]] = deque()
            for chunk in itertools.chain((first, second), chunks):
                known = self._known.for_items(chunk.items)
                pending.append((chunk, pool.submit(prepare_chunk, chunk.items, known)))
                if len(pending) > 2 * self.workers + 1:
                    done, future = pending.popleft()
                    yield done, future.result()
            while pending:
                done, future = pending.popleft()
                yield done, future.result()
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            gc.unfreeze()

    def _run(
        self,
        items: Iterable[Item | Problem],
        *,
        strict: bool,
        progress: Any,
        input_bytes: int,
        tracker: ProgressTracker | None = None,
    ) -> LoadReport:
        report = LoadReport(indexed=self.index)
        self._references = ConditionalReferences(self.care_recent_days)
        configure_worker(self.policy, self.ctx, self.index, self.care_recent_days)
        started = time.perf_counter()
        with psycopg.connect(self.conninfo, options="-c timezone=UTC") as conn:
            # Index with the custom SearchParameter definitions too (before forking).
            install_from_store(conn)
            deferring = self._builds_indexes_after(conn, input_bytes)
            if deferring:
                deferred_indexes.defer(conn, list(INDEX_COLUMNS))
            self._known = KnownReferences(self.conninfo, mode=self._known_mode(conn, deferring))
            create_staging(conn)
            try:
                pipeline = self._prepared(self._chunks(items, tracker))
                while True:
                    waited = time.perf_counter()
                    next_chunk = next(pipeline, None)
                    writing = time.perf_counter()
                    report.preparing_seconds += writing - waited
                    if next_chunk is None:
                        break
                    chunk, prepared = next_chunk
                    self._write(conn, chunk, prepared, report, strict=strict)
                    report.writing_seconds += time.perf_counter() - writing
                    if progress is not None:
                        progress(chunk.consumed, report.processed)
            except _StrictStop:
                report.stopped = True
            finally:
                self._known.close()
            flush(conn)
            waiting = deferred_indexes.pending(conn)
        if waiting:
            building = time.perf_counter()
            deferred_indexes.build(self.conninfo)
            report.indexes_built_after = True
            report.index_build_seconds = time.perf_counter() - building
        # once every chunk is written and indexed: what a reference names may come last
        if self._references.named_by:
            resolving = time.perf_counter()
            with psycopg.connect(self.conninfo, options="-c timezone=UTC") as conn:
                resolution = self._references.resolve(conn, indexed=self.index)
            resolution.before = report.references.before
            report.references = resolution
            report.references_seconds = time.perf_counter() - resolving
        report.seconds = time.perf_counter() - started
        found = report.references
        log.info(
            "bulk load: %d loaded, %d unchanged, %d rejected in %.1f s; conditional"
            " references: %d resolved (%d after the load, %.1f s), %d left as written",
            report.loaded,
            report.unchanged,
            len(report.rejected),
            report.seconds,
            found.before + found.rewritten,
            found.rewritten,
            report.references_seconds,
            sum(found.unresolved.values()),
        )
        return report

    def _known_mode(self, conn: psycopg.Connection, deferring: bool) -> str:
        """How conditional references are known before preparation (``KnownReferences``):
        looked up in the search index; learned from the load, while the index is set
        aside, if the store holds none of the types learned; else not before the end."""
        if not self.index:
            return "off"
        if not deferring:
            return "lookup"
        row = conn.execute(
            "SELECT EXISTS (SELECT 1 FROM resource WHERE resource_type = ANY(%s))",
            (sorted(LEARNED_TYPES),),
        ).fetchone()
        return "off" if row is None or row[0] else "learn"

    def _builds_indexes_after(self, conn: psycopg.Connection, input_bytes: int) -> bool:
        if not self.index or self.index_build == "during":
            return False
        if self.index_build == "after":
            return True
        if input_bytes < AUTO_DEFER_BYTES:
            return False
        row = conn.execute("SELECT pg_relation_size('resource')").fetchone()
        return row is not None and int(row[0]) < input_bytes

    def _write(
        self,
        conn: psycopg.Connection,
        chunk: _Chunk,
        prepared: PreparedChunk,
        report: LoadReport,
        *,
        strict: bool,
    ) -> None:
        bad = [_rejected(problem) for problem in chunk.problems]
        bad.extend(_rejected(rejection) for rejection in prepared.rejected)
        report.rejected.extend(bad)
        if strict and bad:
            raise _StrictStop
        retry = self._commit(conn, chunk.items, prepared, report, strict=strict)
        while retry:
            again = self._prepare(retry)
            report.rejected.extend(_rejected(rejection) for rejection in again.rejected)
            if strict and again.rejected:
                raise _StrictStop
            retry = self._commit(conn, retry, again, report, strict=strict)

    def _commit(
        self,
        conn: psycopg.Connection,
        items: list[Item],
        prepared: PreparedChunk,
        report: LoadReport,
        *,
        strict: bool,
    ) -> list[Item]:
        """Write a prepared chunk; returns the items to write after it (repeated ids,
        ids created concurrently). A chunk the database refuses is retried one item at a
        time so that only the offending items are rejected."""
        try:
            with conn.transaction():
                result = write_chunk(conn, prepared)
                self._audit(conn, prepared, result)
        except psycopg.Error:
            if conn.broken or conn.closed:
                raise
            log.warning("a chunk was refused by the database; locating the offending items")
            return self._locate(conn, items, report, strict=strict)
        self._written(report, prepared, result)
        later = list(prepared.deferred)
        later.extend(items[prepared.sources[seq]] for seq in result.missing)
        return later

    def _locate(
        self, conn: psycopg.Connection, items: list[Item], report: LoadReport, *, strict: bool
    ) -> list[Item]:
        """Write a refused chunk item by item (savepoints in one transaction) to reject only
        the items the database refuses; with ``strict`` nothing of the chunk is kept."""
        later: list[Item] = []
        refused: list[RejectedLine] = []
        written: list[tuple[PreparedChunk, ChunkResult]] = []
        with conn.transaction() as outer:
            for item in items:
                prepared = self._prepare([item])
                try:
                    with conn.transaction():
                        clear_staging(conn)
                        result = write_chunk(conn, prepared)
                        self._audit(conn, prepared, result)
                except psycopg.Error as error:
                    if conn.broken or conn.closed:
                        raise
                    refused.append(
                        RejectedLine(item.file, item.line, _db_message(error), item.entry)
                    )
                    continue
                written.append((prepared, result))
                later.extend(prepared.deferred)
                later.extend(item for _ in result.missing)
            if strict and refused:
                outer.force_rollback = True
        report.rejected.extend(refused)
        if strict and refused:
            raise _StrictStop
        for prepared, result in written:
            self._written(report, prepared, result)
        return later

    def _written(self, report: LoadReport, prepared: PreparedChunk, result: ChunkResult) -> None:
        report.add(result)
        report.references.before += prepared.literals
        self._references.note(prepared, result)
        self._known.learn(prepared, result)

    def _audit(
        self, conn: psycopg.Connection, prepared: PreparedChunk, result: ChunkResult
    ) -> None:
        if self.audit:
            stage_sync(conn, chunk_events(self.ctx, prepared, result))


def _db_message(error: psycopg.Error) -> str:
    diagnostic = error.diag.message_primary if error.diag else None
    return f"refused by the database: {diagnostic or str(error).splitlines()[0]}"
