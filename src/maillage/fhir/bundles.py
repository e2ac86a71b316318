"""Batch and transaction Bundles (FHIR R4 http.html#transaction).

A transaction runs in one database transaction: any failing entry rolls back
everything and the whole request fails with that entry's error. Entries are
processed DELETE, POST, PUT/PATCH, then GET; ``urn:uuid:`` full URLs and
conditional references (``Patient?identifier=...``) are resolved before anything is
written. A batch runs each entry on its own and reports each outcome.
"""

from __future__ import annotations

import base64
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import orjson

from maillage.errors import InvalidRequest, MaillageError, MultipleMatches, NotFound
from maillage.fhir.bundling import embedded, iso, searchset
from maillage.fhir.model import StoredResource, WriteOutcome
from maillage.fhir.repository import Repository

_ORDER = {"DELETE": 0, "POST": 1, "PUT": 2, "PATCH": 2, "GET": 3, "HEAD": 3}
ErrorRenderer = Any  # (MaillageError) -> (status, OperationOutcome dict)


@dataclass
class _Entry:
    index: int
    method: str
    url: str
    resource: Any
    full_url: str | None
    if_none_exist: str | None
    if_match: str | None
    # Set by transaction pre-processing: the id this POST gets, or the match it found.
    assigned_id: str | None = None
    matched: bool = False

    @property
    def path(self) -> str:
        return urlsplit(self.url).path.strip("/")

    @property
    def query(self) -> list[tuple[str, str]]:
        return parse_qsl(urlsplit(self.url).query, keep_blank_values=True)


def _parse_entries(bundle: Any) -> list[_Entry]:
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        raise InvalidRequest("POST to the base URL takes a batch or transaction Bundle")
    entries = []
    for index, raw in enumerate(bundle.get("entry") or []):
        request = raw.get("request") if isinstance(raw, dict) else None
        if not isinstance(request, dict) or not request.get("method") or not request.get("url"):
            raise InvalidRequest(f"Bundle.entry[{index}].request needs a method and a url")
        method = str(request["method"]).upper()
        if method not in _ORDER:
            raise InvalidRequest(f"Bundle.entry[{index}].request.method {method} is not supported")
        entries.append(
            _Entry(
                index,
                method,
                str(request["url"]),
                raw.get("resource"),
                raw.get("fullUrl"),
                request.get("ifNoneExist"),
                request.get("ifMatch"),
            )
        )
    return entries


def _version_of(etag: str | None) -> int | None:
    if not etag:
        return None
    digits = etag.removeprefix("W/").strip('"')
    if not digits.isdigit():
        raise InvalidRequest(f'ifMatch {etag!r} is not an ETag like W/"3"')
    return int(digits)


class BundleProcessor:
    def __init__(
        self,
        repository: Repository,
        *,
        base_url: str,
        return_pref: str,
        render_error: ErrorRenderer,
    ) -> None:
        self.repository = repository
        self.base_url = base_url
        self.return_pref = return_pref
        self.render_error = render_error

    async def process(self, bundle: Any) -> dict[str, Any]:
        kind = bundle.get("type") if isinstance(bundle, dict) else None
        if kind not in ("batch", "transaction"):
            raise InvalidRequest("Bundle.type must be batch or transaction")
        entries = _parse_entries(bundle)
        if kind == "transaction":
            responses = await self._transaction(entries)
        else:
            responses = await self._batch(entries)
        return {
            "resourceType": "Bundle",
            "id": str(uuid.uuid4()),
            "type": f"{kind}-response",
            "entry": responses,
        }

    async def _batch(self, entries: list[_Entry]) -> list[dict[str, Any]]:
        responses: list[dict[str, Any]] = [{} for _ in entries]
        for entry in sorted(entries, key=lambda item: _ORDER[item.method]):
            try:
                async with self.repository.atomic() as repo:
                    responses[entry.index] = await self._execute(repo, entry)
            except MaillageError as error:
                status, outcome = self.render_error(error)
                responses[entry.index] = {"response": {"status": str(status), "outcome": outcome}}
        return responses

    async def _transaction(self, entries: list[_Entry]) -> list[dict[str, Any]]:
        responses: list[dict[str, Any]] = [{} for _ in entries]
        async with self.repository.atomic() as repo:
            await self._resolve_identities(repo, entries)
            for entry in sorted(entries, key=lambda item: _ORDER[item.method]):
                try:
                    responses[entry.index] = await self._execute(repo, entry)
                except MaillageError as error:
                    error.message = f"Bundle.entry[{entry.index}]: {error.message}"
                    raise
        return responses

    async def _resolve_identities(self, repo: Repository, entries: list[_Entry]) -> None:
        """Give each POST its id (or its conditional match), then rewrite references."""
        mapping: dict[str, str] = {}
        for entry in entries:
            if entry.method == "POST" and isinstance(entry.resource, dict):
                resource_type = entry.path
                match = None
                if entry.if_none_exist:
                    criteria = parse_qsl(entry.if_none_exist.lstrip("?"), keep_blank_values=True)
                    match = await self._single(repo, resource_type, criteria)
                target_id = match.id if match else str(uuid.uuid4())
                entry.assigned_id, entry.matched = target_id, match is not None
                if entry.full_url:
                    mapping[entry.full_url] = f"{resource_type}/{target_id}"
            elif entry.method == "PUT" and entry.full_url and "?" not in entry.url:
                mapping[entry.full_url] = entry.path
        for entry in entries:
            if entry.resource is not None:
                entry.resource = await self._rewrite(repo, entry.resource, mapping)

    async def _rewrite(self, repo: Repository, node: Any, mapping: dict[str, str]) -> Any:
        if isinstance(node, list):
            return [await self._rewrite(repo, item, mapping) for item in node]
        if not isinstance(node, dict):
            return node
        result = {}
        for key, value in node.items():
            if key == "reference" and isinstance(value, str):
                result[key] = await self._resolve_reference(repo, value, mapping)
            else:
                result[key] = await self._rewrite(repo, value, mapping)
        return result

    async def _resolve_reference(
        self, repo: Repository, value: str, mapping: dict[str, str]
    ) -> str:
        if value in mapping:
            return mapping[value]
        if value.startswith("urn:uuid:"):
            raise InvalidRequest(f"reference {value} names no entry of this transaction")
        if "?" in value and not value.startswith(("http://", "https://")):
            resource_type, _, query = value.partition("?")
            match = await self._single(repo, resource_type, parse_qsl(query))
            if match is None:
                raise NotFound(f"conditional reference {resource_type}?... matches nothing")
            return match.reference
        return value

    async def _single(
        self, repo: Repository, resource_type: str, criteria: list[tuple[str, str]]
    ) -> StoredResource | None:
        page = await repo.search(
            resource_type, [*criteria, ("_count", "2"), ("_total", "none")], strict=True
        )
        if len(page.entries) > 1:
            raise MultipleMatches(f"{resource_type} criteria match more than one resource")
        return page.entries[0] if page.entries else None

    async def _execute(self, repo: Repository, entry: _Entry) -> dict[str, Any]:
        segments = entry.path.split("/")
        if entry.method == "GET" or entry.method == "HEAD":
            return await self._read(repo, entry, segments)
        if entry.method == "DELETE":
            if len(segments) == 2:
                await repo.delete(segments[0], segments[1])
            else:
                await repo.conditional_delete(segments[0], entry.query)
            return {"response": {"status": "204 No Content"}}
        if entry.method == "POST":
            if entry.matched and entry.assigned_id:
                current = await repo.read(segments[0], entry.assigned_id)
                return self._written(WriteOutcome(current, created=False, changed=False))
            criteria = (
                parse_qsl(entry.if_none_exist.lstrip("?"), keep_blank_values=True)
                if entry.if_none_exist
                else None
            )
            return self._written(
                await repo.create(
                    entry.resource, resource_id=entry.assigned_id, if_none_exist=criteria
                )
            )
        if entry.method == "PATCH":
            patch = entry.resource
            if isinstance(patch, dict) and patch.get("resourceType") == "Binary":
                patch = orjson.loads(base64.b64decode(patch.get("data", "")))
            return self._written(
                await repo.patch(
                    segments[0], segments[1], patch, if_match=_version_of(entry.if_match)
                )
            )
        if len(segments) == 2:
            return self._written(
                await repo.update(
                    segments[0], segments[1], entry.resource, if_match=_version_of(entry.if_match)
                )
            )
        return self._written(
            await repo.conditional_update(segments[0], entry.query, entry.resource)
        )

    async def _read(self, repo: Repository, entry: _Entry, segments: list[str]) -> dict[str, Any]:
        if len(segments) == 1:
            page = await repo.search(segments[0], entry.query)
            bundle = searchset(
                page, base_url=self.base_url, self_url=f"{self.base_url}/{segments[0]}"
            )
            return {"resource": bundle, "response": {"status": "200 OK"}}
        if len(segments) == 4 and segments[2] == "_history":
            found = await repo.vread(segments[0], segments[1], segments[3])
        elif len(segments) == 2:
            found = await repo.read(segments[0], segments[1])
        else:
            raise InvalidRequest(f"GET {entry.url} is not supported inside a Bundle")
        return {"resource": embedded(found), "response": self._response(found, "200 OK")}

    def _response(self, stored: StoredResource, status: str) -> dict[str, Any]:
        return {
            "status": status,
            "location": f"{stored.versioned_reference}",
            "etag": stored.etag,
            "lastModified": iso(stored.last_updated),
        }

    def _written(self, outcome: WriteOutcome) -> dict[str, Any]:
        status = "201 Created" if outcome.created else "200 OK"
        entry: dict[str, Any] = {"response": self._response(outcome.resource, status)}
        if self.return_pref == "representation" and outcome.resource.body is not None:
            entry["resource"] = embedded(outcome.resource)
        entry["fullUrl"] = f"{self.base_url}/{outcome.resource.reference}"
        return entry
