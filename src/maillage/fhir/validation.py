"""Validation of every resource written, against the R4B models of fhir.resources."""

from __future__ import annotations

from typing import Any

from fhir.resources.R4B import get_fhir_model_class
from pydantic import ValidationError

from maillage.errors import ErrorReport, Issue, MalformedContent, NotFound, ValidationFailed
from maillage.fhir.definitions import resource_types


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
        raise_mismatch = MalformedContent(
            f"resourceType {resource_type!r} does not match the URL type {expected_type!r}"
        )
        raise raise_mismatch
    require_known_type(resource_type)
    model = get_fhir_model_class(resource_type)
    try:
        model.model_validate(resource)
    except ValidationError as error:
        report = ErrorReport()
        for problem in error.errors()[:20]:
            path = ".".join(str(part) for part in (resource_type, *problem["loc"]))
            report.add(f"{path}: {problem['msg']}", expression=path)
        report.raise_if_any(ValidationFailed)
    except (ValueError, TypeError) as error:
        raise ValidationFailed(f"{resource_type}: {error}") from error
    return resource
