"""The access decision point: one place that says yes or no, called inside the store.

The store calls ``authorize`` before each read or write of a known resource and
adds ``sql_filter`` to every query that lists resources (search, history, bundle
entries, includes), so that rules written here apply everywhere without touching
call sites. The foundation ships ``AllowAll``; the security issue brings care
relationships, objection to sharing and break-the-glass.
"""

from __future__ import annotations

import enum
from typing import Any, Protocol

from psycopg import sql

from maillage.security.context import RequestContext


class Action(enum.StrEnum):
    READ = "read"
    SEARCH = "search"
    HISTORY = "history"
    CREATE = "create"
    UPDATE = "update"
    DELETE = "delete"


class AccessPolicy(Protocol):
    def authorize(
        self,
        ctx: RequestContext,
        action: Action,
        resource_type: str,
        resource: dict[str, Any] | None = None,
    ) -> None:
        """Raise ``maillage.errors.Forbidden`` when the action is refused."""

    def sql_filter(
        self,
        ctx: RequestContext,
        action: Action,
        table_alias: str,
        resource_type: str | None = None,
    ) -> sql.Composable:
        """A SQL boolean over the ``resource`` row ``table_alias`` that keeps visible rows;
        ``resource_type``, when given, says every such row is of that type (a policy may
        then answer with a simpler filter keeping the same rows)."""


class AllowAll:
    """Everything is allowed; every call still goes through here."""

    def authorize(
        self,
        ctx: RequestContext,
        action: Action,
        resource_type: str,
        resource: dict[str, Any] | None = None,
    ) -> None:
        return None

    def sql_filter(
        self,
        ctx: RequestContext,
        action: Action,
        table_alias: str,
        resource_type: str | None = None,
    ) -> sql.Composable:
        return sql.SQL("TRUE")
