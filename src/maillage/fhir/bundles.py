"""Batch and transaction Bundles (FHIR R4 http.html#transaction).

A transaction runs in one database transaction: any failing entry rolls back
everything and the whole request fails with that entry's error, located as
``Bundle.entry[n]``. Before anything is written, each POST gets its id (or the
resource its ``ifNoneExist`` matched), each conditional PUT its match, and every
``fullUrl`` (``urn:uuid:`` or other) is mapped to the resulting ``Type/id``; references,
other strings equal to a ``fullUrl`` and links in the narrative are rewritten, and
conditional references (``Patient?identifier=...``) are resolved, first against the
conditional entries of the same Bundle, then by search. Entries then run DELETE,
POST, PUT/PATCH, then GET; a resource touched by two write entries fails the
transaction. A batch runs each entry on its own and reports each outcome.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import orjson

from maillage.errors import IdMismatch, InvalidRequest, MaillageError, NotFound
from maillage.fhir.bundling import embedded, iso, searchset
from maillage.fhir.model import StoredResource, WriteOutcome
from maillage.fhir.repository import Repository

_ORDER = {"DELETE": 0, "POST": 1, "PUT": 2, "PATCH": 2, "GET": 3, "HEAD": 3}
_WRITES = ("DELETE", "POST", "PUT", "PATCH")
# (error) -> (HTTP status, OperationOutcome)
ErrorRenderer = Callable[[MaillageError], tuple[int, dict[str, Any]]]
Criteria = list[tuple[str, str]]


@dataclass
class _Entry:
    index: int
    method: str
    url: str
    resource: Any
    full_url: str | None
    if_none_exist: str | None
    if_match: str | None
    # Set by transaction pre-processing: the id this POST or conditional PUT writes,
    # and whether it is the id of a resource that already exists.
    assigned_id: str | None = None
    matched: bool = False

    @property
    def segments(self) -> list[str]:
        return urlsplit(self.url).path.strip("/").split("/")

    @property
    def conditional(self) -> bool:
        return bool(urlsplit(self.url).query)

    @property
    def query(self) -> Criteria:
        return _criteria(urlsplit(self.url).query)


def _criteria(query: str) -> Criteria:
    return parse_qsl(query.lstrip("?"), keep_blank_values=True)


def _parse_entries(bundle: dict[str, Any], base_url: str) -> list[_Entry]:
    entries = []
    for index, raw in enumerate(bundle.get("entry") or []):
        request = raw.get("request") if isinstance(raw, dict) else None
        if not isinstance(request, dict) or not request.get("method") or not request.get("url"):
            raise InvalidRequest(f"Bundle.entry[{index}].request needs a method and a url")
        method = str(request["method"]).upper()
        if method not in _ORDER:
            raise InvalidRequest(f"Bundle.entry[{index}].request.method {method} is not supported")
        url = str(request["url"])
        # request.url is relative to the base; an absolute URL on this base is accepted.
        if url.startswith(f"{base_url}/"):
            url = url[len(base_url) + 1 :]
        entries.append(
            _Entry(
                index,
                method,
                url,
                raw.get("resource"),
                raw.get("fullUrl"),
                request.get("ifNoneExist"),
                request.get("ifMatch"),
            )
        )
    return entries


def _check(entry: _Entry) -> None:
    """Refuse the request shapes this server does not run inside a Bundle."""
    segments, conditional = entry.segments, entry.conditional
    resource_type = segments[0]
    shapes = {
        "POST": len(segments) == 1 and not conditional,
        "PUT": len(segments) == 2 or (len(segments) == 1 and conditional),
        "PATCH": len(segments) == 2 and not conditional,
        "DELETE": len(segments) == 2 or (len(segments) == 1 and conditional),
    }
    read_shape = len(segments) in (1, 2) or (len(segments) == 4 and segments[2] == "_history")
    if not resource_type[:1].isupper() or not shapes.get(entry.method, read_shape):
        raise InvalidRequest(f"{entry.method} {entry.url} is not supported inside a Bundle")
    if entry.method in ("POST", "PUT"):
        found = entry.resource.get("resourceType") if isinstance(entry.resource, dict) else None
        if found != resource_type:
            raise InvalidRequest(
                f"the entry's resource is a {found or 'non-resource'} but its request.url "
                f"names {resource_type}"
            )


def _locate(error: MaillageError, index: int) -> MaillageError:
    """The same error, its message and issues saying which entry failed."""
    prefix = f"Bundle.entry[{index}]"
    if not error.message.startswith(prefix):
        error.message = f"{prefix}: {error.message}"
        error.issues = [
            replace(issue, message=f"{prefix}: {issue.message}") for issue in error.issues
        ]
    return error


def _version_of(etag: str | None) -> int | None:
    if not etag:
        return None
    digits = etag.removeprefix("W/").strip('"')
    if not digits.isdigit():
        raise InvalidRequest(f'ifMatch {etag!r} is not an ETag like W/"3"')
    return int(digits)


def _patch_operations(resource: Any) -> Any:
    """A PATCH entry carries its JSON Patch in a Binary (or, leniently, as is)."""
    if isinstance(resource, dict) and resource.get("resourceType") == "Binary":
        try:
            return orjson.loads(base64.b64decode(resource.get("data", ""), validate=True))
        except (binascii.Error, orjson.JSONDecodeError) as error:
            raise InvalidRequest(
                "the PATCH entry's Binary.data is not a base64 JSON Patch"
            ) from error
    return resource


@dataclass
class _References:
    """What the transaction's references resolve to."""

    repo: Repository
    # fullUrl -> Type/id
    full_urls: dict[str, str] = field(default_factory=dict)
    # (type, sorted criteria) of conditional entries -> Type/id
    conditional: dict[tuple[str, tuple[tuple[str, str], ...]], str] = field(default_factory=dict)

    async def resolve(self, value: str) -> str:
        if value in self.full_urls:
            return self.full_urls[value]
        if value.startswith("urn:uuid:"):
            raise InvalidRequest(f"reference {value} names no entry of this transaction")
        if "?" in value and not value.startswith(("http://", "https://")):
            resource_type, _, query = value.partition("?")
            criteria = _criteria(query)
            same_bundle = self.conditional.get((resource_type, tuple(sorted(criteria))))
            if same_bundle is not None:
                return same_bundle
            match = await self.repo.match_one(resource_type, criteria)
            if match is None:
                raise NotFound(f"conditional reference {resource_type}?... matches nothing")
            return match.reference
        return value

    async def rewrite(self, node: Any, key: str | None = None) -> Any:
        if isinstance(node, list):
            return [await self.rewrite(item, key) for item in node]
        if isinstance(node, dict):
            result = {}
            for name, value in node.items():
                if name == "reference" and isinstance(value, str):
                    result[name] = await self.resolve(value)
                else:
                    result[name] = await self.rewrite(value, name)
            return result
        if isinstance(node, str):
            # uri/url elements that name an entry are links too; an Identifier.value
            # (a string) that happens to equal a fullUrl is data, kept as sent.
            if key != "value" and node in self.full_urls:
                return self.full_urls[node]
            if key == "div":
                for full_url, reference in self.full_urls.items():
                    node = node.replace(f'"{full_url}"', f'"{reference}"')
        return node


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
        if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
            raise InvalidRequest("POST to the base URL takes a batch or transaction Bundle")
        kind = bundle.get("type")
        if kind not in ("batch", "transaction"):
            raise InvalidRequest("Bundle.type must be batch or transaction")
        entries = _parse_entries(bundle, self.base_url)
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
                _check(entry)
                async with self.repository.atomic() as repo:
                    responses[entry.index], _ = await self._execute(repo, entry)
            except MaillageError as error:
                status, outcome = self.render_error(error)
                text = f"{status} {HTTPStatus(status).phrase}"
                responses[entry.index] = {"response": {"status": text, "outcome": outcome}}
        return responses

    async def _transaction(self, entries: list[_Entry]) -> list[dict[str, Any]]:
        responses: list[dict[str, Any]] = [{} for _ in entries]
        async with self.repository.atomic() as repo:
            references = _References(repo)
            for entry in entries:
                try:
                    _check(entry)
                    await self._assign_identity(repo, entry, references)
                except MaillageError as error:
                    raise _locate(error, entry.index) from None
            for entry in entries:
                try:
                    if entry.resource is not None and entry.method != "PATCH":
                        entry.resource = await references.rewrite(entry.resource)
                except MaillageError as error:
                    raise _locate(error, entry.index) from None
            touched: dict[str, int] = {}
            for entry in sorted(entries, key=lambda item: _ORDER[item.method]):
                try:
                    responses[entry.index], identity = await self._execute(repo, entry)
                    if identity is not None and entry.method in _WRITES:
                        if identity in touched:
                            raise InvalidRequest(
                                f"{identity} is also written by Bundle.entry[{touched[identity]}];"
                                " a resource may appear only once in a transaction"
                            )
                        touched[identity] = entry.index
                except MaillageError as error:
                    raise _locate(error, entry.index) from None
        return responses

    async def _assign_identity(
        self, repo: Repository, entry: _Entry, references: _References
    ) -> None:
        """Fix the id a POST or conditional PUT will write, and map its fullUrl to it."""
        resource_type = entry.segments[0]
        criteria: Criteria | None = None
        if entry.method == "POST":
            match = None
            if entry.if_none_exist:
                criteria = _criteria(entry.if_none_exist)
                match = await repo.match_one(resource_type, criteria)
            entry.assigned_id = match.id if match else str(uuid.uuid4())
            entry.matched = match is not None
        elif entry.method == "PUT" and entry.conditional:
            criteria = entry.query
            match = await repo.match_one(resource_type, criteria)
            body_id = entry.resource.get("id")
            if match is not None and body_id not in (None, match.id):
                raise IdMismatch("the body's id differs from the resource the criteria matched")
            entry.assigned_id = match.id if match else str(body_id or uuid.uuid4())
            entry.matched = match is not None
        elif entry.method == "PUT":
            entry.assigned_id = entry.segments[1]
        else:
            return
        reference = f"{resource_type}/{entry.assigned_id}"
        if entry.full_url:
            if entry.full_url in references.full_urls:
                raise InvalidRequest(f"fullUrl {entry.full_url} names more than one entry")
            references.full_urls[entry.full_url] = reference
        if criteria is not None:
            references.conditional[(resource_type, tuple(sorted(criteria)))] = reference

    async def _execute(self, repo: Repository, entry: _Entry) -> tuple[dict[str, Any], str | None]:
        """Run one entry: its response entry and the ``Type/id`` it wrote, if any."""
        segments = entry.segments
        resource_type = segments[0]
        if entry.method in ("GET", "HEAD"):
            return await self._read(repo, entry, segments), None
        if entry.method == "DELETE":
            if len(segments) == 2:
                await repo.delete(resource_type, segments[1])
                identity: str | None = f"{resource_type}/{segments[1]}"
            else:
                deleted = await repo.conditional_delete(resource_type, entry.query)
                identity = deleted.reference if deleted else None
            return {"response": {"status": "204 No Content"}}, identity
        if_match = _version_of(entry.if_match)
        if entry.method == "POST":
            if entry.matched and entry.assigned_id:
                current = await repo.read(resource_type, entry.assigned_id)
                outcome = WriteOutcome(current, created=False, changed=False)
            else:
                criteria = _criteria(entry.if_none_exist) if entry.if_none_exist else None
                outcome = await repo.create(
                    entry.resource, resource_id=entry.assigned_id, if_none_exist=criteria
                )
        elif entry.method == "PATCH":
            operations = _patch_operations(entry.resource)
            outcome = await repo.patch(resource_type, segments[1], operations, if_match=if_match)
        elif len(segments) == 2:
            outcome = await repo.update(
                resource_type, segments[1], entry.resource, if_match=if_match
            )
        elif entry.assigned_id is not None:
            # A conditional PUT whose match a transaction resolved beforehand.
            body = {**entry.resource, "id": entry.assigned_id}
            outcome = await repo.update(resource_type, entry.assigned_id, body, if_match=if_match)
        else:
            outcome = await repo.conditional_update(resource_type, entry.query, entry.resource)
        return self._written(outcome), outcome.resource.reference

    async def _read(self, repo: Repository, entry: _Entry, segments: list[str]) -> dict[str, Any]:
        if len(segments) == 1:
            page = await repo.search(segments[0], entry.query)
            bundle = searchset(
                page, base_url=self.base_url, self_url=f"{self.base_url}/{segments[0]}"
            )
            return {"resource": bundle, "response": {"status": "200 OK"}}
        if len(segments) == 4:
            found = await repo.vread(segments[0], segments[1], segments[3])
        else:
            found = await repo.read(segments[0], segments[1])
        return {"resource": embedded(found), "response": self._response(found, "200 OK")}

    def _response(self, stored: StoredResource, status: str) -> dict[str, Any]:
        return {
            "status": status,
            "location": stored.versioned_reference,
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
