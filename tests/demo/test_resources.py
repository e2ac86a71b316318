"""The demo territory's resources, as built from the territory table and the Synthea sample."""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Iterator
from typing import Any

import pytest

from maillage.demo.senders import apply_site_configuration
from maillage.demo.sites import FINESS_SYSTEM, luhn_is_valid
from maillage.demo.territory import GHT, SITES, demo_patient_sites, demo_resources
from maillage.fhir.business_rules import check_business_rules
from maillage.fhir.validation import validate_resource
from maillage.identity.checks import check_patient

PI = {"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "PI"}
SITE_BY_IPP_SYSTEM = {site.ipp_system: site for site in SITES}


@pytest.fixture(scope="module")
def resources() -> list[dict[str, Any]]:
    return list(demo_resources())


@pytest.fixture(scope="module")
def by_key(resources: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {f"{r['resourceType']}/{r['id']}": r for r in resources}


def _of_type(resources: list[dict[str, Any]], resource_type: str) -> list[dict[str, Any]]:
    return [r for r in resources if r["resourceType"] == resource_type]


def _ipps(patient: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        identifier
        for identifier in patient.get("identifier", [])
        if PI in identifier.get("type", {}).get("coding", [])
    ]


def _references(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        if isinstance(node.get("reference"), str):
            yield node["reference"]
        for value in node.values():
            yield from _references(value)
    elif isinstance(node, list):
        for value in node:
            yield from _references(value)


def test_every_demo_resource_is_valid_fhir(resources: list[dict[str, Any]]) -> None:
    for resource in resources:
        validate_resource(resource)
    keys = [f"{r['resourceType']}/{r['id']}" for r in resources]
    assert len(keys) == len(set(keys)), "two demo resources share a type and id"
    counts = Counter(r["resourceType"] for r in resources)
    assert counts["Patient"] == 13
    assert counts["Encounter"] > 1000


def test_literal_references_resolve_inside_the_demo(
    resources: list[dict[str, Any]], by_key: dict[str, dict[str, Any]]
) -> None:
    literal = re.compile(r"^[A-Z][A-Za-z]+/[A-Za-z0-9\-.]{1,64}$")
    dangling = {
        reference
        for resource in resources
        for reference in _references(resource)
        if literal.match(reference) and reference not in by_key
    }
    assert not dangling


def test_each_patient_carries_one_to_three_site_ipps(resources: list[dict[str, Any]]) -> None:
    for patient in _of_type(resources, "Patient"):
        ipps = _ipps(patient)
        assert 1 <= len(ipps) <= 3
        systems = [identifier["system"] for identifier in ipps]
        assert len(set(systems)) == len(systems), "two IPPs of one site on one patient"
        for identifier in ipps:
            site = SITE_BY_IPP_SYSTEM[identifier["system"]]
            assert re.fullmatch(r"\d{8}", identifier["value"])
            assert identifier["assigner"]["reference"] == f"Organization/{site.organization_id}"
        first_site = SITE_BY_IPP_SYSTEM[systems[0]]
        assert patient["managingOrganization"]["reference"] == (
            f"Organization/{first_site.organization_id}"
        )


def test_ipps_are_unique_within_each_site_and_every_site_knows_patients(
    resources: list[dict[str, Any]],
) -> None:
    by_site: dict[str, list[str]] = defaultdict(list)
    for patient in _of_type(resources, "Patient"):
        for identifier in _ipps(patient):
            by_site[identifier["system"]].append(identifier["value"])
    assert set(by_site) == set(SITE_BY_IPP_SYSTEM)
    for values in by_site.values():
        assert len(values) == len(set(values))
    assert any(len(_ipps(p)) > 1 for p in _of_type(resources, "Patient"))


def test_the_spread_is_the_same_on_every_machine(resources: list[dict[str, Any]]) -> None:
    stored = {
        patient["id"]: [(i["system"], i["value"]) for i in _ipps(patient)]
        for patient in _of_type(resources, "Patient")
    }
    again = {
        patient_id: [(k.site.ipp_system, k.ipp) for k in known]
        for patient_id, known in demo_patient_sites().items()
    }
    assert stored == again


def test_organisations_form_the_ght_hierarchy(by_key: dict[str, dict[str, Any]]) -> None:
    ght = by_key[f"Organization/{GHT.id}"]
    assert "partOf" not in ght
    assert ght["type"][0]["coding"][0]["code"] == "GHT"
    finess_numbers: list[str] = []
    for site in SITES:
        hospital = by_key[f"Organization/{site.organization_id}"]
        assert hospital["partOf"]["reference"] == f"Organization/{GHT.id}"
        location = by_key[f"Location/{site.location_id}"]
        assert location["managingOrganization"]["reference"] == (
            f"Organization/{site.organization_id}"
        )
        for resource, kind in ((hospital, "FINEJ"), (location, "FINEG")):
            (finess,) = [i for i in resource["identifier"] if i["system"] == FINESS_SYSTEM]
            assert finess["type"]["coding"][0]["code"] == kind
            # Fictitious: department 99 does not exist; the key is valid like a real one.
            assert re.fullmatch(r"99\d{7}", finess["value"])
            assert luhn_is_valid(finess["value"])
            finess_numbers.append(finess["value"])
        assert site.units
        for unit in site.units:
            uf = by_key[f"Organization/{site.unit_id(unit)}"]
            assert uf["partOf"]["reference"] == f"Organization/{site.organization_id}"
            assert uf["identifier"] == [
                {"use": "official", "system": site.uf_system, "value": unit.code}
            ]
    assert len(set(finess_numbers)) == len(finess_numbers)
    assert len({site.sending_facility for site in SITES}) == len(SITES)


def test_each_encounter_happens_at_a_site_that_knows_the_patient(
    resources: list[dict[str, Any]], by_key: dict[str, dict[str, Any]]
) -> None:
    encounters = _of_type(resources, "Encounter")
    for encounter in encounters:
        patient = by_key[encounter["subject"]["reference"]]
        known = {
            f"Organization/{SITE_BY_IPP_SYSTEM[i['system']].organization_id}"
            for i in _ipps(patient)
        }
        provider = encounter["serviceProvider"]["reference"]
        assert provider in known
        location = by_key[encounter["location"][0]["location"]["reference"]]
        assert location["managingOrganization"]["reference"] == provider
    providers = Counter(e["serviceProvider"]["reference"] for e in encounters)
    assert len(providers) == len(SITES)


def test_every_demo_patient_keeps_the_identity_rules_of_the_configured_sites(
    resources: list[dict[str, Any]],
) -> None:
    ipp_systems = {site.ipp_system for site in apply_site_configuration(None).sites}
    assert ipp_systems == set(SITE_BY_IPP_SYSTEM)
    for patient in _of_type(resources, "Patient"):
        assert check_patient(patient, ipp_systems) == [], patient["id"]
        assert check_business_rules(patient) is patient
