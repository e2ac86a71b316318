"""The demo territory's FHIR resources: the GHT's organisations and the Synthea sample.

Pure: no I/O besides reading package data. The Synthea sample (10 living patients
and their deceased relatives, about 7,000 resources) ships gzipped in
``data/synthea-10``; its patients are spread over the sites deterministically, as
real site feeds would have left them: each patient is known by one to three
sites and carries each knowing site's IPP (identifier type PI, one system per
site); each encounter is attached to one of the patient's sites. Synthea's own
references are kept as they are.
"""

from __future__ import annotations

import gzip
import random
from collections.abc import Iterator
from dataclasses import dataclass
from hashlib import blake2b
from importlib import resources
from importlib.resources.abc import Traversable
from typing import Any

import orjson

from maillage.demo.sites import (
    FINESS_SYSTEM,
    FR_IDENTIFIER_TYPE_SYSTEM,
    FR_ORGANIZATION_TYPE_SYSTEM,
    GHT,
    SITES,
    SNOMED_SYSTEM,
    V2_IDENTIFIER_TYPE_SYSTEM,
    Site,
    Unit,
)

# Changing the seed changes every demo IPP: regenerate docs/demo-territory.md after.
SEED = "maillage-demo-territory-1"
# Weights of a patient being known by 1, 2 or 3 sites.
SITE_COUNT_WEIGHTS = (2, 2, 1)
SAMPLE_FOLDER = ("data", "synthea-10")
# Referenced resources first, so that a loader that resolves references finds them.
LOAD_ORDER = ("Organization", "Location", "Practitioner", "PractitionerRole", "Patient")

Resource = dict[str, Any]


@dataclass(frozen=True, slots=True)
class SiteIpp:
    """The IPP one site gave a patient."""

    site: Site
    ipp: str


def _coding(system: str, code: str, display: str) -> dict[str, Any]:
    return {"coding": [{"system": system, "code": code, "display": display}]}


def _reference(resource_type: str, resource_id: str, display: str) -> dict[str, str]:
    return {"reference": f"{resource_type}/{resource_id}", "display": display}


def _finess(value: str, *, geographical: bool) -> dict[str, Any]:
    code, display = (
        ("FINEG", "FINESS d'entité géographique")
        if geographical
        else ("FINEJ", "FINESS d'entité juridique")
    )
    return {
        "use": "official",
        "type": _coding(FR_IDENTIFIER_TYPE_SYSTEM, code, display),
        "system": FINESS_SYSTEM,
        "value": value,
    }


def _address(site: Site) -> dict[str, Any]:
    return {
        "use": "work",
        "line": [site.street],
        "city": site.town,
        "postalCode": site.postal_code,
        "country": "FR",
    }


def ght_organization() -> Resource:
    return {
        "resourceType": "Organization",
        "id": GHT.id,
        "active": True,
        "type": [
            _coding(FR_ORGANIZATION_TYPE_SYSTEM, "GHT", "Groupement hospitalier de territoire")
        ],
        "name": GHT.name,
    }


def site_organization(site: Site) -> Resource:
    """The hospital as a legal entity (FINESS EJ), member of the GHT."""
    return {
        "resourceType": "Organization",
        "id": site.organization_id,
        "identifier": [_finess(site.finess_ej, geographical=False)],
        "active": True,
        "type": [
            _coding(FR_ORGANIZATION_TYPE_SYSTEM, "LEGAL-ENTITY", "Entité légale"),
            _coding(
                "http://terminology.hl7.org/CodeSystem/organization-type",
                "prov",
                "Healthcare Provider",
            ),
        ],
        "name": site.name,
        # Organization?name= also searches aliases: the site code and MSH-4 find it.
        "alias": [site.code, site.sending_facility],
        "address": [_address(site)],
        "partOf": _reference("Organization", GHT.id, GHT.name),
    }


def site_location(site: Site) -> Resource:
    """The hospital's site, a geographical entity (FINESS ET)."""
    return {
        "resourceType": "Location",
        "id": site.location_id,
        "identifier": [_finess(site.finess_et, geographical=True)],
        "status": "active",
        "name": site.name,
        "alias": [site.code, site.sending_facility],
        "mode": "instance",
        "physicalType": _coding(
            "http://terminology.hl7.org/CodeSystem/location-physical-type", "si", "Site"
        ),
        "address": _address(site),
        "managingOrganization": _reference("Organization", site.organization_id, site.name),
    }


def unit_organization(site: Site, unit: Unit) -> Resource:
    """An UF of the site, identified by its code in the site's UF system."""
    return {
        "resourceType": "Organization",
        "id": site.unit_id(unit),
        "identifier": [{"use": "official", "system": site.uf_system, "value": unit.code}],
        "active": True,
        "type": [
            _coding(FR_ORGANIZATION_TYPE_SYSTEM, "UF", "Unité fonctionnelle"),
            _coding(SNOMED_SYSTEM, unit.specialty.code, unit.specialty.display),
        ],
        "name": unit.name,
        "partOf": _reference("Organization", site.organization_id, site.name),
    }


def territory_resources() -> Iterator[Resource]:
    """The GHT, its hospitals, their sites and their units."""
    yield ght_organization()
    for site in SITES:
        yield site_organization(site)
        yield site_location(site)
        for unit in site.units:
            yield unit_organization(site, unit)


def assign_sites(patient_ids: list[str]) -> dict[str, list[SiteIpp]]:
    """Which sites know each patient, and under which IPP; the first site manages it.

    Deterministic (seeded) and independent of the order ids are given in. The
    managing sites go round the acute-care hospitals, so that each manages patients.
    """
    managing = [site for site in SITES if site.acute_care]
    rng = random.Random(SEED)
    ipp_rngs = {site.code: random.Random(f"{SEED}:{site.code}") for site in SITES}
    used: dict[str, set[str]] = {site.code: set() for site in SITES}
    spread: dict[str, list[SiteIpp]] = {}
    for index, patient_id in enumerate(sorted(patient_ids)):
        first = managing[index % len(managing)]
        count = rng.choices((1, 2, 3), weights=SITE_COUNT_WEIGHTS)[0]
        others = rng.sample([site for site in SITES if site is not first], count - 1)
        known: list[SiteIpp] = []
        for site in (first, *others):
            known.append(SiteIpp(site, _new_ipp(ipp_rngs[site.code], used[site.code])))
        spread[patient_id] = known
    return spread


def _new_ipp(rng: random.Random, used: set[str]) -> str:
    """An 8-digit IPP the site has not given yet."""
    while True:
        ipp = str(rng.randrange(10_000_000, 100_000_000))
        if ipp not in used:
            used.add(ipp)
            return ipp


def ipp_identifier(known: SiteIpp) -> dict[str, Any]:
    return {
        "use": "usual",
        "type": {"coding": [{"system": V2_IDENTIFIER_TYPE_SYSTEM, "code": "PI"}]},
        "system": known.site.ipp_system,
        "value": known.ipp,
        "assigner": _reference("Organization", known.site.organization_id, known.site.name),
    }


def with_site_identities(patient: Resource, known: list[SiteIpp]) -> Resource:
    """The patient as the territory knows it: one IPP per knowing site."""
    first = known[0].site
    return {
        **patient,
        "identifier": [*patient.get("identifier", []), *map(ipp_identifier, known)],
        "managingOrganization": _reference("Organization", first.organization_id, first.name),
    }


def site_of_encounter(encounter_id: str, known: list[SiteIpp]) -> Site:
    """One of the patient's sites, the managing one twice as often as each other."""
    pool = [known[0].site, *(k.site for k in known)]
    digest = blake2b(encounter_id.encode(), digest_size=8).digest()
    return pool[int.from_bytes(digest) % len(pool)]


def at_site(encounter: Resource, site: Site) -> Resource:
    """The encounter as the site's feed sent it: its provider and location are the site."""
    return {
        **encounter,
        "serviceProvider": _reference("Organization", site.organization_id, site.name),
        "location": [{"location": _reference("Location", site.location_id, site.name)}],
    }


def _sample_files() -> dict[str, Traversable]:
    folder = resources.files("maillage.demo").joinpath(*SAMPLE_FOLDER)
    files = {
        entry.name.removesuffix(".ndjson.gz"): entry
        for entry in folder.iterdir()
        if entry.name.endswith(".ndjson.gz")
    }
    if "Patient" not in files:
        raise FileNotFoundError(f"the demo sample has no Patient file in {folder}")
    return files


def _read(file: Traversable) -> Iterator[Resource]:
    for line in gzip.decompress(file.read_bytes()).splitlines():
        if line.strip():
            yield orjson.loads(line)


def _patient_id(reference: Any) -> str | None:
    if isinstance(reference, dict):
        value = reference.get("reference")
        if isinstance(value, str) and value.startswith("Patient/"):
            return value.removeprefix("Patient/")
    return None


def sample_resources() -> Iterator[Resource]:
    """The Synthea sample, its patients and encounters spread over the sites."""
    files = _sample_files()
    patients = list(_read(files["Patient"]))
    spread = assign_sites([patient["id"] for patient in patients])
    ordered = [name for name in LOAD_ORDER if name in files]
    ordered += sorted(name for name in files if name not in LOAD_ORDER)
    for name in ordered:
        if name == "Patient":
            for patient in patients:
                yield with_site_identities(patient, spread[patient["id"]])
            continue
        for resource in _read(files[name]):
            patient_id = _patient_id(resource.get("subject"))
            if name == "Encounter" and patient_id in spread:
                site = site_of_encounter(resource["id"], spread[patient_id])
                yield at_site(resource, site)
            else:
                yield resource
    yield from current_stays(spread)


# The demo's clinicians (demo/accounts.py signs them in): the sample's encounters ended
# years ago, so each patient is in hospital today at its managing site, cared for there.
DEMO_PHYSICIAN = "Practitioner/demo-physician"
DEMO_NURSE = "Practitioner/demo-nurse"


def current_stays(spread: dict[str, list[SiteIpp]]) -> Iterator[Resource]:
    """One stay in progress per demo patient, at its managing site: the care relationship
    that lets the demo's clinicians read the records (docs/decisions/0006)."""
    for reference, family, given in (
        (DEMO_PHYSICIAN, "Démo", "Docteure"),
        (DEMO_NURSE, "Démo", "Infirmier"),
    ):
        yield {
            "resourceType": "Practitioner",
            "id": reference.removeprefix("Practitioner/"),
            "name": [{"family": family, "given": [given]}],
        }
    for patient_id, known in sorted(spread.items()):
        site = known[0].site
        yield at_site(
            {
                "resourceType": "Encounter",
                "id": f"demo-stay-{patient_id[:8]}",
                "status": "in-progress",
                "class": {
                    "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                    "code": "IMP",
                },
                "subject": {"reference": f"Patient/{patient_id}"},
                "participant": [
                    {"individual": {"reference": DEMO_PHYSICIAN}},
                    {"individual": {"reference": DEMO_NURSE}},
                ],
                "period": {"start": "2026-11-20T08:00:00+01:00"},
            },
            site,
        )


def demo_resources() -> Iterator[Resource]:
    """Every resource of the demo territory, referenced resources first."""
    yield from territory_resources()
    yield from sample_resources()


def demo_patient_sites() -> dict[str, list[SiteIpp]]:
    """For each demo patient id, the sites that know it and their IPPs (docs, tests)."""
    patients = _read(_sample_files()["Patient"])
    return assign_sites([patient["id"] for patient in patients])
