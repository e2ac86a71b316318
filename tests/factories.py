"""Factories for synthetic FHIR resources and Bundles used across the tests.

Everything here is invented: names are obviously fictional, identifiers live under
the French *test* NIR system and a test IPP system, and each call draws fresh
identifier values so that tests never collide. Use these instead of copy-pasting
payloads; pass keyword overrides for what a test cares about.
"""

from __future__ import annotations

import base64
import json
import uuid
from pathlib import Path
from typing import Any

# INS test NIR (synthetic identities only) and a made-up local IPP system.
TEST_NIR_SYSTEM = "urn:oid:1.2.250.1.213.1.4.10"
TEST_IPP_SYSTEM = "urn:oid:1.2.250.1.999.1.1.1"
LOINC = "http://loinc.org"
V2_IDENTIFIER_TYPE_SYSTEM = "http://terminology.hl7.org/CodeSystem/v2-0203"
# FR Core: the INSEE code of a commune on an address (birthplace).
INSEE_CODE_URL = "https://hl7.fr/ig/fhir/core/StructureDefinition/fr-core-address-insee-code"
# (the hub reads the code whatever the system)
INSEE_SYSTEM = "https://mos.esante.gouv.fr/NOS/TRE_R13-CommuneOM/FHIR/TRE-R13-CommuneOM"

FIXTURES = Path(__file__).parent / "fixtures" / "fhir"

# FR Core identity reliability (RNIV status): an INS is only kept on a QUAL identity.
IDENTITY_RELIABILITY_URL = (
    "https://hl7.fr/ig/fhir/core/StructureDefinition/fr-core-identity-reliability"
)
IDENTITY_RELIABILITY_SYSTEM = "https://hl7.fr/ig/fhir/core/CodeSystem/fr-core-cs-v2-0445"


def new_value(prefix: str = "T") -> str:
    """A fresh identifier value (never a real NIR or IPP)."""
    return f"{prefix}{uuid.uuid4().hex[:12].upper()}"


def new_urn() -> str:
    return f"urn:uuid:{uuid.uuid4()}"


def identifier(value: str | None = None, system: str = TEST_IPP_SYSTEM) -> dict[str, str]:
    return {"system": system, "value": value or new_value()}


def patient(
    *,
    family: str = "Testeur",
    given: tuple[str, ...] = ("Camille",),
    birth_date: str = "1980-02-03",
    gender: str = "female",
    identifiers: list[dict[str, Any]] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A synthetic Patient; each call gets its own IPP unless ``identifiers`` is given."""
    resource: dict[str, Any] = {
        "resourceType": "Patient",
        "identifier": identifiers if identifiers is not None else [identifier()],
        "name": [{"family": family, "given": list(given)}],
        "gender": gender,
        "birthDate": birth_date,
    }
    resource.update(extra)
    return resource


def identity_reliability(status: str = "QUAL") -> dict[str, Any]:
    """The FR Core identity reliability extension with an RNIV status."""
    coding = {"system": IDENTITY_RELIABILITY_SYSTEM, "code": status}
    return {
        "url": IDENTITY_RELIABILITY_URL,
        "extension": [{"url": "identityStatus", "valueCoding": coding}],
    }


def source_identity(
    *,
    site: int = 0,
    ipp: str | None = None,
    birth_name: str = "Martin",
    used_name: str | None = None,
    given: tuple[str, ...] = ("Camille",),
    gender: str = "female",
    birth_date: str = "1980-02-03",
    birthplace: str | None = "99101",
    status: str | None = "PROV",
    ins: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A source identity as a site registers it (FR Core shape): the IPP of demo site
    number ``site`` (type PI), the birth name and birth first names (official name), a
    used name, the birthplace's INSEE code (99xxx: not a real commune), the RNIV status
    and, on a QUAL identity, an INS under the test NIR system."""
    from maillage.demo.sites import SITES

    identifiers: list[dict[str, Any]] = [
        {
            "type": {"coding": [{"system": V2_IDENTIFIER_TYPE_SYSTEM, "code": "PI"}]},
            "system": SITES[site].ipp_system,
            "value": ipp or new_value("IPP"),
        }
    ]
    if ins is not None:
        identifiers.append({"system": TEST_NIR_SYSTEM, "value": ins})
    names: list[dict[str, Any]] = [{"use": "official", "family": birth_name, "given": list(given)}]
    if used_name:
        names.append({"use": "usual", "family": used_name, "given": [given[0]]})
    resource: dict[str, Any] = {
        "resourceType": "Patient",
        "identifier": identifiers,
        "name": names,
        "gender": gender,
        "birthDate": birth_date,
    }
    extensions: list[dict[str, Any]] = []
    if birthplace:
        extensions.append(
            {
                "url": "http://hl7.org/fhir/StructureDefinition/patient-birthPlace",
                "valueAddress": {
                    "extension": [
                        {
                            "url": INSEE_CODE_URL,
                            "valueCoding": {"system": INSEE_SYSTEM, "code": birthplace},
                        }
                    ]
                },
            }
        )
    if status:
        extensions.append(identity_reliability(status))
    if extensions:
        resource["extension"] = extensions
    resource.update(extra)
    return resource


def synthetic_nir(first_13: str) -> str:
    """A synthetic NIR: ``first_13`` followed by its control key (97 - n mod 97, Corsica's
    2A/2B read as 19/18), computed here from the rule rather than by the code under test."""
    body = first_13.upper()
    digits = body[:5] + {"2A": "19", "2B": "18"}.get(body[5:7], body[5:7]) + body[7:]
    return f"{body}{97 - int(digits) % 97:02d}"


def observation(
    *,
    subject: str | None = None,
    code: str = "8867-4",
    display: str = "Heart rate",
    value: float = 72,
    unit: str = "/min",
    effective: str = "2024-03-01T10:00:00Z",
    **extra: Any,
) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": code, "display": display}]},
        "effectiveDateTime": effective,
        "valueQuantity": {
            "value": value,
            "unit": unit,
            "system": "http://unitsofmeasure.org",
            "code": unit,
        },
    }
    if subject is not None:
        resource["subject"] = {"reference": subject}
    resource.update(extra)
    return resource


def encounter(*, subject: str, start: str = "2024-03-01T08:00:00Z", **extra: Any) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Encounter",
        "status": "finished",
        "class": {
            "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
            "code": "IMP",
        },
        "subject": {"reference": subject},
        "period": {"start": start},
    }
    resource.update(extra)
    return resource


def organization(*, name: str = "Centre hospitalier de Testville", **extra: Any) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Organization",
        "identifier": [identifier(system="https://finess.esante.gouv.fr")],
        "name": name,
    }
    resource.update(extra)
    return resource


def practitioner(*, family: str = "Soignante", **extra: Any) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Practitioner",
        "identifier": [identifier(system="urn:oid:1.2.250.1.71.4.2.1")],  # an RPPS-like id
        "name": [{"family": family, "given": ["Alex"]}],
    }
    resource.update(extra)
    return resource


def objection(*, patient: str, status: str = "active") -> dict[str, Any]:
    """A Consent recording the patient's objection to sharing (``security/care.py``)."""
    return {
        "resourceType": "Consent",
        "status": status,
        "scope": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/consentscope",
                    "code": "patient-privacy",
                }
            ]
        },
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
        "patient": {"reference": patient},
        "policyRule": {"text": "opposition au partage entre établissements du GHT"},
        "provision": {"type": "deny"},
    }


def entry(
    method: str,
    url: str,
    resource: dict[str, Any] | None = None,
    *,
    full_url: str | None = None,
    if_none_exist: str | None = None,
    if_match: str | None = None,
) -> dict[str, Any]:
    """One Bundle.entry of a batch or transaction."""
    request: dict[str, Any] = {"method": method, "url": url}
    if if_none_exist is not None:
        request["ifNoneExist"] = if_none_exist
    if if_match is not None:
        request["ifMatch"] = if_match
    item: dict[str, Any] = {"request": request}
    if full_url is not None:
        item["fullUrl"] = full_url
    if resource is not None:
        item["resource"] = resource
    return item


def bundle(kind: str, entries: list[dict[str, Any]]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": kind, "entry": entries}


def transaction(*entries: dict[str, Any]) -> dict[str, Any]:
    return bundle("transaction", list(entries))


def batch(*entries: dict[str, Any]) -> dict[str, Any]:
    return bundle("batch", list(entries))


def json_patch_binary(operations: list[dict[str, Any]]) -> dict[str, Any]:
    """A JSON Patch carried in a Binary, as a PATCH entry of a Bundle holds it."""
    data = base64.b64encode(json.dumps(operations).encode()).decode()
    return {"resourceType": "Binary", "contentType": "application/json-patch+json", "data": data}


def load_fixture(name: str) -> Any:
    """A sample from ``tests/fixtures/fhir`` (written from the FHIR R4 spec's examples)."""
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


SNOMED = "http://snomed.info/sct"


def condition(
    *, subject: str, code: str = "38341003", system: str = SNOMED, **extra: Any
) -> dict[str, Any]:
    """A Condition coded in one system (SNOMED CT by default: hypertension)."""
    resource: dict[str, Any] = {
        "resourceType": "Condition",
        "subject": {"reference": subject},
        "code": {"coding": [{"system": system, "code": code}]},
    }
    resource.update(extra)
    return resource


def value_set(
    *,
    url: str | None = None,
    include: list[dict[str, Any]] | None = None,
    exclude: list[dict[str, Any]] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A ValueSet with a fresh test url; ``include``/``exclude`` are compose parts."""
    resource: dict[str, Any] = {
        "resourceType": "ValueSet",
        "url": url or f"http://example.org/fhir/ValueSet/{new_value('vs-')}",
        "status": "active",
    }
    if include is not None or exclude is not None:
        resource["compose"] = {"include": include or []}
        if exclude:
            resource["compose"]["exclude"] = exclude
    resource.update(extra)
    return resource


def concepts(system: str, *codes: str) -> dict[str, Any]:
    """A compose include/exclude part listing ``codes`` of ``system``."""
    return {"system": system, "concept": [{"code": code} for code in codes]}


def list_of(*references: str, deleted: tuple[str, ...] = (), **extra: Any) -> dict[str, Any]:
    """A List whose entries reference ``references`` (those in ``deleted`` flagged so)."""
    resource: dict[str, Any] = {
        "resourceType": "List",
        "status": "current",
        "mode": "working",
        "entry": [
            {
                "item": {"reference": reference},
                **({"deleted": True} if reference in deleted else {}),
            }
            for reference in references
        ],
    }
    resource.update(extra)
    return resource
