"""Identity rules on every write of a Patient (source identity), through HTTP: each bad
identity is answered 422 with an OperationOutcome that says what to fix and where, and
nothing is stored. Synthetic numbers only; NIR keys computed here from the rule."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx

from maillage.demo.sites import SITES
from tests import factories
from tests.fhir.support import assert_outcome, body, create, search_ids

NIR = "urn:oid:1.2.250.1.213.1.4.8"
V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"
PATCH_JSON = {"Content-Type": "application/json-patch+json"}


def nir(first_13: str = "2800199100001") -> str:
    """``first_13`` + its key: 97 - (the number mod 97), computed from the rule."""
    return f"{first_13}{97 - int(first_13) % 97:02d}"


def site_ipp(value: str | None = None, system: str = SITES[0].ipp_system) -> dict[str, Any]:
    return {
        "type": {"coding": [{"system": V2_0203, "code": "PI"}]},
        "system": system,
        "value": value or factories.new_value("IPP"),
    }


def qualified(ins: str, *, status: str = "QUAL", **extra: Any) -> dict[str, Any]:
    """A Patient with a site IPP and an INS, under the RNIV ``status``."""
    return factories.patient(
        identifiers=[site_ipp(), {"system": NIR, "value": ins}],
        extension=[factories.identity_reliability(status)],
        **extra,
    )


def issue_at(outcome: dict[str, Any], expression: str) -> str:
    found = [i for i in outcome["issue"] if expression in i.get("expression", [])]
    assert found, outcome
    assert found[0]["code"] == "business-rule"
    return str(found[0]["diagnostics"])


def test_a_qualified_identity_with_a_valid_nir_is_accepted(http: httpx.Client) -> None:
    stored = create(http, qualified(nir()))
    assert stored["identifier"][1]["value"] == nir()
    assert search_ids(http, "/Patient", identifier=f"{NIR}|{nir()}") == [stored["id"]]


def test_a_wrong_nir_key_is_refused_and_nothing_is_stored(
    http: httpx.Client, stored_rows: Callable[[str], int]
) -> None:
    wrong = nir()[:-2] + f"{int(nir()[-2:]) % 96 + 1:02d}"
    response = http.post("/Patient", json=qualified(wrong))
    outcome = assert_outcome(response, 422, code="business-rule")
    assert "control key" in issue_at(outcome, "Patient.identifier[1].value")
    assert wrong not in response.text  # the number is never quoted back
    assert stored_rows("resource") == 0
    assert search_ids(http, "/Patient", identifier=f"{NIR}|{wrong}") == []


def test_an_ins_on_an_identity_that_is_not_qualified_is_refused(
    http: httpx.Client, stored_rows: Callable[[str], int]
) -> None:
    response = http.post("/Patient", json=qualified(nir(), status="VALI"))
    outcome = assert_outcome(response, 422)
    assert "only kept on a qualified identity (RNIV" in issue_at(outcome, "Patient.identifier[1]")
    assert stored_rows("resource") == 0


def test_a_birth_date_in_the_future_is_refused(
    http: httpx.Client, stored_rows: Callable[[str], int]
) -> None:
    response = http.post("/Patient", json=factories.patient(birth_date="2999-01-01"))
    outcome = assert_outcome(response, 422)
    assert "future" in issue_at(outcome, "Patient.birthDate")
    assert stored_rows("resource") == 0


def test_a_gender_outside_the_value_set_is_refused_by_validation(
    http: httpx.Client, stored_rows: Callable[[str], int]
) -> None:
    response = http.post("/Patient", json=factories.patient(gender="M"))
    outcome = assert_outcome(response, 422)
    assert any("Patient.gender" in i.get("expression", []) for i in outcome["issue"]), outcome
    assert stored_rows("resource") == 0


def test_an_ipp_of_a_site_not_configured_is_refused_naming_the_configured_systems(
    http: httpx.Client, stored_rows: Callable[[str], int]
) -> None:
    resource = factories.patient(identifiers=[site_ipp(system="urn:oid:2.999.250.99.1")])
    outcome = assert_outcome(http.post("/Patient", json=resource), 422)
    message = issue_at(outcome, "Patient.identifier[0].system")
    assert all(site.ipp_system in message for site in SITES)
    assert stored_rows("resource") == 0
    # Every configured site's IPP system is accepted.
    for site in SITES:
        create(http, factories.patient(identifiers=[site_ipp(system=site.ipp_system)]))


def test_update_patch_and_conditional_writes_are_checked_and_change_nothing(
    http: httpx.Client, stored_rows: Callable[[str], int]
) -> None:
    stored = create(http, factories.patient(identifiers=[site_ipp("IPP-KEEP")]))
    path = f"/Patient/{stored['id']}"
    bad_date = {**stored, "birthDate": "2999-01-01"}
    assert_outcome(http.put(path, json=bad_date), 422, says="future")
    patch = [{"op": "replace", "path": "/birthDate", "value": "2999-01-01"}]
    assert_outcome(http.patch(path, json=patch, headers=PATCH_JSON), 422, says="future")
    assert_outcome(
        http.put(
            "/Patient",
            params={"identifier": f"{SITES[0].ipp_system}|IPP-KEEP"},
            json={k: v for k, v in bad_date.items() if k not in ("id", "meta")},
        ),
        422,
        says="future",
    )
    assert_outcome(
        http.post(
            "/Patient",
            json=qualified(nir(), status="PROV"),
            headers={"If-None-Exist": "identifier=urn:oid:2.999.250.1.1|nobody"},
        ),
        422,
        says="qualified identity",
    )
    after = body(http.get(path))
    assert after["birthDate"] == stored["birthDate"]
    assert after["meta"]["versionId"] == stored["meta"]["versionId"]
    assert stored_rows("resource") == 1
    assert stored_rows("resource_version") == 0


def test_a_transaction_with_a_bad_identity_fails_whole(
    http: httpx.Client, stored_rows: Callable[[str], int]
) -> None:
    response = http.post(
        "",
        json=factories.transaction(
            factories.entry("POST", "Organization", factories.organization()),
            factories.entry("POST", "Patient", qualified(nir(), status="PROV")),
        ),
    )
    outcome = assert_outcome(response, 422, says="Bundle.entry[1]")
    assert "qualified identity" in str(outcome)
    assert stored_rows("resource") == 0
