"""Fixtures of the search tests: a policy that hides tagged rows from one user."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from psycopg import sql

from maillage.errors import Forbidden
from maillage.fhir.repository import FhirStore
from maillage.security import Action, AllowAll, RequestContext

HIDDEN_TAG = {"system": "http://example.org/test-visibility", "code": "hidden"}
# The user the policy hides rows from, as the X-Maillage-User header names them.
NURSE = {"X-Maillage-User": "nurse"}


class HidingPolicy(AllowAll):
    """``nurse`` sees no resource tagged ``hidden``, and may not search ``refused`` types."""

    def __init__(self, refused: frozenset[str] = frozenset()) -> None:
        self.refused = refused

    def authorize(
        self,
        ctx: RequestContext,
        action: Action,
        resource_type: str,
        resource: dict[str, Any] | None = None,
    ) -> None:
        if ctx.who == "nurse" and resource_type in self.refused:
            raise Forbidden(f"nurse may not {action} {resource_type}")

    def sql_filter(
        self,
        ctx: RequestContext,
        action: Action,
        table_alias: str,
        resource_type: str | None = None,
    ) -> sql.Composable:
        if ctx.who != "nurse":
            return sql.SQL("TRUE")
        return sql.SQL("NOT coalesce({}.content @> {}::jsonb, false)").format(
            sql.Identifier(table_alias),
            sql.Literal('{"meta": {"tag": [{"code": "hidden"}]}}'),
        )


@pytest.fixture
def hiding(store: FhirStore) -> Iterator[HidingPolicy]:
    previous = store.policy
    policy = HidingPolicy()
    store.policy = policy
    try:
        yield policy
    finally:
        store.policy = previous


def hidden(resource: dict[str, Any]) -> dict[str, Any]:
    """The resource, tagged so that the nurse cannot see it."""
    return {**resource, "meta": {"tag": [HIDDEN_TAG]}}
