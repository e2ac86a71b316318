"""Online matching: each Patient written through the FHIR API is placed in its territorial
identity in the same request (real hub, real PostgreSQL, fhirpy and httpx)."""

from __future__ import annotations

from typing import Any

import httpx
import psycopg

from tests.factories import source_identity, synthetic_nir

GOLDEN_TAG = "https://maillage.org/fhir/CodeSystem/patient-index|territorial"


def _create(http: httpx.Client, patient: dict[str, Any]) -> dict[str, Any]:
    response = http.post("/Patient", json=patient)
    assert response.status_code == 201, response.text
    return dict(response.json())


def _territorial(patient: dict[str, Any]) -> str:
    refer = [link for link in patient.get("link", []) if link["type"] == "refer"]
    assert len(refer) == 1, patient.get("link")
    return str(refer[0]["other"]["reference"]).removeprefix("Patient/")


def _open_candidates(database_url: str) -> list[tuple[str, str, list[str]]]:
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT patient_id, matched_patient_id, flags FROM mpi_candidate"
            " WHERE status = 'open' ORDER BY id"
        ).fetchall()
    return [(str(a), str(b), list(c)) for a, b, c in rows]


def test_same_person_at_two_sites_gets_one_territorial_identity(http: httpx.Client) -> None:
    first = _create(http, source_identity(site=0, birth_name="Lefèvre", given=("Hélène", "Marie")))
    second = _create(
        http,
        source_identity(
            site=1, birth_name="LEFEVRE", used_name="Dupont", given=("Marie", "Helene")
        ),
    )
    territorial = _territorial(first)
    assert _territorial(second) == territorial

    golden = http.get(f"/Patient/{territorial}").json()
    assert golden["active"] is True
    others = sorted(link["other"]["reference"] for link in golden["link"])
    assert others == sorted([f"Patient/{first['id']}", f"Patient/{second['id']}"])
    assert {link["type"] for link in golden["link"]} == {"seealso"}
    # found by its tag and by the territorial identifier
    found = http.get("/Patient", params={"_tag": GOLDEN_TAG, "_summary": "count"}).json()
    assert found["total"] == 1


def test_a_stranger_gets_a_territorial_identity_of_its_own(http: httpx.Client) -> None:
    first = _create(http, source_identity(birth_name="Bernard", birth_date="1950-01-01"))
    second = _create(http, source_identity(site=2, birth_name="Moreau", birth_date="1991-07-30"))
    assert _territorial(first) != _territorial(second)


def test_twins_stay_apart_and_raise_a_homonym_alert(http: httpx.Client, database_url: str) -> None:
    common = {"birth_name": "Garnier", "birth_date": "2001-05-06", "birthplace": "99350"}
    first = _create(http, source_identity(site=0, given=("Lucas",), gender="male", **common))
    second = _create(http, source_identity(site=0, given=("Hugo",), gender="male", **common))
    assert _territorial(first) != _territorial(second)
    alerts = [flags for patient, _, flags in _open_candidates(database_url)]
    assert any("homonym" in flags for flags in alerts)


def test_qualified_identities_with_one_ins_are_linked_whatever_the_typing(
    http: httpx.Client,
) -> None:
    nir = synthetic_nir("2800299101042")
    first = _create(http, source_identity(site=0, birth_name="Dubois", status="QUAL", ins=nir))
    second = _create(
        http,
        source_identity(site=3, birth_name="Duboiss", given=("Kamille",), status="QUAL", ins=nir),
    )
    assert _territorial(first) == _territorial(second)
    golden = http.get(f"/Patient/{_territorial(first)}").json()
    assert any(i.get("value") == nir for i in golden["identifier"])


def test_two_qualified_identities_with_different_ins_never_auto_link(
    http: httpx.Client, database_url: str
) -> None:
    first = _create(
        http,
        source_identity(
            site=0, birth_name="Roux", status="QUAL", ins=synthetic_nir("2800299101042")
        ),
    )
    second = _create(
        http,
        source_identity(
            site=1, birth_name="Roux", status="QUAL", ins=synthetic_nir("2800299101043")
        ),
    )
    assert _territorial(first) != _territorial(second)
    flags = [flags for _, _, flags in _open_candidates(database_url)]
    assert any("ins_collision" in f for f in flags)


def test_an_update_that_makes_two_identities_different_splits_them(
    http: httpx.Client,
) -> None:
    first = _create(http, source_identity(site=0, birth_name="Petit", given=("Louise",)))
    second = _create(http, source_identity(site=1, birth_name="Petit", given=("Louise",)))
    assert _territorial(first) == _territorial(second)
    corrected = {
        **second,
        "name": [{"use": "official", "family": "Girard", "given": ["Noé"]}],
        "birthDate": "1966-11-11",
        "gender": "male",
    }
    updated = http.put(f"/Patient/{second['id']}", json=corrected)
    assert updated.status_code == 200, updated.text
    assert _territorial(updated.json()) != _territorial(first)
    golden = http.get(f"/Patient/{_territorial(first)}").json()
    assert [link["other"]["reference"] for link in golden["link"]] == [f"Patient/{first['id']}"]


def test_deleting_the_only_source_retires_its_territorial_identity(http: httpx.Client) -> None:
    patient = _create(http, source_identity(birth_name="Fournier"))
    territorial = _territorial(patient)
    assert http.delete(f"/Patient/{patient['id']}").status_code in (200, 204)
    golden = http.get(f"/Patient/{territorial}").json()
    assert golden["active"] is False


def test_territorial_identities_cannot_be_written_by_clients(http: httpx.Client) -> None:
    patient = _create(http, source_identity(birth_name="Lambert"))
    territorial = _territorial(patient)
    golden = http.get(f"/Patient/{territorial}").json()
    golden["gender"] = "male"
    refused = http.put(f"/Patient/{territorial}", json=golden)
    assert refused.status_code == 422
    assert "patient index" in refused.text
    assert http.delete(f"/Patient/{territorial}").status_code == 422
    assert http.get(f"/Patient/{territorial}").json()["gender"] == "female"


def test_an_unchanged_resend_does_not_make_a_new_version(http: httpx.Client) -> None:
    patient = source_identity(birth_name="Mercier")
    created = _create(http, patient)
    resent = http.put(f"/Patient/{created['id']}", json={**patient, "id": created["id"]})
    assert resent.status_code == 200
    assert resent.json()["meta"]["versionId"] == "1"
