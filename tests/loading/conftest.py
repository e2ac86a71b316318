"""Helpers of the bulk loader tests: input files, SQL counts on the test database."""

from __future__ import annotations

import gzip
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pytest

REPO = Path(__file__).resolve().parents[2]
SHARED_DATA = REPO / ".." / "shared" / "data"
SYNTHEA_10 = SHARED_DATA / "synthea" / "10-patients"
SMALL_TERRITORY = REPO / "tests" / "fixtures" / "loading" / "small-territory.ndjson"


def read_ndjson(path: Path) -> list[dict[str, Any]]:
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rb") as lines:
        return [orjson.loads(line) for line in lines if line.strip()]


def write_ndjson(path: Path, lines: Iterable[dict[str, Any] | str | bytes]) -> Path:
    """One line per item: resources are dumped, strings and bytes written as they are."""
    payload = b"".join(
        (line if isinstance(line, bytes) else line.encode() if isinstance(line, str) else
         orjson.dumps(line)) + b"\n"
        for line in lines
    )  # fmt: skip
    if path.name.endswith(".gz"):
        path.write_bytes(gzip.compress(payload))
    else:
        path.write_bytes(payload)
    return path


def scalar(conninfo: str, query: str, *params: Any) -> Any:
    with psycopg.connect(conninfo) as conn:
        row = conn.execute(query, params).fetchone()
        assert row is not None
        return row[0]


def stored(conninfo: str, resource_type: str, resource_id: str) -> dict[str, Any] | None:
    """The current body of a resource, straight from the database."""
    with psycopg.connect(conninfo) as conn:
        row = conn.execute(
            "SELECT content FROM resource WHERE resource_type = %s AND id = %s",
            (resource_type, resource_id),
        ).fetchone()
    return None if row is None else dict(row[0])


def without_server_meta(resource: dict[str, Any]) -> dict[str, Any]:
    """The resource without the meta.versionId / meta.lastUpdated the hub adds."""
    meta = {
        key: value
        for key, value in (resource.get("meta") or {}).items()
        if key not in ("versionId", "lastUpdated")
    }
    clean = {key: value for key, value in resource.items() if key != "meta"}
    if meta:
        clean["meta"] = meta
    return clean


@pytest.fixture
def small_territory() -> list[dict[str, Any]]:
    return read_ndjson(SMALL_TERRITORY)
