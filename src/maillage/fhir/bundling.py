"""Bundles the store returns: searchset and history, with paging links.

Stored bodies are embedded as ``orjson.Fragment``: the JSON text from PostgreSQL is
spliced in, never parsed and re-serialised.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import orjson

from maillage.fhir.model import SearchPage, StoredResource


def iso(moment: datetime) -> str:
    """An instant as meta.lastUpdated writes it: UTC, milliseconds, ``Z``."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def embedded(resource: StoredResource) -> orjson.Fragment:
    assert resource.body is not None
    return orjson.Fragment(resource.body)


def _link(
    base_path: str,
    params: list[tuple[str, str]],
    offset: int | None = None,
    cursor: str | None = None,
) -> str:
    query = [(name, value) for name, value in params if name not in ("_offset", "_page")]
    if cursor:
        query.append(("_page", cursor))
    elif offset:
        query.append(("_offset", str(offset)))
    return f"{base_path}?{urlencode(query)}" if query else base_path


def _keyset_links(page: SearchPage, self_url: str) -> list[dict[str, str]]:
    links = [
        {
            "relation": "self",
            "url": _link(self_url, page.used_params, page.offset, page.self_page),
        }
    ]
    if page.next_page:
        links.append(
            {"relation": "next", "url": _link(self_url, page.used_params, None, page.next_page)}
        )
    if page.previous_page:
        links.append(
            {
                "relation": "previous",
                "url": _link(self_url, page.used_params, None, page.previous_page),
            }
        )
    return links


def _links(page: SearchPage, self_url: str) -> list[dict[str, str]]:
    if page.keyset:
        return _keyset_links(page, self_url)
    links = [{"relation": "self", "url": _link(self_url, page.used_params, page.offset)}]
    if page.has_next:
        links.append(
            {"relation": "next", "url": _link(self_url, page.used_params, page.offset + page.count)}
        )
    if page.offset > 0:
        links.append(
            {
                "relation": "previous",
                "url": _link(self_url, page.used_params, max(page.offset - page.count, 0)),
            }
        )
    return links


def searchset(page: SearchPage, *, base_url: str, self_url: str) -> dict[str, Any]:
    bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset"}
    if page.total is not None:
        bundle["total"] = page.total
    bundle["link"] = _links(page, self_url)
    bundle["entry"] = [
        {
            "fullUrl": f"{base_url}/{entry.reference}",
            "resource": embedded(entry),
            "search": {"mode": "match"},
        }
        for entry in page.entries
    ] + [
        {
            "fullUrl": f"{base_url}/{entry.reference}",
            "resource": embedded(entry),
            "search": {"mode": "include"},
        }
        for entry in page.included
    ]
    return bundle


def history(page: SearchPage, *, base_url: str, self_url: str) -> dict[str, Any]:
    entries = []
    for version in page.entries:
        entry: dict[str, Any] = {"fullUrl": f"{base_url}/{version.reference}"}
        if version.body is not None:
            entry["resource"] = embedded(version)
        method = "POST" if version.method == "POST" else version.method
        url = version.resource_type if method == "POST" else version.reference
        entry["request"] = {"method": "PUT" if method == "PATCH" else method, "url": url}
        entry["response"] = {
            "status": _history_status(version),
            "etag": version.etag,
            "lastModified": iso(version.last_updated),
        }
        entries.append(entry)
    return {
        "resourceType": "Bundle",
        "type": "history",
        "link": _links(page, self_url),
        "entry": entries,
    }


def _history_status(version: StoredResource) -> str:
    if version.deleted:
        return "204 No Content"
    return "201 Created" if version.version_id == 1 else "200 OK"
