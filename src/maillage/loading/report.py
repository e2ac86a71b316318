"""What a bulk load reports: resources written, unchanged and rejected (with where),
where the time went, and the conditional references it resolved."""

from __future__ import annotations

from dataclasses import dataclass, field

from maillage.loading.references import Resolution
from maillage.loading.writer import ChunkResult

__all__ = ["LoadReport", "RejectedLine"]


@dataclass(frozen=True)
class RejectedLine:
    """An input line (or Bundle entry) that was not loaded, and why."""

    file: str
    line: int
    message: str
    entry: int | None = None

    @property
    def location(self) -> str:
        if self.entry is not None:
            return f"{self.file}: Bundle.entry[{self.entry}]"
        return f"{self.file}:{self.line}"


@dataclass
class LoadReport:
    """What a load did. ``loaded`` counts resources written (created or new version)."""

    files: int = 0
    loaded: int = 0
    unchanged: int = 0
    rejected: list[RejectedLine] = field(default_factory=list)
    created: int = 0
    updated: int = 0
    seconds: float = 0.0
    # Where the time went: waiting for chunks to be read and prepared (validation,
    # indexing), and writing them (COPY and merge in PostgreSQL).
    preparing_seconds: float = 0.0
    writing_seconds: float = 0.0
    # True when ``strict`` stopped the load at a bad chunk.
    stopped: bool = False
    # False when the load skipped the search index (``BulkLoader(index=False)``).
    indexed: bool = True
    # Set when the search tables' indexes were built at the end of the load, and the
    # time that took (included in ``seconds``).
    indexes_built_after: bool = False
    index_build_seconds: float = 0.0
    # The conditional references resolved, as chunks were prepared and after the load
    # (``loading/references.py``).
    references: Resolution = field(default_factory=Resolution)
    references_seconds: float = 0.0  # included in ``seconds``

    @property
    def processed(self) -> int:
        return self.loaded + self.unchanged

    @property
    def rate(self) -> float:
        """Resources written or found unchanged, per second."""
        return self.processed / self.seconds if self.seconds > 0 else 0.0

    def add(self, result: ChunkResult) -> None:
        self.created += result.created
        self.updated += result.updated
        self.loaded += result.created + result.updated
        self.unchanged += result.unchanged
