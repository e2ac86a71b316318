"""The access decision point with real rules: the role matrix (``matrix.py``) and care
relationships (``care.py``), applied inside every query.

``authorize`` answers for a type (403 when no role of the user allows the action).
``sql_filter`` keeps the rows the user may see: types some role opens without a care
relationship; patient data (Patient and the Patient compartment's types) only where a
principal of the user — the practitioner herself or her site's organisation — holds a
current grant for the patient *as a person*: a grant on any of the person's source
identities, or on the territorial identity, opens all of them (``same_person``, given by
the patient index). A hidden row is, for the user, a row that does not exist: reads answer
404, searches, includes, chains, ``_has``, ``$everything`` and totals never count it.
The hub's own jobs (role ``system``) see everything.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache
from typing import Any

from psycopg import sql

from maillage.errors import Forbidden
from maillage.security.context import RequestContext
from maillage.security.matrix import Matrix
from maillage.security.policy import Action
from maillage.security.scope_filter import IsTokenParam, Restriction, compose, restricted_types
from maillage.security.scopes import ScopeSet

# The security label of a resource masked to professionals (visible to its authors only):
# HL7 v3 Confidentiality "restricted".
MASKED_LABEL = ("http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "R")

SamePerson = Callable[[sql.Composable], sql.Composable]


@lru_cache(maxsize=1024)
def _scopes(scopes: frozenset[str]) -> ScopeSet:
    return ScopeSet.parse(sorted(scopes), strict=False)


def only_this_patient(patient: sql.Composable) -> sql.Composable:
    return sql.SQL("SELECT {}").format(patient)


def no_token_params(resource_type: str, code: str) -> bool:
    return False  # without the search definitions, no scope restriction can be applied


class CarePolicy:
    def __init__(
        self,
        matrix: Matrix,
        compartment: Mapping[str, Sequence[str]],
        *,
        site_organizations: Mapping[str, str] | None = None,
        same_person: SamePerson = only_this_patient,
        is_token_param: IsTokenParam = no_token_params,
    ) -> None:
        self.matrix = matrix
        self.is_token_param = is_token_param
        self.compartment = {t: tuple(params) for t, params in compartment.items() if params}
        self.site_organizations = dict(site_organizations or {})
        self.same_person = same_person
        pairs = [(t, p) for t, params in self.compartment.items() for p in params]
        self._link_types = [t for t, _ in pairs]
        self._link_params = [p for _, p in pairs]

    # -- type level --------------------------------------------------------------------
    def authorize(
        self,
        ctx: RequestContext,
        action: Action,
        resource_type: str,
        resource: dict[str, Any] | None = None,
    ) -> None:
        if "system" in ctx.roles:
            return
        if not any(self.matrix.allows(role, action, resource_type) for role in ctx.roles):
            roles = ", ".join(sorted(ctx.roles)) or "no role"
            raise Forbidden(f"{roles}: may not {action.value} {resource_type}")
        # A signed-in client's token may narrow what its user may do (SMART scopes). A
        # token naming no resource scope (an IdP's "openid profile") narrows nothing: the
        # user's own rights apply.
        # Restricted scopes (?category=...) open the type, narrowed in ``sql_filter``.
        scopes = _scopes(frozenset(ctx.scopes)) if ctx.scopes else None
        if (
            scopes is not None
            and scopes.resource
            and not scopes.allows(action, resource_type)
            and not self._restricted(frozenset(ctx.scopes), action).get(resource_type)
        ):
            raise Forbidden(
                f"the access token's scopes do not allow {action.value} on {resource_type}"
                " (restricted scopes open reads and searches, by token parameters)"
            )

    @lru_cache(maxsize=1024)  # noqa: B019 - a policy lives as long as the process
    def _restricted(
        self, scopes: frozenset[str], action: Action
    ) -> dict[str, tuple[Restriction, ...]]:
        return restricted_types(_scopes(scopes), action, self.is_token_param)

    # -- row level ---------------------------------------------------------------------
    def principals(self, ctx: RequestContext) -> list[str]:
        found = [ctx.who] if ctx.who.startswith("Practitioner/") else []
        organization = self.site_organizations.get(ctx.site or "")
        if organization:
            found.append(f"Organization/{organization}")
        return found

    def sql_filter(
        self,
        ctx: RequestContext,
        action: Action,
        table_alias: str,
        resource_type: str | None = None,
    ) -> sql.Composable:
        if "system" in ctx.roles:
            return sql.SQL("TRUE")
        # Rendered once per user, action, alias and type: composing it costs ~0.3 ms of
        # Python per request otherwise (the read by id's whole budget is ~1 ms).
        rows = self._rendered(
            ctx.who, ctx.site, frozenset(ctx.roles), action, table_alias, resource_type
        )
        narrowed = (
            self._narrowed(frozenset(ctx.scopes), action, table_alias, resource_type)
            if ctx.scopes
            else None
        )
        return rows if narrowed is None else sql.SQL("({} AND {})").format(rows, narrowed)

    @lru_cache(maxsize=1024)  # noqa: B019 - a policy lives as long as the process
    def _narrowed(
        self, scopes: frozenset[str], action: Action, alias: str, resource_type: str | None
    ) -> sql.Composable | None:
        """What a token's restricted scopes keep (``scope_filter.py``), rendered once."""
        composed = compose(self._restricted(scopes, action), alias, resource_type)
        return None if composed is None else sql.SQL(composed.as_string(None))

    @lru_cache(maxsize=4096)  # noqa: B019 - a policy lives as long as the process
    def _rendered(
        self,
        who: str,
        site: str | None,
        roles: frozenset[str],
        action: Action,
        alias_name: str,
        resource_type: str | None,
    ) -> sql.Composable:
        ctx = RequestContext(who=who, site=site, roles=roles)
        if resource_type is None:
            composed = self._compose(ctx, action, alias_name)
        else:
            composed = self._compose_for_type(ctx, action, alias_name, resource_type)
        return sql.SQL(composed.as_string(None))

    def _compose(self, ctx: RequestContext, action: Action, table_alias: str) -> sql.Composable:
        free, with_care = self._types(frozenset(ctx.roles), action)
        alias = sql.Identifier(table_alias)
        branches = [
            sql.SQL("WHEN {}.resource_type = ANY({}) THEN TRUE").format(
                alias, sql.Literal(sorted(free))
            )
        ]
        if with_care:
            branches.append(
                sql.SQL("WHEN {}.resource_type = ANY({}) THEN ({} AND {})").format(
                    alias,
                    sql.Literal(sorted(with_care)),
                    self._in_care(ctx, alias),
                    self._not_masked(ctx, alias),
                )
            )
        return sql.SQL("(CASE {} ELSE FALSE END)").format(sql.SQL(" ").join(branches))

    def _compose_for_type(
        self, ctx: RequestContext, action: Action, table_alias: str, resource_type: str
    ) -> sql.Composable:
        """The filter of rows known to be of one type (a read by id): the type's own branch
        of ``_compose``, without the CASE over every type the roles open (the same rows,
        less SQL for PostgreSQL to plan and run)."""
        free, with_care = self._types(frozenset(ctx.roles), action)
        if resource_type in free:
            return sql.SQL("TRUE")
        if resource_type not in with_care:
            return sql.SQL("FALSE")
        alias = sql.Identifier(table_alias)
        if resource_type == "Patient":
            in_care = self._granted(ctx, sql.SQL("{}.id").format(alias))
        else:
            in_care = self._compartment_granted(ctx, alias, self.compartment.get(resource_type, ()))
        return sql.SQL("({} AND {})").format(in_care, self._not_masked(ctx, alias))

    def _granted(self, ctx: RequestContext, patient: sql.Composable) -> sql.Composable:
        """A current grant of one of the user's principals for ``patient`` as a person."""
        # A grant on this very identity, or on another identity of the same person
        # unless the person objected to sharing (then only a break-the-glass grant
        # crosses from one identity to another).
        # The direct grant first: PostgreSQL evaluates the OR's arms in order and
        # stops at the first true one, so the person's other identities are only
        # looked up when this identity has no grant of its own.
        return sql.SQL(
            "(EXISTS (SELECT 1 FROM care_access care_c"
            " WHERE care_c.patient_id = {p} AND care_c.principal = ANY({principals})"
            " AND (care_c.until IS NULL OR care_c.until > now()))"
            " OR EXISTS (SELECT 1 FROM care_access care_c"
            " WHERE care_c.principal = ANY({principals})"
            " AND (care_c.until IS NULL OR care_c.until > now())"
            " AND care_c.patient_id IN ({person})"
            " AND (care_c.source_type = 'break-the-glass' OR NOT EXISTS"
            " (SELECT 1 FROM care_objection care_o WHERE care_o.patient_id IN ({person})))))"
        ).format(
            principals=sql.Literal(self.principals(ctx)),
            p=patient,
            person=self.same_person(patient),
        )

    def _compartment_granted(
        self, ctx: RequestContext, alias: sql.Composable, params: Sequence[str] | None
    ) -> sql.Composable:
        """A grant for a patient the row links to through a compartment parameter: one of
        ``params`` when the row's type is known, else the parameter of the row's type."""
        if params is not None and not params:
            return sql.SQL("FALSE")
        join: sql.Composable
        link: sql.Composable
        if params is not None:
            # the row's type is known: its parameters alone
            join = sql.SQL("")
            link = sql.SQL(" AND care_x.param = ANY({})").format(sql.Literal(list(params)))
        else:
            join = sql.SQL(
                " JOIN unnest({}::text[], {}::text[]) AS care_m(t, c)"
                " ON care_x.resource_type = care_m.t AND care_x.param = care_m.c"
            ).format(sql.Literal(self._link_types), sql.Literal(self._link_params))
            link = sql.SQL("")
        return sql.SQL(
            "EXISTS (SELECT 1 FROM sp_reference care_x{join}"
            " WHERE care_x.rid = {alias}.rid{link}"
            " AND care_x.target_type = 'Patient' AND {granted})"
        ).format(
            join=join,
            alias=alias,
            link=link,
            granted=self._granted(ctx, sql.SQL("care_x.target_id")),
        )

    def _in_care(self, ctx: RequestContext, alias: sql.Composable) -> sql.Composable:
        patient_row = self._granted(ctx, sql.SQL("{}.id").format(alias))
        compartment_row = self._compartment_granted(ctx, alias, None)
        return sql.SQL("(CASE WHEN {}.resource_type = 'Patient' THEN {} ELSE {} END)").format(
            alias, patient_row, compartment_row
        )

    def _not_masked(self, ctx: RequestContext, alias: sql.Composable) -> sql.Composable:
        """A resource labelled masked to professionals shows to its authors only."""
        author = (
            ctx.who.removeprefix("Practitioner/") if ctx.who.startswith("Practitioner/") else ""
        )
        return sql.SQL(
            "(NOT EXISTS (SELECT 1 FROM sp_token care_t WHERE care_t.rid = {alias}.rid"
            " AND care_t.param = '_security' AND care_t.system = {system}"
            " AND care_t.code = {code}) OR EXISTS (SELECT 1 FROM sp_reference care_a"
            " WHERE care_a.rid = {alias}.rid AND care_a.param = 'author'"
            " AND care_a.target_type = 'Practitioner' AND care_a.target_id = {author}))"
        ).format(
            alias=alias,
            system=sql.Literal(MASKED_LABEL[0]),
            code=sql.Literal(MASKED_LABEL[1]),
            author=sql.Literal(author),
        )

    @lru_cache(maxsize=256)  # noqa: B019 - a policy lives as long as the process
    def _types(self, roles: frozenset[str], action: Action) -> tuple[set[str], set[str]]:
        """(types some role opens without care, types opened only with care)."""
        free: set[str] = set()
        with_care: set[str] = set()
        for role in roles:
            for resource_type in self._known_types():
                if not self.matrix.allows(role, action, resource_type):
                    continue
                if self.matrix.needs_care(role, resource_type):
                    with_care.add(resource_type)
                else:
                    free.add(resource_type)
        return free, with_care - free

    def _known_types(self) -> set[str]:
        known = {"Patient", *self.matrix.clinical}
        for members in self.matrix.groups.values():
            known |= members
        for rules in self.matrix.roles.values():
            known |= {t for t in rules.allow if t[:1].isupper()}
        return known
