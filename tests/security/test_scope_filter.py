"""Restricted SMART v2 scopes: which types they narrow, and what the decision point
answers for them (the rows they keep are tested end to end in test_signed_in_hub.py)."""

from __future__ import annotations

import pytest

from maillage.app import access_policy
from maillage.demo.senders import demo_senders
from maillage.errors import Forbidden
from maillage.hl7v2.sites import SiteRegistry
from maillage.security import RequestContext
from maillage.security.policy import Action
from maillage.security.scope_filter import restricted_types
from maillage.security.scopes import ScopeSet
from maillage.settings import Settings

LAB = "user/Observation.rs?category=laboratory"


def _tokens_only(resource_type: str, code: str) -> bool:
    return code in ("category", "code", "status")


def test_only_types_no_unrestricted_scope_opens_are_narrowed() -> None:
    scopes = ScopeSet.parse(f"{LAB} user/Patient.rs user/Condition.rs?category=problem-list-item")
    assert restricted_types(scopes, Action.SEARCH, _tokens_only) == {
        "Condition": ((("category", "problem-list-item"),),),
        "Observation": ((("category", "laboratory"),),),
    }
    # an unrestricted scope on the same type wins: nothing to narrow
    wider = ScopeSet.parse(f"{LAB} user/Observation.rs")
    assert restricted_types(wider, Action.SEARCH, _tokens_only) == {}


def test_restrictions_the_filter_cannot_apply_open_nothing() -> None:
    scopes = ScopeSet.parse(
        "user/Observation.rs?date=ge2024-01-01 user/Observation.rs?category:not=social-history"
    )
    assert restricted_types(scopes, Action.SEARCH, _tokens_only) == {"Observation": ()}


def test_restricted_scopes_open_reads_and_searches_not_writes() -> None:
    scopes = ScopeSet.parse("user/Observation.cruds?category=laboratory")
    assert restricted_types(scopes, Action.READ, _tokens_only)
    assert restricted_types(scopes, Action.CREATE, _tokens_only) == {}
    assert restricted_types(scopes, Action.UPDATE, _tokens_only) == {}


def _doctor(*scopes: str) -> RequestContext:
    return RequestContext(
        who="Practitioner/dr-x", site="CHM", roles=frozenset({"physician"}),
        scopes=frozenset(scopes),
    )  # fmt: skip


def test_the_decision_point_lets_a_restricted_type_through_to_its_filter() -> None:
    policy = access_policy(Settings(access_policy="care"), SiteRegistry(demo_senders()))
    doctor = _doctor("openid", LAB)
    policy.authorize(doctor, Action.SEARCH, "Observation")
    policy.authorize(doctor, Action.READ, "Observation")
    narrowed = policy.sql_filter(doctor, Action.SEARCH, "r").as_string(None)
    assert "scope_t.param = 'category'" in narrowed and "'laboratory'" in narrowed
    with pytest.raises(Forbidden, match="scopes"):
        policy.authorize(doctor, Action.CREATE, "Observation")
    with pytest.raises(Forbidden, match="scopes"):
        policy.authorize(_doctor("user/Observation.rs?date=ge2024"), Action.SEARCH, "Observation")
    # without restricted scopes the filter is the user's alone
    plain = policy.sql_filter(_doctor("user/Observation.rs"), Action.SEARCH, "r").as_string(None)
    assert "scope_t" not in plain
