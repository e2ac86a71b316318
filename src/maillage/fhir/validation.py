"""Validation of every resource written.

The rules are those of the fhir.resources R4B models, compiled once into plain tables
(``maillage.fhir.validation_schema``) and checked without building the models: about
25 µs a Synthea resource instead of 200 to 400 (``bench/validation.py``). Where the
models are more lenient than FHIR's JSON format (``"active": "yes"``, ``"birthDate": 0``,
empty arrays, nulls, a ``uri`` with spaces, codes outside a required binding...) the
specification wins; the differential tests (``tests/fhir/validation``) pin both the
agreement with fhir.resources and each such difference.
Issues are located by FHIRPath-like expressions (``Patient.name[0].family``).
"""

from __future__ import annotations

from typing import Any

from maillage.errors import Issue, MalformedContent, NotFound, ValidationFailed
from maillage.fhir import validation_schema
from maillage.fhir.definitions import resource_types

# A resource that breaks this many rules is reported by its first ones.
MAX_ISSUES = 50


def require_known_type(resource_type: str) -> None:
    if resource_type not in resource_types():
        raise NotFound(
            f"unknown resource type {resource_type!r}",
            issues=[Issue(f"unknown resource type {resource_type!r}", code="not-supported")],
        )


def validate_resource(resource: Any, *, expected_type: str | None = None) -> dict[str, Any]:
    """Check a parsed JSON resource; returns it unchanged or raises with located issues."""
    if not isinstance(resource, dict) or not isinstance(resource.get("resourceType"), str):
        raise MalformedContent("the body is not a FHIR resource (no resourceType)")
    resource_type = resource["resourceType"]
    if expected_type is not None and resource_type != expected_type:
        raise MalformedContent(
            f"resourceType {resource_type!r} does not match the URL type {expected_type!r}"
        )
    require_known_type(resource_type)
    problems = validation_schema.check(resource, resource_type)
    if problems:
        issues = [
            Issue(message=f"{path}: {problem}", expression=path)
            for path, problem in problems[:MAX_ISSUES]
        ]
        summary = "; ".join(issue.message for issue in issues[:3])
        raise ValidationFailed(summary, issues=issues)
    return resource


def warm_up() -> int:
    """Compile the validation schemas of every known type now; returns how many."""
    return validation_schema.warm_up()
