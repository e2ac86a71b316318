"""Write hooks: a domain above the FHIR store that must see every write of a type.

The repository calls a type's hook inside the write's transaction, before the resource
is stamped and stored (``resource`` None for a delete), with a repository bound to that
transaction. The hook may refuse the write (raise a ``MaillageError``: nothing is
stored), write other resources through the bound repository, and return the resource to
store (possibly completed). The patient index (``maillage.mpi``) is the hook of Patient.
Hooks are given to ``FhirStore`` by the surface that assembles the hub (``app.py``).

A hook whose write touches only what belongs to the written resource itself (the care
grants an Encounter gives) says so with ``independent = True``: a group of writes of its
type (``batch_writes``) is then stored together, each item seen by the hook in turn,
since no item's hook can change what another item's write finds. Without it (the
patient index: filing one Patient may update another's golden record), a group is
written item by item.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

import psycopg

if TYPE_CHECKING:
    from maillage.fhir.repository import Repository


class WriteHook(Protocol):
    independent: bool

    async def before_write(
        self,
        repo: Repository,
        conn: psycopg.AsyncConnection,
        resource_id: str,
        resource: dict[str, Any] | None,
    ) -> dict[str, Any] | None: ...
