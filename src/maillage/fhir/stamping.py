"""What the server stamps on a resource it stores: id rule, meta, content hash, clock."""

from __future__ import annotations

from datetime import UTC, datetime
from hashlib import blake2b
from typing import Any

import orjson

from maillage.errors import InvalidRequest
from maillage.fhir.validation_schema import primitives

__all__ = ["check_id", "content_hash", "format_instant", "now_instant", "stamp_meta"]


def now_instant() -> datetime:
    """Now, at the millisecond precision meta.lastUpdated carries."""
    moment = datetime.now(UTC)
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def format_instant(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def content_hash(resource: dict[str, Any]) -> bytes:
    """Hash of the content without server-managed meta, to spot unchanged re-writes."""
    meta = {
        k: v
        for k, v in (resource.get("meta") or {}).items()
        if k not in ("versionId", "lastUpdated")
    }
    clean = {k: v for k, v in resource.items() if k != "meta"}
    if meta:
        clean["meta"] = meta
    return blake2b(orjson.dumps(clean, option=orjson.OPT_SORT_KEYS), digest_size=16).digest()


def stamp_meta(
    resource: dict[str, Any], resource_id: str, version_id: int, moment: datetime
) -> dict[str, Any]:
    """The resource as stored: its id, meta.versionId and meta.lastUpdated set."""
    meta = dict(resource.get("meta") or {})
    meta["versionId"] = str(version_id)
    meta["lastUpdated"] = format_instant(moment)
    return {**resource, "id": resource_id, "meta": meta}


def check_id(resource_id: str) -> None:
    """The FHIR id rule (the validator's own), for ids that come from a URL."""
    problem = primitives.check_id(resource_id)
    if problem is not None:
        raise InvalidRequest(problem)
