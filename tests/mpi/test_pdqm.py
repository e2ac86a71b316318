"""IHE PDQm [ITI-78] is the hub's plain Patient search: the query shapes a Patient
Demographics Consumer sends, on a territory whose index keeps golden records beside the
sites' source identities (real hub, fhirpy and httpx)."""

from __future__ import annotations

from typing import Any

import httpx
from fhirpy import SyncFHIRClient

from maillage.demo.sites import SITES
from tests.factories import source_identity
from tests.mpi.support import create, territorial_of

GOLDEN_TAG = "https://maillage.org/fhir/CodeSystem/patient-index|territorial"
HOME = [{"use": "home", "line": ["12 rue des Lilas"], "city": "Amiens", "postalCode": "80000"}]


def _ids(http: httpx.Client, params: dict[str, str]) -> set[str]:
    response = http.get("/Patient", params=params)
    assert response.status_code == 200, response.text
    return {entry["resource"]["id"] for entry in response.json().get("entry", [])}


def _territory(http: httpx.Client) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """Hélène Lefèvre at two sites (one territorial identity), and a stranger."""
    first = create(
        http,
        source_identity(site=0, birth_name="Lefèvre", given=("Hélène", "Marie"), address=HOME),
    )
    second = create(
        http,
        source_identity(site=1, birth_name="LEFEVRE", given=("Marie", "Helene"), address=HOME),
    )
    stranger = create(
        http,
        source_identity(site=1, birth_name="Moreau", gender="male", birth_date="1991-07-30"),
    )
    assert territorial_of(first) == territorial_of(second)
    return first, second, stranger


def test_pdqm_demographic_queries_find_the_sources_and_their_golden_record(
    http: httpx.Client,
) -> None:
    first, second, stranger = _territory(http)
    person = {first["id"], second["id"], territorial_of(first)}
    # family (accents and case folded), given, birthdate, gender, postal code
    assert _ids(http, {"family": "lefevre"}) == person
    assert _ids(http, {"family": "Lefèvre", "given": "helene"}) == person
    assert _ids(http, {"birthdate": "1980-02-03", "gender": "female"}) == person
    assert _ids(http, {"address-postalcode": "80000"}) == person
    assert _ids(http, {"family": "moreau", "gender": "male", "birthdate": "1991-07-30"}) == {
        stranger["id"],
        territorial_of(stranger),
    }
    assert _ids(http, {"family": "lefevre", "gender": "male"}) == set()


def test_golden_records_are_found_by_their_tag_and_sources_by_their_ipp(
    http: httpx.Client, fhir: SyncFHIRClient
) -> None:
    first, second, stranger = _territory(http)
    # the territory's view of a person: one golden record
    assert _ids(http, {"family": "lefevre", "_tag": GOLDEN_TAG}) == {territorial_of(first)}
    goldens = fhir.resources("Patient").search(_tag=GOLDEN_TAG).fetch_all()
    assert {p.id for p in goldens} == {territorial_of(first), territorial_of(stranger)}
    # a site's view: its own record, by IPP (identifier=system|value)
    ipp = second["identifier"][0]
    assert ipp["system"] == SITES[1].ipp_system
    assert _ids(http, {"identifier": f"{ipp['system']}|{ipp['value']}"}) == {second["id"]}
    # the golden record points at its sources, each source back at it
    golden = http.get(f"/Patient/{territorial_of(first)}").json()
    assert {link["other"]["reference"] for link in golden["link"]} == {
        f"Patient/{first['id']}",
        f"Patient/{second['id']}",
    }
