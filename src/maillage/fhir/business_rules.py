"""Business rules checked on every write after the FHIR model's validation, per type.

``check_business_rules`` is called where ``validate_resource`` is (the repository's
create and update, through which patch, conditional writes and Bundles go, and the bulk
loader's ``prepare_one``). A type without rules passes unchanged. Problems are raised
together as one ``IdentityRejected`` (422, issues located like validation errors).

The hub's site configuration (the IPP system of each configured site) is process-wide,
like the search parameter definitions: the surface that knows the sites (``app.py``, the
CLI) calls ``configure`` before serving or loading; forked loader workers inherit it.
Until then IPP systems are not checked (library use), the other rules are.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from maillage.errors import IdentityRejected, Issue
from maillage.identity.checks import check_patient


@dataclass(frozen=True, slots=True)
class SiteConfiguration:
    """What the rules need to know of the configured sites; None: not configured."""

    ipp_systems: frozenset[str] | None = None


_configuration = SiteConfiguration()


def configure(ipp_systems: Iterable[str] | None) -> None:
    """Set the configured sites' IPP systems for this process (None: unchecked)."""
    global _configuration
    _configuration = SiteConfiguration(frozenset(ipp_systems) if ipp_systems is not None else None)


def configuration() -> SiteConfiguration:
    return _configuration


def _patient_rules(resource: dict[str, Any], config: SiteConfiguration) -> list[Issue]:
    return [
        Issue(message=problem.message, expression=problem.expression, code="business-rule")
        for problem in check_patient(resource, config.ipp_systems)
    ]


RULES: dict[str, Callable[[dict[str, Any], SiteConfiguration], list[Issue]]] = {
    "Patient": _patient_rules,
}


def check_business_rules(resource: dict[str, Any]) -> dict[str, Any]:
    """Return the (already validated) resource unchanged, or raise ``IdentityRejected``."""
    rules = RULES.get(resource["resourceType"])
    if rules is None:
        return resource
    issues = rules(resource, _configuration)
    if issues:
        summary = "; ".join(f"{issue.expression}: {issue.message}" for issue in issues[:3])
        raise IdentityRejected(summary, issues=issues)
    return resource
