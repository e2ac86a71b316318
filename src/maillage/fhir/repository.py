"""The FHIR store: one repository per request, bound to its request context.

Every interaction goes through here: the access decision point is consulted
before each operation (``authorize``) and inside each query that lists rows
(``sql_filter``), so surfaces cannot forget it. Writes validate, stamp meta,
extract index rows and write everything in one transaction. The reads and the
connections they share live in ``fhir/repository_reads.py``; this module adds the
writes, plain and conditional.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import orjson
import psycopg

from maillage.audit.events import Interaction
from maillage.errors import (
    Conflict,
    Forbidden,
    IdMismatch,
    MalformedContent,
    PreconditionFailed,
)
from maillage.fhir import batch_writes, sql_writes
from maillage.fhir.business_rules import check_business_rules
from maillage.fhir.conditional_references import (
    has_conditional_references,
    resolve_conditional_references,
)
from maillage.fhir.indexing.extractor import extract_index
from maillage.fhir.matching import identifier_criteria, single_match
from maillage.fhir.model import StoredResource, WriteOutcome
from maillage.fhir.patching import apply_json_patch, check_patch_document
from maillage.fhir.read_batching import ReadBatcher
from maillage.fhir.repository_reads import RepositoryReads
from maillage.fhir.search.engine import SearchEngine
from maillage.fhir.stamping import check_id, content_hash, now_instant, stamp_meta
from maillage.fhir.validation import require_known_type, validate_resource
from maillage.fhir.write_steps import (
    Current,
    journal,
    journal_outcomes,
    lock_current,
    replace_version,
)
from maillage.security import AccessPolicy, Action, RequestContext
from maillage.storage import Database

if TYPE_CHECKING:
    from maillage.audit.journal import AuditJournal
    from maillage.fhir.search_definitions import SearchDefinitions
    from maillage.fhir.write_hooks import WriteHook


class FhirStore:
    """Application-wide: holds the pool, the policy and the search engine."""

    def __init__(
        self,
        db: Database,
        policy: AccessPolicy,
        search: SearchEngine,
        *,
        definitions: SearchDefinitions | None = None,
        write_hooks: Mapping[str, WriteHook] | None = None,
        journal: AuditJournal | None = None,
    ) -> None:
        self.db = db
        self.policy = policy
        self.search_engine = search
        self.reads = ReadBatcher(db)
        # Checks SearchParameter writes and follows the custom definitions; None: they
        # are stored as plain resources (a store built without it, in some tests).
        self.definitions = definitions
        # Per resource type, a domain that must see each write in its transaction (the
        # patient index for Patient): see ``fhir/write_hooks.py``.
        self.write_hooks: dict[str, WriteHook] = dict(write_hooks or {})
        # Stages each write's audit event in the write's transaction (``audit/journal.py``);
        # None: writes are not audited here (tools, tests of the store alone).
        self.journal = journal

    def transactional(self, resource_type: str) -> bool:
        """Whether a create of this type needs a transaction (more than one statement)."""
        return (
            resource_type == "SearchParameter"
            or resource_type in self.write_hooks
            or self.journal is not None
        )

    def repository(self, ctx: RequestContext) -> Repository:
        return Repository(self, ctx)


class Repository(RepositoryReads):
    """A request's repository: the reads of ``RepositoryReads`` and the writes."""

    # -- transactions -------------------------------------------------------------
    @asynccontextmanager
    async def atomic(self) -> AsyncIterator[Repository]:
        """A repository whose every call runs in one transaction (transaction bundles)."""
        async with self._connection() as conn:
            yield Repository(self.store, self.ctx, conn)

    async def _before_write(
        self,
        conn: psycopg.AsyncConnection,
        resource_type: str,
        resource_id: str,
        resource: dict[str, Any] | None,
    ) -> dict[str, Any] | None:
        """What must happen in the write's transaction before it is stored (None: a
        delete): SearchParameter writes are definitions, checked (422); a hooked type's
        domain sees the write and may complete the resource (the patient index links a
        Patient to its territorial identity)."""
        if resource_type == "SearchParameter" and self.store.definitions is not None:
            await self.store.definitions.before_write(conn, resource_id, resource, self.ctx)
        hook = self.store.write_hooks.get(resource_type)
        if hook is not None:
            bound = Repository(self.store, self.ctx, conn)
            return await hook.before_write(bound, conn, resource_id, resource)
        return resource

    # -- writes -------------------------------------------------------------------
    async def create(
        self,
        resource: Any,
        *,
        if_none_exist: list[tuple[str, str]] | None = None,
        resource_id: str | None = None,
    ) -> WriteOutcome:
        resource = check_business_rules(validate_resource(resource))
        resource_type = resource["resourceType"]
        self._authorize(Action.CREATE, resource_type, resource)
        if has_conditional_references(resource):  # resolved in the write's transaction
            async with self.atomic() as repo:
                literal = await resolve_conditional_references(repo, resource)
                return await repo.create(
                    literal, if_none_exist=if_none_exist, resource_id=resource_id
                )
        # An unconditional create is one statement (the resource and its index rows in one
        # CTE), atomic on its own: no BEGIN/COMMIT round trips around it. A SearchParameter
        # changes the definitions in the same transaction.
        several = if_none_exist or self.store.transactional(resource_type)
        connection = self._connection() if several else self._single_statement()
        async with connection as conn:
            match = (
                await self._single_match(conn, resource_type, if_none_exist)
                if if_none_exist
                else None
            )
            if match is not None:
                outcome = WriteOutcome(match, created=False, changed=False)
            else:
                new_id = resource_id or str(uuid.uuid4())
                outcome = WriteOutcome(await self._insert(conn, resource, new_id, "POST"), True)
            await journal_outcomes(self, conn, resource_type, [outcome], Interaction.CREATE)
        return outcome

    async def update(
        self,
        resource_type: str,
        resource_id: str,
        resource: Any,
        *,
        if_match: int | None = None,
        method: str = "PUT",
    ) -> WriteOutcome:
        require_known_type(resource_type)
        check_id(resource_id)
        resource = check_business_rules(validate_resource(resource, expected_type=resource_type))
        if resource.get("id") != resource_id:
            raise IdMismatch(
                f"the body's id {resource.get('id')!r} does not match the URL id {resource_id!r}"
            )
        self._authorize(Action.UPDATE, resource_type, resource)
        if has_conditional_references(resource):  # resolved in the write's transaction
            async with self.atomic() as repo:
                literal = await resolve_conditional_references(repo, resource)
                return await repo.update(
                    resource_type, resource_id, literal, if_match=if_match, method=method
                )
        async with self._connection() as conn:
            outcome = await self._update(
                conn, resource_type, resource_id, resource, if_match, method
            )
            await journal_outcomes(
                self,
                conn,
                resource_type,
                [outcome],
                Interaction.PATCH if method == "PATCH" else None,
            )
        return outcome

    async def _update(
        self,
        conn: psycopg.AsyncConnection,
        resource_type: str,
        resource_id: str,
        resource: dict[str, Any],
        if_match: int | None,
        method: str,
    ) -> WriteOutcome:
        current = await self._lock_current(conn, resource_type, resource_id)
        if current is not None and not current.visible:
            raise Forbidden(f"this user may not write {resource_type}/{resource_id}")
        if current is None:
            if if_match is not None:
                raise PreconditionFailed(f"{resource_type}/{resource_id} does not exist")
            return WriteOutcome(
                await self._insert(conn, resource, resource_id, method), created=True
            )
        if if_match is not None and if_match != current.version_id:
            raise PreconditionFailed(
                f"{resource_type}/{resource_id} is at version {current.version_id}, not {if_match}"
            )
        prepared = await self._before_write(conn, resource_type, resource_id, resource)
        assert prepared is not None
        resource = prepared
        if not current.deleted and current.content_hash == content_hash(resource):
            unchanged = await self._fetch(conn, resource_type, resource_id)
            assert unchanged is not None
            return WriteOutcome(unchanged, created=False, changed=False)
        stored = await replace_version(
            conn, rid=current.rid, version_id=current.version_id, resource=resource, method=method
        )
        return WriteOutcome(stored, created=current.deleted)

    async def conditional_update(
        self, resource_type: str, criteria: list[tuple[str, str]], resource: Any
    ) -> WriteOutcome:
        require_known_type(resource_type)
        # The body must be a resource of the URL's type whichever branch runs (a create
        # would otherwise store whatever type the body is).
        found = resource.get("resourceType") if isinstance(resource, dict) else None
        if found != resource_type:
            raise MalformedContent(
                f"resourceType {found!r} does not match the URL type {resource_type!r}"
            )
        async with self.atomic() as repo, repo._connection() as conn:
            if has_conditional_references(resource):
                resource = await resolve_conditional_references(repo, resource)
            if batch_writes.eligible(self, resource_type, [(criteria, resource)]):
                (outcome,) = await batch_writes.conditional_update_many(
                    repo, conn, resource_type, [(criteria, resource)]
                )
                return outcome
            match = await repo._single_match(conn, resource_type, criteria)
            if match is None:
                if isinstance(resource, dict) and resource.get("id"):
                    return await repo.update(resource_type, str(resource["id"]), resource)
                return await repo.create(resource)
            if isinstance(resource, dict) and resource.get("id") not in (None, match.id):
                raise IdMismatch("the body's id differs from the resource the criteria matched")
            body = {**resource, "id": match.id} if isinstance(resource, dict) else resource
            return await repo.update(resource_type, match.id, body)

    async def conditional_update_many(
        self, resource_type: str, items: Sequence[tuple[list[tuple[str, str]], Any]]
    ) -> list[WriteOutcome]:
        """Each item's ``conditional_update`` in one transaction, outcomes in item order; a
        group by identifier takes a few statements in all (``batch_writes``)."""
        require_known_type(resource_type)
        if any(has_conditional_references(resource) for _, resource in items):
            async with self.atomic() as repo:
                literal = [(c, await resolve_conditional_references(repo, r)) for c, r in items]
                return await repo.conditional_update_many(resource_type, literal)
        if not batch_writes.eligible(self, resource_type, items):
            async with self.atomic() as repo:
                return [await repo.conditional_update(resource_type, c, r) for c, r in items]
        async with self.atomic() as repo, repo._connection() as conn:
            return await batch_writes.conditional_update_many(repo, conn, resource_type, items)

    async def find_identified(
        self, resource_type: str, system: str, value: str, *, lock: bool = False
    ) -> list[StoredResource]:
        """What ``{type}?identifier=system|value&_count=2`` finds (none, one, or two of
        several), without the search engine's work around one token lookup. ``lock``
        (in a transaction): a conditional write's criteria lock on that identifier is
        taken first and held, so that a create that follows none found is the
        conditional create (``batch_writes.find_identified``)."""
        async with self._single_statement() as conn:
            found = await batch_writes.find_identified(
                self, conn, resource_type, system, value, lock=lock
            )
        if found is None:
            criteria = identifier_criteria(system, value)
            if lock:
                async with self._single_statement() as conn:
                    await batch_writes.lock_criteria(conn, resource_type, criteria)
            page = await self.search(resource_type, [*criteria, ("_count", "2")])
            return page.entries
        return found

    async def find_identified_many(
        self, resource_type: str, system: str, values: Sequence[str]
    ) -> dict[str, list[StoredResource]]:
        """``find_identified`` for each of ``values`` (one ``system``), in one statement."""
        unique = list(dict.fromkeys(values))
        if not unique:
            return {}
        async with self._single_statement() as conn:
            found, left = await batch_writes.find_identified_many(
                self, conn, resource_type, system, unique
            )
        for value in left:
            found[value] = await self.find_identified(resource_type, system, value)
        return found

    async def patch(
        self,
        resource_type: str,
        resource_id: str,
        operations: Any,
        *,
        if_match: int | None = None,
    ) -> WriteOutcome:
        check_patch_document(operations)
        async with self.atomic() as repo, repo._connection() as conn:
            # Lock the row before reading it, so that a concurrent update cannot slip in
            # between the read and the write (a lost update).
            require_known_type(resource_type)
            await repo._lock_current(conn, resource_type, resource_id)
            current = await repo.read(resource_type, resource_id)
            assert current.body is not None
            patched = apply_json_patch(current.body, operations, resource_type, resource_id)
            return await repo.update(
                resource_type, resource_id, patched, if_match=if_match, method="PATCH"
            )

    async def delete(self, resource_type: str, resource_id: str) -> StoredResource | None:
        """Soft delete; returns the deletion version, or None if there was nothing to delete.

        Deleting an unknown or already deleted resource is not an error (R4 http.html#delete:
        "Upon successful deletion, or if the resource does not exist at all ... 204").
        """
        require_known_type(resource_type)
        self._authorize(Action.DELETE, resource_type)
        async with self._connection() as conn:
            current = await self._lock_current(conn, resource_type, resource_id, Action.DELETE)
            # A row the caller may not see is, for them, a resource that does not exist.
            if current is None or current.deleted or not current.visible:
                await journal(self, conn, Interaction.DELETE, resource_type, [(resource_id, None)])
                return None
            await self._before_write(conn, resource_type, resource_id, None)
            if self.store.journal is not None:  # the event names the deleted one's patient
                deleted = await self._fetch(conn, resource_type, resource_id)
                body = orjson.loads(deleted.body) if deleted and deleted.body else None
                await journal(self, conn, Interaction.DELETE, resource_type, [(resource_id, body)])
            moment = now_instant()
            await sql_writes.mark_deleted(
                conn, rid=current.rid, version_id=current.version_id + 1, last_updated=moment
            )
        return StoredResource(
            resource_type, resource_id, current.version_id + 1, moment, True, "DELETE", None
        )

    async def conditional_delete(
        self, resource_type: str, criteria: list[tuple[str, str]]
    ) -> StoredResource | None:
        async with self.atomic() as repo, repo._connection() as conn:
            match = await repo._single_match(conn, resource_type, criteria)
            if match is None:
                return None
            return await repo.delete(resource_type, match.id)

    async def match_one(
        self, resource_type: str, criteria: list[tuple[str, str]]
    ) -> StoredResource | None:
        """The one resource ``criteria`` match, None if none, MultipleMatches if several.

        Holds a lock on the criteria until the transaction ends, so that a conditional
        create on the same criteria cannot run concurrently (transaction bundles).
        """
        require_known_type(resource_type)
        async with self._connection() as conn:
            return await self._single_match(conn, resource_type, criteria)

    # -- internals ----------------------------------------------------------------
    async def _single_match(
        self, conn: psycopg.AsyncConnection, resource_type: str, criteria: list[tuple[str, str]]
    ) -> StoredResource | None:
        # Finding the match is a search: the policy says whether this caller may search.
        return await single_match(
            conn,
            self.store.search_engine,
            resource_type,
            criteria,
            authorize=lambda: self._authorize(Action.SEARCH, resource_type),
            visible=lambda alias: self._visible(Action.SEARCH, alias),
        )

    async def _lock_current(
        self,
        conn: psycopg.AsyncConnection,
        resource_type: str,
        resource_id: str,
        action: Action = Action.UPDATE,
    ) -> Current | None:
        visible = self._visible(action, "r", resource_type)
        return await lock_current(conn, visible, resource_type, resource_id)

    async def _insert(
        self,
        conn: psycopg.AsyncConnection,
        resource: dict[str, Any],
        resource_id: str,
        method: str,
    ) -> StoredResource:
        check_id(resource_id)
        prepared = await self._before_write(conn, resource["resourceType"], resource_id, resource)
        assert prepared is not None
        resource = prepared
        moment = now_instant()
        stamped = stamp_meta(resource, resource_id, 1, moment)
        body = orjson.dumps(stamped).decode()
        try:
            await sql_writes.insert_resource(
                conn,
                resource_type=stamped["resourceType"],
                resource_id=resource_id,
                version_id=1,
                last_updated=moment,
                method=method,
                body=body,
                content_hash=content_hash(stamped),
                rows=extract_index(stamped),
            )
        except psycopg.errors.UniqueViolation as error:
            raise Conflict(
                f"{stamped['resourceType']}/{resource_id} was created concurrently"
            ) from error
        return StoredResource(stamped["resourceType"], resource_id, 1, moment, False, method, body)
