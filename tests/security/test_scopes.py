"""SMART scopes v1 and v2: parsing, and what a set of them allows."""

from __future__ import annotations

from typing import Any

import pytest

from maillage.app import access_policy
from maillage.demo.senders import demo_senders
from maillage.errors import Forbidden, InvalidRequest
from maillage.hl7v2.sites import SiteRegistry
from maillage.security import RequestContext
from maillage.security.policy import Action
from maillage.security.scopes import ScopeSet, letters_for, parse_scope
from maillage.settings import Settings


def test_v1_read_and_write_map_to_v2_letters() -> None:
    read = parse_scope("patient/*.read")
    write = parse_scope("user/Observation.write")
    star = parse_scope("system/*.*")
    assert read is not None and (read.context, read.resource_type, read.letters) == (
        "patient",
        "*",
        "rs",
    )
    assert write is not None and write.letters == "cud" and write.version == 1
    assert star is not None and star.letters == "cruds"


def test_v2_letters_and_restrictions() -> None:
    scope = parse_scope("patient/Observation.rs?category=laboratory")
    assert scope is not None
    assert scope.version == 2 and scope.letters == "rs"
    assert scope.restrictions == (("category", "laboratory"),)


@pytest.mark.parametrize(
    "text",
    [
        "patient/Observation.sr",  # letters out of order
        "user/Observation.rr",  # a letter twice
        "system/observation.read",  # type not capitalised
        "user/Observation.x",
        "patient/Observation.read?category=laboratory",  # v1 takes no restriction
        "user/Obs ervation.read",
    ],
)
def test_malformed_resource_scopes_are_refused(text: str) -> None:
    with pytest.raises(InvalidRequest):
        parse_scope(text)


def test_other_scopes_are_kept_and_grant_nothing() -> None:
    scopes = ScopeSet.parse("openid fhirUser launch/patient offline_access")
    assert scopes.resource == ()
    assert scopes.other == {"openid", "fhirUser", "launch/patient", "offline_access"}
    assert not scopes.allows(Action.READ, "Patient")


def test_lenient_parsing_keeps_a_malformed_scope_inert() -> None:
    scopes = ScopeSet.parse("user/observation.read user/Patient.rs", strict=False)
    assert scopes.other == {"user/observation.read"}
    assert scopes.allows(Action.READ, "Patient")
    assert not scopes.allows(Action.READ, "Observation")


@pytest.mark.parametrize(
    ("scope", "action", "resource_type", "allowed"),
    [
        ("patient/*.read", Action.READ, "Observation", True),
        ("patient/*.read", Action.SEARCH, "Observation", True),
        ("patient/*.read", Action.HISTORY, "Observation", True),
        ("patient/*.read", Action.CREATE, "Observation", False),
        ("user/Observation.write", Action.CREATE, "Observation", True),
        ("user/Observation.write", Action.UPDATE, "Observation", True),
        ("user/Observation.write", Action.DELETE, "Observation", True),
        ("user/Observation.write", Action.READ, "Observation", False),
        ("user/Observation.write", Action.CREATE, "Patient", False),
        ("user/Observation.rs", Action.READ, "Observation", True),
        ("user/Observation.rs", Action.SEARCH, "Observation", True),
        ("user/Observation.rs", Action.UPDATE, "Observation", False),
        ("user/Observation.r", Action.SEARCH, "Observation", False),
        ("user/Observation.s", Action.READ, "Observation", False),
        ("system/*.cruds", Action.DELETE, "Encounter", True),
        ("system/*.c", Action.UPDATE, "Encounter", False),
        ("system/*.*", Action.UPDATE, "Encounter", True),
    ],
)
def test_allows(scope: str, action: Action, resource_type: str, allowed: bool) -> None:
    assert ScopeSet.parse(scope).allows(action, resource_type) is allowed


def test_history_of_one_resource_is_a_read_of_a_type_a_search() -> None:
    assert letters_for(Action.HISTORY, instance=True) == "r"
    assert letters_for(Action.HISTORY, instance=False) == "s"
    read_only = ScopeSet.parse("user/Observation.r")
    assert read_only.allows(Action.HISTORY, "Observation", instance=True)
    assert not read_only.allows(Action.HISTORY, "Observation", instance=False)


def test_contexts_say_where_the_grant_holds() -> None:
    scopes = ScopeSet.parse("patient/Observation.rs user/Patient.r")
    assert scopes.contexts_allowing(Action.READ, "Observation") == {"patient"}
    assert scopes.allows(Action.READ, "Observation", contexts=["patient"])
    assert not scopes.allows(Action.READ, "Observation", contexts=["user", "system"])


def test_restricted_scopes_give_conditions_not_a_plain_yes() -> None:
    scopes = ScopeSet.parse(
        "patient/Observation.rs?category=laboratory patient/Observation.rs?category=vital-signs"
    )
    assert not scopes.allows(Action.SEARCH, "Observation")
    assert scopes.restrictions(Action.SEARCH, "Observation") == (
        (("category", "laboratory"),),
        (("category", "vital-signs"),),
    )
    assert scopes.restrictions(Action.SEARCH, "Condition") == ()


def test_covers_and_narrowing() -> None:
    granted = ScopeSet.parse("system/*.rs system/Observation.cruds")
    assert granted.covers(ScopeSet.parse("system/Patient.r system/Observation.cu"))
    assert granted.covers(ScopeSet.parse("system/Patient.read"))
    assert not granted.covers(ScopeSet.parse("system/Patient.c"))
    assert not granted.covers(ScopeSet.parse("user/Patient.r"))
    narrowed = granted.narrowed_to(ScopeSet.parse("system/Patient.r system/Condition.d"))
    assert str(narrowed) == "system/Patient.r"


def test_texts_round_trip() -> None:
    text = "openid user/*.cruds patient/Observation.read"
    assert ScopeSet.parse(text).texts == set(text.split())


def _care_policy() -> Any:
    return access_policy(Settings(access_policy="care"), SiteRegistry(demo_senders()))


def test_resource_scopes_narrow_a_users_rights_and_openid_scopes_narrow_nothing() -> None:
    """An identity provider's token often carries only OpenID scopes: they say nothing
    about resources, so the user's own rights apply; SMART resource scopes narrow them."""
    policy = _care_policy()

    def doctor(*scopes: str) -> RequestContext:
        return RequestContext(
            who="Practitioner/dr-x", site="CHM", roles=frozenset({"physician"}),
            scopes=frozenset(scopes),
        )  # fmt: skip

    policy.authorize(doctor("openid", "profile"), Action.READ, "Observation")
    policy.authorize(doctor(), Action.SEARCH, "Observation")
    policy.authorize(doctor("openid", "user/Patient.rs"), Action.READ, "Patient")
    with pytest.raises(Forbidden, match="scopes"):
        policy.authorize(doctor("openid", "user/Patient.rs"), Action.READ, "Observation")
