"""Value objects the FHIR store returns."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


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
