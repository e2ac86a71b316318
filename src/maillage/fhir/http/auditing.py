"""Every FHIR exchange into the audit trail, success or failure, in one place.

``fhir_endpoint`` (every FHIR route, the read-by-id fast path and the domains' FHIR
operations included) calls ``record_exchange`` with the request and the response it
built: the interaction comes from the method and path, the resources and their patients
from the response body (the resource, or a Bundle's entries), the outcome from the status.
Reads and searches go through the trail's batching writer without waiting.

A change that succeeded was already audited in its own transaction by the FHIR store's
journal (``audit/journal.py``), entry by entry for a Bundle: here it is not recorded
again; a seal pass is asked for (not awaited: the staged event is as durable as the
write, and waiting for the chain doubled a create's latency, ``bench/audit_writes.py``).
Without the journal (``journaled=False``) a successful write is recorded here, just
after its commit.

The trail is process-wide, set by the surface that assembles the hub (``configure``),
like the business rules' site configuration; without one, nothing is recorded.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from maillage.audit.events import Interaction, Outcome, by_patient
from maillage.audit.service import AuditTrail
from maillage.security import RequestContext

log = logging.getLogger(__name__)

_trail: AuditTrail | None = None
_journaled = False
_TYPE_LEVEL_WRITES = {
    "POST": Interaction.CREATE,
    "PUT": Interaction.UPDATE,
    "PATCH": Interaction.PATCH,
    "DELETE": Interaction.DELETE,
}
_WRITES = frozenset({Interaction.CREATE, Interaction.UPDATE, Interaction.PATCH, Interaction.DELETE})


def configure(trail: AuditTrail | None, *, journaled: bool = False) -> None:
    """``journaled``: the FHIR store stages each change's event in its transaction."""
    global _trail, _journaled
    _trail, _journaled = trail, journaled


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
    if _journaled and outcome == Outcome.SUCCESS and request.method != "GET":
        # Staged and committed with the write: chained by the next pass, without waiting
        # for it (the answer does not need the chain; the sealer's turn catches up anyway).
        trail.seal_soon()
        if interaction in _WRITES:
            return
    resources = _resources(response) if outcome == Outcome.SUCCESS else []
    query = request.url.query or None
    searched = interaction in (Interaction.SEARCH, Interaction.SEARCH_SYSTEM)
    groups = by_patient(resources)
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
        if not rest and method in _TYPE_LEVEL_WRITES:  # a create, or a conditional write
            return _TYPE_LEVEL_WRITES[method], resource_type, None
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
