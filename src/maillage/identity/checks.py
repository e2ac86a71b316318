"""The identity rules a source identity (a FHIR Patient) must keep to be written.

Pure: a Patient as parsed JSON (already valid against the FHIR model) and the IPP
systems of the configured sites in, the problems out, each with what to fix and a
FHIRPath-like location (``Patient.identifier[1].value``). The FHIR write path turns
them into a 422 (``maillage.fhir.business_rules``); nothing here raises or logs, and no
message quotes a value (an INS, a name or a birth date is personal data).

- An INS (NIR, NIA, test or demo NIR system) must have a good format and key
  (``identity.ins``), and is only kept on a qualified identity (RNIV: QUAL).
- The birth date cannot be in the future.
- An IPP (identifier type PI) must be under the IPP system of a configured site.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final

from maillage.errors import InvalidIns
from maillage.identity.ins import INS_SYSTEMS, check_ins

# FR Core identity reliability extension (URL and code system checked against the FR Core
# IG, ``fr-core-identity-reliability`` / ``fr-core-cs-v2-0445``). The name of the status
# slice and the RNIV code QUAL could not be confirmed there: the status is read from any
# ``valueCoding`` of the extension or of its sub-extensions, and these constants are the
# one place to correct them.
IDENTITY_RELIABILITY_URL: Final = (
    "https://hl7.fr/ig/fhir/core/StructureDefinition/fr-core-identity-reliability"
)
IDENTITY_RELIABILITY_SYSTEM: Final = "https://hl7.fr/ig/fhir/core/CodeSystem/fr-core-cs-v2-0445"
IDENTITY_STATUS_SLICE: Final = "identityStatus"
RNIV_STATUSES: Final = frozenset({"PROV", "RECUP", "VALI", "QUAL"})
QUALIFIED: Final = "QUAL"

V2_IDENTIFIER_TYPE_SYSTEM: Final = "http://terminology.hl7.org/CodeSystem/v2-0203"
IPP_TYPE: Final = "PI"


@dataclass(frozen=True, slots=True)
class Problem:
    """What to fix, and where (a FHIRPath-like expression)."""

    message: str
    expression: str


def check_patient(
    patient: dict[str, Any],
    ipp_systems: Iterable[str] | None,
    *,
    today: dt.date | None = None,
) -> list[Problem]:
    """The identity problems of a Patient. ``ipp_systems``: the configured sites' IPP
    systems; None when this process has no site configuration (IPP systems unchecked)."""
    problems: list[Problem] = []
    status = reliability_status(patient)
    identifiers = patient.get("identifier")
    if isinstance(identifiers, list):
        systems = frozenset(ipp_systems) if ipp_systems is not None else None
        for position, identifier in enumerate(identifiers):
            if isinstance(identifier, dict):
                problems.extend(_identifier_problems(identifier, position, status, systems))
    birth = patient.get("birthDate")
    if isinstance(birth, str) and _is_future(birth, today or dt.datetime.now(dt.UTC).date()):
        problems.append(
            Problem(
                "the birth date is in the future: correct it from the patient's identity document",
                "Patient.birthDate",
            )
        )
    return problems


def reliability_status(patient: dict[str, Any]) -> str | None:
    """The RNIV status (PROV, RECUP, VALI, QUAL) of the FR Core reliability extension."""
    for extension in _list(patient.get("extension")):
        if not isinstance(extension, dict) or extension.get("url") != IDENTITY_RELIABILITY_URL:
            continue
        for part in [extension, *_list(extension.get("extension"))]:
            coding = part.get("valueCoding") if isinstance(part, dict) else None
            if isinstance(coding, dict) and coding.get("code") in RNIV_STATUSES:
                return str(coding["code"])
    return None


def _identifier_problems(
    identifier: dict[str, Any],
    position: int,
    status: str | None,
    ipp_systems: frozenset[str] | None,
) -> list[Problem]:
    where = f"Patient.identifier[{position}]"
    system = identifier.get("system")
    value = identifier.get("value")
    problems: list[Problem] = []
    if isinstance(system, str) and system in INS_SYSTEMS:
        kind = INS_SYSTEMS[system]
        if not isinstance(value, str):
            problems.append(Problem(f"an INS identifier ({kind}) needs a value", where))
        else:
            try:
                check_ins(value, system)
            except InvalidIns as error:
                problems.append(Problem(f"INS ({kind}): {error.message}", f"{where}.value"))
        if status != QUALIFIED:
            current = status or "without a status"
            problems.append(
                Problem(
                    "the INS is only kept on a qualified identity (RNIV: QUAL, after an INSi "
                    f"check and an identity document); this identity is {current}: remove "
                    "the INS or qualify the identity (extension "
                    f"{IDENTITY_RELIABILITY_URL})",
                    where,
                )
            )
    elif is_ipp(identifier) and ipp_systems is not None and system not in ipp_systems:
        configured = ", ".join(sorted(ipp_systems)) or "none"
        problems.append(
            Problem(
                "an IPP (identifier type PI) must be under the IPP system of a configured "
                f"site; the configured systems are: {configured}",
                f"{where}.system",
            )
        )
    return problems


def is_ipp(identifier: dict[str, Any]) -> bool:
    kind = identifier.get("type")
    if not isinstance(kind, dict):
        return False
    return any(
        isinstance(coding, dict)
        and coding.get("code") == IPP_TYPE
        and coding.get("system") in (None, V2_IDENTIFIER_TYPE_SYSTEM)
        for coding in _list(kind.get("coding"))
    )


def _is_future(birth: str, today: dt.date) -> bool:
    """A FHIR date (YYYY, YYYY-MM or YYYY-MM-DD) after ``today`` at its own precision."""
    parts = birth.split("-")
    try:
        numbers = tuple(int(part) for part in parts[:3])
    except ValueError:
        return False
    reference = (today.year, today.month, today.day)[: len(numbers)]
    return numbers > reference


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []
