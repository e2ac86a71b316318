"""The role × action × resource type matrix, read from ``security/data/policy.json``.

Pure. A role allows a set of actions per resource type or per group of types
(``directory``, ``conformance``, ``audit``; ``clinical`` is every type of the Patient
compartment other than Patient, given by the caller from the FHIR definitions). A type
named for itself wins over its group. Whatever is not listed is refused. ``care`` says
whether the role's access to patient data needs a care relationship.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources
from typing import Any, Final

from maillage.errors import ConfigurationError
from maillage.security.policy import Action

LETTERS: Final = {
    Action.READ: "r",
    Action.SEARCH: "s",
    Action.HISTORY: "h",
    Action.CREATE: "c",
    Action.UPDATE: "u",
    Action.DELETE: "d",
}
CLINICAL: Final = "clinical"


@dataclass(frozen=True, slots=True)
class RoleRules:
    care: bool
    allow: dict[str, str]  # type or group → action letters


@dataclass(frozen=True)
class Matrix:
    groups: dict[str, frozenset[str]]
    roles: dict[str, RoleRules]
    clinical: frozenset[str]

    def allows(self, role: str, action: Action, resource_type: str) -> bool:
        rules = self.roles.get(role)
        if rules is None:
            return False
        letters = rules.allow.get(resource_type)
        if letters is None:
            letters = rules.allow.get(self.group_of(resource_type) or "", "")
        return LETTERS[action] in letters

    def needs_care(self, role: str, resource_type: str) -> bool:
        rules = self.roles.get(role)
        return bool(rules and rules.care and self.is_patient_data(resource_type))

    def is_patient_data(self, resource_type: str) -> bool:
        return resource_type == "Patient" or resource_type in self.clinical

    def group_of(self, resource_type: str) -> str | None:
        if resource_type in self.clinical:
            return CLINICAL
        for name, members in self.groups.items():
            if resource_type in members:
                return name
        return None


def load_matrix(clinical: Iterable[str], data: dict[str, Any] | None = None) -> Matrix:
    """The shipped policy (or ``data``), with the clinical types the caller knows."""
    if data is None:
        text = resources.files("maillage.security").joinpath("data/policy.json").read_text()
        data = json.loads(text)
    try:
        groups = {name: frozenset(types) for name, types in data["groups"].items()}
        roles = {
            name: RoleRules(bool(rule["care"]), dict(rule["allow"]))
            for name, rule in data["roles"].items()
        }
    except (KeyError, TypeError, AttributeError) as error:
        raise ConfigurationError(f"the access policy is malformed: {error}") from None
    known = set(LETTERS.values())
    for name, rule in roles.items():
        for target, letters in rule.allow.items():
            if set(letters) - known:
                raise ConfigurationError(
                    f"the access policy gives role {name!r} unknown actions {letters!r} on "
                    f"{target!r}: use the letters r s h c u d"
                )
    return Matrix(groups, roles, frozenset(clinical) - {"Patient"})
