"""Value objects the FHIR store returns."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class StoredResource:
    """One version of a resource as stored; ``body`` is its JSON text, served as is."""

    resource_type: str
    id: str
    version_id: int
    last_updated: datetime
    deleted: bool
    method: str
    body: str | None

    @classmethod
    def from_row(cls, row: tuple[Any, ...]) -> StoredResource:
        """From ``resource_type, id, version_id, last_updated, deleted, method, content``."""
        return cls(
            resource_type=row[0],
            id=row[1],
            version_id=int(row[2]),
            last_updated=row[3],
            deleted=bool(row[4]),
            method=row[5],
            body=row[6],
        )

    @property
    def etag(self) -> str:
        return f'W/"{self.version_id}"'

    @property
    def reference(self) -> str:
        return f"{self.resource_type}/{self.id}"

    @property
    def versioned_reference(self) -> str:
        return f"{self.resource_type}/{self.id}/_history/{self.version_id}"


@dataclass(frozen=True)
class WriteOutcome:
    """What a write did: ``created`` selects 201 over 200; ``changed`` is False when a
    conditional create found a match or the content was identical (no new version)."""

    resource: StoredResource
    created: bool
    changed: bool = True


@dataclass(frozen=True)
class SearchPage:
    """One page of search or history results, with what the links need."""

    entries: list[StoredResource]
    total: int | None
    offset: int
    count: int
    has_next: bool
    # The parameters actually used (unknown ones dropped), for the self link.
    used_params: list[tuple[str, str]]
    included: tuple[StoredResource, ...] = ()
    # Keyset paging (``_page`` cursors): this page's own, and those of its neighbours.
    keyset: bool = False
    self_page: str | None = None
    next_page: str | None = None
    previous_page: str | None = None
