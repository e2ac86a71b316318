"""Every FHIR exchange into the audit trail, success or failure, in one place.

``fhir_endpoint`` (every FHIR route, the read-by-id fast path and the domains' FHIR
operations included) calls ``record_exchange`` with the request and the response it
built: the interaction comes from the method and path, the resources and their patients
from the response body (the resource, or a Bundle's entries), the outcome from the status.
Reads and searches go through the trail's batching writer without waiting; writes wait
for their audit row (it commits just after the write: a crash between the two loses that
row, a gap the audit's own tests name).

The trail is process-wide, set by the surface that assembles the hub (``configure``),
like the business rules' site configuration; without one, nothing is recorded.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from maillage.audit.events import Interaction, Outcome
from maillage.audit.service import AuditTrail
from maillage.security import RequestContext

log = logging.getLogger(__name__)

_trail: AuditTrail | None = None
_WRITES = frozenset({Interaction.CREATE, Interaction.UPDATE, Interaction.PATCH, Interaction.DELETE})


def configure(trail: AuditTrail | None) -> None:
    global _trail
    _trail = trail


async def record_exchange(request: Request, response: Response, ctx: RequestContext | None) -> None:
    trail = _trail
    if trail is None or ctx is None:
        return
    path = request.url.path
    if not path.startswith("/fhir/") or path == "/fhir/metadata":
        return
    interaction, resource_type, resource_id = _interaction(request.method, path)
    if resource_type == "AuditEvent":
        return  # the audit's own search records itself
    outcome = (
        Outcome.SUCCESS
        if response.status_code < 400
        else Outcome.MINOR_FAILURE
        if response.status_code < 500
        else Outcome.SERIOUS_FAILURE
    )
    resources = _resources(response) if outcome == Outcome.SUCCESS else []
    query = request.url.query or None
    searched = interaction in (Interaction.SEARCH, Interaction.SEARCH_SYSTEM)
    groups = _by_patient(resources)
    if not groups:
        groups = {None: [resource_id] if resource_id else []}
    try:
        # One event per patient, naming that patient's resources only: "who looked at my
        # record" reads one event per access, and a page about fifty patients makes fifty
        # small events, not fifty events each naming every result.
        await trail.record(
            ctx,
            interaction,
            resource_type or "Resource",
            outcome=outcome,
            query=query if searched else None,
            groups=list(groups.items()),
            wait=interaction in _WRITES,
        )
    except Exception:
        log.exception("audit: the exchange on %s could not be recorded", resource_type)


def _by_patient(resources: list[dict[str, Any]]) -> dict[str | None, list[str]]:
    """``Type/id`` of each resource, grouped by the patients it is about (None: about
    no patient)."""
    groups: dict[str | None, list[str]] = {}
    for resource in resources:
        resource_id = resource.get("id")
        if not resource_id:
            continue
        reference = f"{resource.get('resourceType')}/{resource_id}"
        patients: list[str | None] = [*sorted(patients_of(resource))] or [None]
        for patient in patients:
            groups.setdefault(patient, []).append(reference)
    return groups


def _interaction(method: str, path: str) -> tuple[Interaction, str | None, str | None]:
    parts = [part for part in path.removeprefix("/fhir").split("/") if part]
    first = parts[0] if parts else None
    if not parts or first is None or first.startswith(("$", "_")):
        kind = Interaction.SEARCH_SYSTEM if method == "GET" and not parts else Interaction.OPERATION
        return kind, None, None
    resource_type = first
    rest = parts[1:]
    if any(part.startswith("$") for part in rest):
        return (
            Interaction.OPERATION,
            resource_type,
            rest[0] if not rest[0].startswith("$") else None,
        )
    if not rest or rest == ["_search"]:
        if method == "POST" and not rest:
            return Interaction.CREATE, resource_type, None
        return Interaction.SEARCH, resource_type, None
    resource_id = rest[0]
    if rest[1:2] == ["_history"]:
        return (
            (Interaction.VREAD if len(rest) > 2 else Interaction.HISTORY),
            resource_type,
            resource_id,
        )
    if len(rest) > 1:  # a compartment search: Patient/{id}/{type}
        return Interaction.SEARCH, rest[1], None
    return (
        {
            "GET": Interaction.READ,
            "PUT": Interaction.UPDATE,
            "PATCH": Interaction.PATCH,
            "DELETE": Interaction.DELETE,
        }.get(method, Interaction.OPERATION),
        resource_type,
        resource_id,
    )


def _resources(response: Response) -> list[dict[str, Any]]:
    body = getattr(response, "body", b"")
    if not body or not response.headers.get("content-type", "").startswith("application/fhir"):
        return []
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return []
    if not isinstance(parsed, dict):
        return []
    if parsed.get("resourceType") == "Bundle":
        return [
            entry["resource"]
            for entry in parsed.get("entry") or []
            if isinstance(entry, dict) and isinstance(entry.get("resource"), dict)
        ]
    return [parsed] if parsed.get("resourceType") not in (None, "OperationOutcome") else []


def patients_of(resource: dict[str, Any]) -> set[str]:
    """The patients a resource is about: a Patient itself, else the Patients its
    ``subject``, ``patient`` or ``beneficiary`` reference."""
    if resource.get("resourceType") == "Patient" and isinstance(resource.get("id"), str):
        return {resource["id"]}
    found: set[str] = set()
    for field in ("subject", "patient", "beneficiary"):
        value = resource.get(field)
        reference = value.get("reference") if isinstance(value, dict) else None
        if isinstance(reference, str) and reference.startswith("Patient/"):
            found.add(reference.removeprefix("Patient/"))
    return found
