"""The one place where domain errors become HTTP statuses and OperationOutcomes."""

from __future__ import annotations

from typing import Any

from maillage import errors

_STATUS_BY_ERROR: tuple[tuple[type[errors.MaillageError], int], ...] = (
    (errors.UnsupportedParameter, 400),
    (errors.InvalidRequest, 400),
    (errors.ValidationFailed, 422),
    (errors.Unauthenticated, 401),
    (errors.NotFound, 404),
    (errors.Gone, 410),
    (errors.MethodNotAllowed, 405),
    (errors.Conflict, 409),
    (errors.PreconditionFailed, 412),
    (errors.Forbidden, 403),
    (errors.NotAcceptable, 406),
    (errors.PayloadTooLarge, 413),
    (errors.UnsupportedMediaType, 415),
    (errors.QueryTimeout, 503),
    (errors.TeleserviceUnavailable, 503),
)


def status_for(error: errors.MaillageError) -> int:
    for error_type, status in _STATUS_BY_ERROR:
        if isinstance(error, error_type):
            return status
    return 500


def operation_outcome(issues: list[errors.Issue]) -> dict[str, Any]:
    rendered = []
    for issue in issues:
        item: dict[str, Any] = {
            "severity": issue.severity,
            "code": issue.code,
            "diagnostics": issue.message,
        }
        if issue.expression:
            item["expression"] = [issue.expression]
        rendered.append(item)
    return {"resourceType": "OperationOutcome", "issue": rendered}


def outcome_for(error: errors.MaillageError) -> tuple[int, dict[str, Any]]:
    return status_for(error), operation_outcome(error.issues)


def information(message: str) -> dict[str, Any]:
    return operation_outcome([errors.Issue(message, severity="information", code="informational")])
