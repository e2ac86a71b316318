"""The golden record of a territorial identity, built from its source identities.

Each trait is taken from the most reliable source that has it: RNIV status first (QUAL,
then VALI, RECUP, PROV, none), then the most recently updated. The INS is only carried
over from a QUAL source (the only INS the hub trusts). ``trait_sources`` says which
source each trait came from, for the review screens and the history.

The golden record is a FHIR Patient tagged ``territorial``, identified by the territorial
identifier, whose ``link`` lists its sources (``seealso``: the same person, in use); each
source points back with ``refer`` (``source_link``). Pure: JSON in, JSON out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from maillage.identity.checks import (
    IDENTITY_RELIABILITY_SYSTEM,
    IDENTITY_RELIABILITY_URL,
    IDENTITY_STATUS_SLICE,
    QUALIFIED,
    reliability_status,
)
from maillage.identity.ins import INS_SYSTEMS
from maillage.identity.patient_traits import BIRTH_PLACE_URL

TAG_SYSTEM: Final = "https://maillage.org/fhir/CodeSystem/patient-index"
TERRITORIAL_TAG: Final = "territorial"
# The territorial identifier's system (one territory per hub).
TERRITORIAL_SYSTEM: Final = "https://maillage.org/fhir/NamingSystem/territorial-id"

_RANK: Final = {"QUAL": 0, "VALI": 1, "RECUP": 2, "PROV": 3}
# trait → how to read it from a source Patient (None or [] when absent)
_TRAITS: Final = ("official_name", "usual_name", "gender", "birthDate", "birthPlace", "ins")
_CARRIED: Final = ("address", "telecom")


@dataclass(frozen=True, slots=True)
class Golden:
    body: dict[str, Any]
    trait_sources: dict[str, str]  # trait → source Patient id


def is_territorial(patient: dict[str, Any]) -> bool:
    meta = patient.get("meta")
    tags = meta.get("tag") if isinstance(meta, dict) else None
    return any(
        isinstance(tag, dict)
        and tag.get("system") == TAG_SYSTEM
        and tag.get("code") == TERRITORIAL_TAG
        for tag in (tags if isinstance(tags, list) else [])
    )


def build_golden(territorial_id: str, sources: Sequence[dict[str, Any]]) -> Golden:
    """``sources``: the member Patients (stored bodies, with ``id`` and ``meta``)."""
    ranked = rank_sources(sources)
    values: dict[str, Any] = {}
    trait_sources: dict[str, str] = {}
    for trait in (*_TRAITS, *_CARRIED):
        for source in ranked:
            value = _read(trait, source)
            if value:
                values[trait] = value
                trait_sources[trait] = str(source["id"])
                break
    body: dict[str, Any] = {
        "resourceType": "Patient",
        "id": territorial_id,
        "meta": {"tag": [{"system": TAG_SYSTEM, "code": TERRITORIAL_TAG}]},
        "identifier": [{"use": "official", "system": TERRITORIAL_SYSTEM, "value": territorial_id}],
        "active": bool(sources),
    }
    status = reliability_status(ranked[0]) if ranked else None
    if "ins" in values:
        body["identifier"].append(values["ins"])
        status = QUALIFIED
    extensions = [ext for ext in [values.get("birthPlace")] if ext]
    if status:
        extensions.append(_reliability(ranked[0], status))
    if extensions:
        body["extension"] = extensions
    names = [n for n in (values.get("official_name"), values.get("usual_name")) if n]
    if names:
        body["name"] = names
    for trait in ("gender", "birthDate", "address", "telecom"):
        if trait in values:
            body[trait] = values[trait]
    body["link"] = [
        {"other": {"reference": f"Patient/{source['id']}"}, "type": "seealso"}
        for source in sorted(sources, key=lambda source: str(source["id"]))
    ]
    return Golden(body, trait_sources)


def retired_golden(territorial_id: str, replaced_by: str | None) -> dict[str, Any]:
    """A territorial identity left without sources: inactive, pointing at its successor."""
    body: dict[str, Any] = {
        "resourceType": "Patient",
        "id": territorial_id,
        "meta": {"tag": [{"system": TAG_SYSTEM, "code": TERRITORIAL_TAG}]},
        "identifier": [{"use": "old", "system": TERRITORIAL_SYSTEM, "value": territorial_id}],
        "active": False,
    }
    if replaced_by:
        body["link"] = [{"other": {"reference": f"Patient/{replaced_by}"}, "type": "replaced-by"}]
    return body


def source_link(patient: dict[str, Any], territorial_id: str | None) -> dict[str, Any]:
    """The source Patient with its ``refer`` link set to its territorial identity (links of
    other types, written by the sites, are kept)."""
    kept = [
        link
        for link in _list(patient.get("link"))
        if not (isinstance(link, dict) and link.get("type") == "refer")
    ]
    if territorial_id is not None:
        kept.append({"other": {"reference": f"Patient/{territorial_id}"}, "type": "refer"})
    result = {key: value for key, value in patient.items() if key != "link"}
    if kept:
        result["link"] = kept
    return result


def rank_sources(sources: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Most reliable first (RNIV status), then most recently updated, then by id."""
    by_id = sorted(sources, key=lambda source: str(source.get("id")))
    recent_first = sorted(by_id, key=_last_updated, reverse=True)
    return sorted(
        recent_first, key=lambda source: _RANK.get(reliability_status(source) or "", len(_RANK))
    )


def _last_updated(source: dict[str, Any]) -> str:
    meta = source.get("meta")
    return str(meta.get("lastUpdated", "")) if isinstance(meta, dict) else ""


def _read(trait: str, source: dict[str, Any]) -> Any:
    names = [n for n in _list(source.get("name")) if isinstance(n, dict)]
    if trait == "official_name":
        return next((n for n in names if n.get("use") in ("official", None)), None)
    if trait == "usual_name":
        return next((n for n in names if n.get("use") == "usual"), None)
    if trait == "birthPlace":
        return next((e for e in _list(source.get("extension")) if _url(e) == BIRTH_PLACE_URL), None)
    if trait == "ins":
        if reliability_status(source) != QUALIFIED:
            return None
        return next(
            (
                {key: i[key] for key in ("use", "type", "system", "value") if key in i}
                for i in _list(source.get("identifier"))
                if isinstance(i, dict) and i.get("system") in INS_SYSTEMS
            ),
            None,
        )
    return source.get(trait)


def _reliability(source: dict[str, Any], status: str) -> dict[str, Any]:
    for extension in _list(source.get("extension")):
        if _url(extension) == IDENTITY_RELIABILITY_URL and reliability_status(source) == status:
            return dict(extension)
    return {
        "url": IDENTITY_RELIABILITY_URL,
        "extension": [
            {
                "url": IDENTITY_STATUS_SLICE,
                "valueCoding": {"system": IDENTITY_RELIABILITY_SYSTEM, "code": status},
            }
        ],
    }


def _url(extension: Any) -> Any:
    return extension.get("url") if isinstance(extension, dict) else None


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []
