"""Keeping care relationships current: the FHIR store's write hook for the resource types
that grant access (``care.CARE_TYPES``), run in the write's transaction."""

from __future__ import annotations

from typing import Any

import psycopg

from maillage.security import care_store
from maillage.security.care import CARE_TYPES, OBJECTION_TYPE, grants_of, objection_of


class CareRelationships:
    """The write hook of one care type: a write replaces its grants, a delete drops them."""

    independent = True  # a write touches its own grants only

    def __init__(self, resource_type: str, *, recent_days: int) -> None:
        if resource_type not in CARE_TYPES:
            raise ValueError(f"{resource_type} grants no care relationship")
        self.resource_type = resource_type
        self.recent_days = recent_days

    async def before_write(
        self,
        repo: Any,
        conn: psycopg.AsyncConnection,
        resource_id: str,
        resource: dict[str, Any] | None,
    ) -> dict[str, Any] | None:
        grants = grants_of(resource, recent_days=self.recent_days) if resource else []
        await care_store.replace_grants(conn, self.resource_type, resource_id, grants)
        return resource


class Objections:
    """The write hook of Consent: an active denial records the patient's objection."""

    independent = True  # a write touches its own objection only

    async def before_write(
        self,
        repo: Any,
        conn: psycopg.AsyncConnection,
        resource_id: str,
        resource: dict[str, Any] | None,
    ) -> dict[str, Any] | None:
        patient_id = objection_of(resource) if resource else None
        await care_store.replace_objection(conn, resource_id, patient_id)
        return resource


def care_hooks(recent_days: int) -> dict[str, CareRelationships | Objections]:
    hooks: dict[str, CareRelationships | Objections] = {
        kind: CareRelationships(kind, recent_days=recent_days) for kind in CARE_TYPES
    }
    hooks[OBJECTION_TYPE] = Objections()
    return hooks
