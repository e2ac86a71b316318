"""Care relationships: who takes part in a patient's care, read from the resources that
say so. Pure: a resource in, its grants out.

A grant opens a patient's record to a *principal*: a practitioner (``Practitioner/id``)
or a whole site (``Organization/id``, the site's organisation):

- an Encounter grants its participants and its service provider (the site), while it is
  open and for ``recent_days`` after it ended (a cancelled or entered-in-error one grants
  nothing);
- a CareTeam (active or proposed) grants its Practitioner members, and its managing
  organisations, until its period ends;
- a ServiceRequest (a referral: active or on hold) grants its performers.

Grants are kept per source resource, so an update replaces them and a delete removes
them (``care_store.replace_grants``). Break-the-glass grants are added by the access
service for a limited time.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, Final

CARE_TYPES: Final = ("Encounter", "CareTeam", "ServiceRequest")
OBJECTION_TYPE: Final = "Consent"
_PRINCIPAL_TYPES: Final = ("Practitioner", "Organization")
_ENCOUNTER_NO_CARE: Final = frozenset({"cancelled", "entered-in-error"})
_TEAM_ACTIVE: Final = frozenset({"active", "proposed", "suspended"})
_REFERRAL_ACTIVE: Final = frozenset({"active", "on-hold", "draft"})


@dataclass(frozen=True, slots=True)
class Grant:
    patient_id: str
    principal: str
    until: dt.datetime | None  # None: open-ended


def grants_of(resource: dict[str, Any], *, recent_days: int) -> list[Grant]:
    """The grants a resource gives (none for other types)."""
    kind = resource.get("resourceType")
    patient = _patient_id(resource.get("subject"))
    if patient is None:
        return []
    if kind == "Encounter":
        if resource.get("status") in _ENCOUNTER_NO_CARE:
            return []
        end = _instant(_get(resource, "period", "end"))
        until = end + dt.timedelta(days=recent_days) if end is not None else None
        principals = [_principal(_get(p, "individual")) for p in _list(resource.get("participant"))]
        principals.append(_principal(resource.get("serviceProvider")))
    elif kind == "CareTeam":
        if resource.get("status") not in _TEAM_ACTIVE:
            return []
        until = _instant(_get(resource, "period", "end"))
        principals = [_principal(_get(p, "member")) for p in _list(resource.get("participant"))]
        principals.extend(_principal(o) for o in _list(resource.get("managingOrganization")))
    elif kind == "ServiceRequest":
        if resource.get("status") not in _REFERRAL_ACTIVE:
            return []
        until = None
        principals = [_principal(p) for p in _list(resource.get("performer"))]
    else:
        return []
    return [
        Grant(patient, principal, until)
        for principal in sorted({p for p in principals if p is not None})
    ]


def objection_of(consent: dict[str, Any]) -> str | None:
    """The patient who objects to sharing, if this Consent is an active denial: status
    active and a base provision of type ``deny`` (the patient's opposition to the
    exchange of their record between the GHT's professionals)."""
    if consent.get("resourceType") != "Consent" or consent.get("status") != "active":
        return None
    if _get(consent, "provision", "type") != "deny":
        return None
    return _patient_id(consent.get("patient"))


def _patient_id(reference: Any) -> str | None:
    target = _reference(reference)
    if target is None:
        return None
    kind, _, identifier = target.partition("/")
    return identifier if kind == "Patient" and identifier and "/" not in identifier else None


def _principal(reference: Any) -> str | None:
    target = _reference(reference)
    if target is None:
        return None
    kind, _, identifier = target.partition("/")
    if kind in _PRINCIPAL_TYPES and identifier and "/" not in identifier:
        return target
    return None


def _reference(value: Any) -> str | None:
    reference = value.get("reference") if isinstance(value, dict) else None
    return reference if isinstance(reference, str) else None


def _instant(value: Any) -> dt.datetime | None:
    """A FHIR dateTime as the latest instant it covers (a date ends at its day's end)."""
    if not isinstance(value, str) or not value:
        return None
    try:
        if len(value) == 4:
            return dt.datetime(int(value) + 1, 1, 1, tzinfo=dt.UTC)
        if len(value) == 7:
            year, month = int(value[:4]), int(value[5:7])
            return dt.datetime(year + month // 12, month % 12 + 1, 1, tzinfo=dt.UTC)
        if len(value) == 10:
            return dt.datetime.fromisoformat(value).replace(tzinfo=dt.UTC) + dt.timedelta(days=1)
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)
    except ValueError:
        return None


def _get(node: Any, *keys: str) -> Any:
    for key in keys:
        node = node.get(key) if isinstance(node, dict) else None
    return node


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []
