"""`maillage serve --demo` loads the demo territory into an empty hub, and only then."""

from __future__ import annotations

import httpx
from fhirpy import SyncFHIRClient

from maillage.demo.territory import GHT, SITES, demo_patient_sites, load_demo_if_empty


def _total(http: httpx.Client, resource_type: str, **params: str) -> int:
    response = http.get(resource_type, params={"_count": "0", **params})
    assert response.status_code == 200
    return int(response.json()["total"])


def test_demo_patients_are_found_by_site_ipp_and_a_restart_does_not_reload(
    clean_database: str, fhir: SyncFHIRClient, http: httpx.Client
) -> None:
    load_demo_if_empty(clean_database)

    spread = demo_patient_sites()
    for patient_id, known in spread.items():
        for site_ipp in known:
            found = (
                fhir.resources("Patient")
                .search(identifier=f"{site_ipp.site.ipp_system}|{site_ipp.ipp}")
                .fetch_all()
            )
            assert [patient.id for patient in found] == [patient_id]
    assert _total(http, "Organization", partof=f"Organization/{GHT.id}") == len(SITES)
    chm = SITES[0]
    assert _total(http, "Organization", name=chm.sending_facility) == 1
    assert _total(http, "Encounter", **{"service-provider": f"Organization/{chm.organization_id}"})

    before = {kind: _total(http, kind) for kind in ("Patient", "Encounter", "Organization")}
    load_demo_if_empty(clean_database)

    assert {kind: _total(http, kind) for kind in before} == before
    patient_id = next(iter(spread))
    assert http.get(f"Patient/{patient_id}").json()["meta"]["versionId"] == "1"


def test_a_hub_that_holds_data_is_left_alone(clean_database: str, fhir: SyncFHIRClient) -> None:
    own = fhir.resource("Organization", name="Clinique du Parc (test)")
    own.save()

    load_demo_if_empty(clean_database)

    assert fhir.resources("Patient").search().fetch_all() == []
    assert [org.id for org in fhir.resources("Organization").search().fetch_all()] == [own.id]
