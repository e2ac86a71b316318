"""FHIR R4 AuditEvents in the IHE BALP style (Basic Audit Log Patterns), built from a
request context: pure, no SQL, no web.

One event per patient touched (BALP: a query whose results span several patients is
recorded once per patient), so that "who looked at my record" is one indexed lookup.
The event carries references only: never a name, a birth date or an address. The query
of a search is kept (base64, as ``entity.query`` wants) with the values of the
parameters that carry identity traits (name, birth date, address, telecom, free text)
replaced by ``***``: the audit says that someone searched by name, not the name.
"""

from __future__ import annotations

import base64
import datetime as dt
import uuid
from collections.abc import Iterable, Sequence
from enum import IntEnum, StrEnum
from typing import Any, Final
from urllib.parse import parse_qsl, quote

from maillage.errors import MaillageError
from maillage.security.context import RequestContext

EVENT_TYPE_SYSTEM: Final = "http://terminology.hl7.org/CodeSystem/audit-event-type"
INTERACTION_SYSTEM: Final = "http://hl7.org/fhir/restful-interaction"
ACTION_SYSTEM: Final = "http://hl7.org/fhir/audit-event-action"
PURPOSE_SYSTEM: Final = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
PARTICIPATION_SYSTEM: Final = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
DICOM_SYSTEM: Final = "http://dicom.nema.org/resources/ontology/DCM"
SOURCE_TYPE_SYSTEM: Final = "http://terminology.hl7.org/CodeSystem/security-source-type"
ENTITY_TYPE_SYSTEM: Final = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
OBJECT_ROLE_SYSTEM: Final = "http://terminology.hl7.org/CodeSystem/object-role"
SECURITY_SYSTEM: Final = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
# The hub's own naming systems (users that are not FHIR references, roles, sites).
USER_SYSTEM: Final = "urn:maillage:user"
ROLE_SYSTEM: Final = "urn:maillage:role"
SITE_SYSTEM: Final = "urn:maillage:site"
BREAK_THE_GLASS: Final = "ETREAT"


class Interaction(StrEnum):
    """The FHIR RESTful interaction audited (AuditEvent.subtype)."""

    READ = "read"
    VREAD = "vread"
    SEARCH = "search-type"
    SEARCH_SYSTEM = "search-system"
    CREATE = "create"
    UPDATE = "update"
    PATCH = "patch"
    DELETE = "delete"
    HISTORY = "history-instance"
    HISTORY_TYPE = "history-type"
    OPERATION = "operation"


# AuditEvent.action: Create, Read, Update, Delete, Execute (BALP: a query is E).
ACTIONS: Final = {
    Interaction.READ: "R",
    Interaction.VREAD: "R",
    Interaction.HISTORY: "R",
    Interaction.HISTORY_TYPE: "R",
    Interaction.SEARCH: "E",
    Interaction.SEARCH_SYSTEM: "E",
    Interaction.OPERATION: "E",
    Interaction.CREATE: "C",
    Interaction.UPDATE: "U",
    Interaction.PATCH: "U",
    Interaction.DELETE: "D",
}
ACTION_NAMES: Final = {"C": "create", "R": "read", "U": "update", "D": "delete", "E": "execute"}


class Outcome(IntEnum):
    """AuditEvent.outcome (http://hl7.org/fhir/audit-event-outcome)."""

    SUCCESS = 0
    MINOR_FAILURE = 4  # the request was refused or wrong (4xx)
    SERIOUS_FAILURE = 8  # the hub failed (5xx)
    MAJOR_FAILURE = 12  # the hub is unusable


OUTCOME_TEXT: Final = {
    Outcome.SUCCESS: "success",
    Outcome.MINOR_FAILURE: "minor failure",
    Outcome.SERIOUS_FAILURE: "serious failure",
    Outcome.MAJOR_FAILURE: "major failure",
}

# Search parameters whose values are identity traits or free text: redacted in the query.
_TRAIT_PARAMETERS: Final = frozenset(
    {
        "name",
        "family",
        "given",
        "phonetic",
        "birthdate",
        "death-date",
        "address",
        "address-city",
        "address-postalcode",
        "address-state",
        "address-country",
        "address-use",
        "telecom",
        "phone",
        "email",
        "_content",
        "_text",
        "_filter",
    }
)
REDACTED: Final = "***"


def outcome_of(result: Outcome | BaseException | None) -> tuple[Outcome, str]:
    """The outcome and its description: a domain error is the caller's (4) and is
    described by its class and code only (its message may echo submitted data)."""
    if result is None or isinstance(result, Outcome):
        outcome = result or Outcome.SUCCESS
        return outcome, OUTCOME_TEXT[outcome]
    if isinstance(result, MaillageError):
        return Outcome.MINOR_FAILURE, f"{type(result).__name__} ({result.code})"
    return Outcome.SERIOUS_FAILURE, f"{type(result).__name__} (server error)"


def redact_query(query: str) -> str:
    """The query string with the values of identity-trait parameters replaced."""
    parts = []
    for name, value in parse_qsl(query.lstrip("?"), keep_blank_values=True):
        # a chained parameter (subject:Patient.name) counts by its last link, unmodified
        base = name.split(".")[-1].split(":")[0]
        shown = REDACTED if base in _TRAIT_PARAMETERS else value
        parts.append(f"{quote(name, safe=':._-')}={quote(shown, safe=':/,._-|*')}")
    return "&".join(parts)


def instant(moment: dt.datetime) -> str:
    """The canonical text of a recorded time: UTC, microseconds, ``Z``."""
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _reference_or_identifier(who: str, system: str) -> dict[str, Any]:
    kind, _, rest = who.partition("/")
    if rest and kind[:1].isupper() and kind.isalpha() and "/" not in rest:
        return {"reference": who}
    return {"identifier": {"system": system, "value": who}}


def _coding(system: str, code: str, display: str | None = None) -> dict[str, str]:
    coding = {"system": system, "code": code}
    if display:
        coding["display"] = display
    return coding


_PERSON = _coding(ENTITY_TYPE_SYSTEM, "1", "Person")
_PATIENT_ROLE = _coding(OBJECT_ROLE_SYSTEM, "1", "Patient")
_OBJECT = _coding(ENTITY_TYPE_SYSTEM, "2", "System Object")
_RESOURCE_ROLE = _coding(OBJECT_ROLE_SYSTEM, "4", "Domain Resource")


def _purpose(ctx: RequestContext) -> list[dict[str, Any]]:
    purpose: dict[str, Any] = {"coding": [_coding(PURPOSE_SYSTEM, ctx.purpose)]}
    if ctx.purpose == BREAK_THE_GLASS:
        purpose["text"] = "break-the-glass"
        purpose["coding"].append(_coding(SECURITY_SYSTEM, "BTG", "break the glass"))
    return [purpose]


def _agents(ctx: RequestContext, hub: str) -> list[dict[str, Any]]:
    user: dict[str, Any] = {
        "type": {"coding": [_coding(PARTICIPATION_SYSTEM, "IRCP", "information recipient")]},
        "who": _reference_or_identifier(ctx.who, USER_SYSTEM),
        "requestor": True,
        "purposeOfUse": _purpose(ctx),
    }
    if ctx.roles:
        user["role"] = [{"coding": [_coding(ROLE_SYSTEM, role)]} for role in sorted(ctx.roles)]
    if ctx.site:
        user["location"] = {"identifier": {"system": SITE_SYSTEM, "value": ctx.site}}
    agents = [
        user,
        {
            "type": {"coding": [_coding(DICOM_SYSTEM, "110152", "Destination Role ID")]},
            "who": {"identifier": {"system": USER_SYSTEM, "value": hub}},
            "requestor": False,
        },
    ]
    if ctx.organisation:
        agents.append(
            {
                "type": {"coding": [_coding(PARTICIPATION_SYSTEM, "PRF", "performer")]},
                "who": _reference_or_identifier(ctx.organisation, SITE_SYSTEM),
                "requestor": False,
            }
        )
    return agents


def build_event(
    ctx: RequestContext,
    interaction: Interaction | str,
    resource_type: str,
    ids: Iterable[str] = (),
    patient_id: str | None = None,
    outcome: Outcome | BaseException | None = Outcome.SUCCESS,
    query: str | None = None,
    *,
    recorded: dt.datetime,
    hub: str = "maillage",
    event_id: str | None = None,
) -> dict[str, Any]:
    """One AuditEvent (a plain JSON dict) for one access or change, about one patient
    (or none). ``ids`` are ids of ``resource_type`` or ``Type/id`` references."""
    return build_events(
        ctx, interaction, resource_type, [(patient_id, list(ids))], outcome, query,
        recorded=recorded, hub=hub, event_ids=[event_id] if event_id else None,
    )[0]  # fmt: skip


def build_events(
    ctx: RequestContext,
    interaction: Interaction | str,
    resource_type: str,
    groups: Sequence[tuple[str | None, Sequence[str]]],
    outcome: Outcome | BaseException | None = Outcome.SUCCESS,
    query: str | None = None,
    *,
    recorded: dt.datetime,
    hub: str = "maillage",
    event_ids: Sequence[str] | None = None,
) -> list[dict[str, Any]]:
    """The AuditEvents of one access: one per (patient or None, resource ids) group. What
    they share (agents, source, purpose, the query) is built once: a search page about
    fifty patients makes fifty events."""
    interaction = Interaction(interaction)
    code, description = outcome_of(outcome)
    shared: dict[str, Any] = {
        "resourceType": "AuditEvent",
        "type": _coding(EVENT_TYPE_SYSTEM, "rest", "Restful Operation"),
        "subtype": [_coding(INTERACTION_SYSTEM, interaction.value)],
        "action": ACTIONS[interaction],
        "recorded": instant(recorded),
        "outcome": str(int(code)),
        "outcomeDesc": description,
        "purposeOfEvent": _purpose(ctx),
        "agent": _agents(ctx, hub),
        "source": {
            "site": ctx.site or hub,
            "observer": {"identifier": {"system": USER_SYSTEM, "value": hub}},
            "type": [_coding(SOURCE_TYPE_SYSTEM, "4", "Application Server")],
        },
    }
    query_entity = (
        {
            "type": _coding(ENTITY_TYPE_SYSTEM, "2", "System Object"),
            "role": _coding(OBJECT_ROLE_SYSTEM, "24", "Query"),
            "description": resource_type,
            "query": base64.b64encode(redact_query(query).encode()).decode("ascii"),
        }
        if query is not None
        else None
    )
    events = []
    for position, (patient_id, ids) in enumerate(groups):
        entities = _entities(resource_type, ids, patient_id)
        if query_entity is not None:
            entities.append(query_entity)
        event = {
            "resourceType": "AuditEvent",
            "id": event_ids[position] if event_ids else uuid.uuid4().hex,
            **shared,
        }
        if entities:
            event["entity"] = entities
        events.append(event)
    return events


def _entities(
    resource_type: str, ids: Iterable[str], patient_id: str | None
) -> list[dict[str, Any]]:
    entities: list[dict[str, Any]] = []
    if patient_id is not None:
        entities.append(
            {
                "what": {"reference": f"Patient/{patient_id}"},
                "type": _PERSON,
                "role": _PATIENT_ROLE,
            }
        )
    own = f"Patient/{patient_id}"
    for resource_id in ids:
        # "Type/id" names a resource of another type (a search's includes); a FHIR id
        # never holds a "/".
        reference = resource_id if "/" in resource_id else f"{resource_type}/{resource_id}"
        if reference != own:
            entities.append(
                {"what": {"reference": reference}, "type": _OBJECT, "role": _RESOURCE_ROLE}
            )
    return entities


def by_patient(resources: Iterable[dict[str, Any]]) -> dict[str | None, list[str]]:
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
