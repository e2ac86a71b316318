"""SMART v2 restricted scopes inside the queries.

A scope such as ``patient/Observation.rs?category=laboratory`` opens Observations only
where the search ``category=laboratory`` would find them (SMART App Launch 2, "Finer-
grained resource constraints using search parameters"). For a type that only restricted
scopes open, the rows are narrowed in the access filter itself, so reads, searches,
includes, chains, ``_has``, ``$everything``, exports and totals all apply it: a row
outside the restriction is, for the token, a row that does not exist (404, never
counted).

Applied: token search parameters (``category``, ``code``, ``status``...: ``code``,
``system|code``, ``|code``, ``system|``; a comma is OR; several parameters are AND; two
restricted scopes are OR). A restriction on another kind of parameter, or with a
modifier, is not applied and so opens nothing; restricted scopes open reads and
searches only (a write would need the body checked against the search: refused, 403).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Final

from psycopg import sql

from maillage.security.policy import Action
from maillage.security.scopes import ScopeSet

# (resource type, search parameter code) -> whether it is a token parameter of that type
IsTokenParam = Callable[[str, str], bool]
Restriction = tuple[tuple[str, str], ...]  # (param, value) pairs: all must hold
READING: Final = frozenset({Action.READ, Action.SEARCH, Action.HISTORY})


def usable(
    resource_type: str, restrictions: tuple[Restriction, ...], is_token: IsTokenParam
) -> tuple[Restriction, ...]:
    """The restrictions this filter can apply (the others open nothing)."""
    return tuple(
        restriction
        for restriction in restrictions
        if restriction
        and all(":" not in param and is_token(resource_type, param) for param, _ in restriction)
    )


def restricted_types(
    scopes: ScopeSet, action: Action, is_token: IsTokenParam
) -> dict[str, tuple[Restriction, ...]]:
    """The types that only restricted scopes open for ``action``, each with what applies."""
    if action not in READING:
        return {}
    found: dict[str, tuple[Restriction, ...]] = {}
    named = {s.resource_type for s in scopes.resource if s.restrictions and s.resource_type != "*"}
    for resource_type in sorted(named):
        if scopes.allows(action, resource_type):
            continue  # an unrestricted scope opens it: nothing to narrow
        found[resource_type] = usable(
            resource_type, scopes.restrictions(action, resource_type), is_token
        )
    return found


def compose(
    restricted: Mapping[str, tuple[Restriction, ...]],
    alias: str,
    resource_type: str | None = None,
) -> sql.Composable | None:
    """The condition rows of ``alias`` must meet (None: nothing to narrow)."""
    table = sql.Identifier(alias)
    parts: list[sql.Composable] = []
    for restricted_type, restrictions in restricted.items():
        if resource_type is not None and resource_type != restricted_type:
            continue
        held = (
            sql.SQL(" OR ").join(_all_of(table, restriction) for restriction in restrictions)
            if restrictions
            else sql.SQL("FALSE")
        )
        if resource_type is not None:
            parts.append(sql.SQL("({})").format(held))
        else:
            parts.append(
                sql.SQL("({}.resource_type <> {} OR {})").format(
                    table, sql.Literal(restricted_type), held
                )
            )
    return sql.SQL(" AND ").join(parts) if parts else None


def _all_of(table: sql.Composable, restriction: Restriction) -> sql.Composable:
    return sql.SQL("({})").format(
        sql.SQL(" AND ").join(_token(table, param, value) for param, value in restriction)
    )


def _token(table: sql.Composable, param: str, value: str) -> sql.Composable:
    """``param=value`` on the token index rows of the row (a comma: any of the values)."""
    matches: list[sql.Composable] = []
    for one in value.split(","):
        system, bar, code = one.rpartition("|")
        conditions: list[sql.Composable] = []
        if code:
            conditions.append(sql.SQL("scope_t.code = {}").format(sql.Literal(code)))
        if bar and system:
            conditions.append(sql.SQL("scope_t.system = {}").format(sql.Literal(system)))
        elif bar:  # "|code": a code without a system
            conditions.append(sql.SQL("scope_t.system IS NULL"))
        matches.append(sql.SQL(" AND ").join(conditions) if conditions else sql.SQL("FALSE"))
    return sql.SQL(
        "EXISTS (SELECT 1 FROM sp_token scope_t WHERE scope_t.rid = {}.rid"
        " AND scope_t.param = {} AND (({})))"
    ).format(table, sql.Literal(param), sql.SQL(") OR (").join(matches))
