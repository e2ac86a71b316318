"""The identity rules of a source identity (pure): INS format and key, INS only on a QUAL
identity, no future birth date, IPPs only under a configured site's system.

Synthetic numbers only; NIR keys computed in the test from the rule."""

from __future__ import annotations

import datetime as dt
from typing import Any

from maillage.identity.checks import check_patient, reliability_status
from tests import factories

NIR = "urn:oid:1.2.250.1.213.1.4.8"
NIA = "urn:oid:1.2.250.1.213.1.4.9"
TEST_NIR = "urn:oid:1.2.250.1.213.1.4.10"
DEMO_NIR = "urn:oid:1.2.250.1.213.1.4.11"
V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"
SITE_A = "urn:oid:2.999.250.1.1"
SITE_B = "urn:oid:2.999.250.2.1"
SITES = frozenset({SITE_A, SITE_B})
TODAY = dt.date(2026, 6, 15)


def key_of(first_13: str) -> str:
    body = first_13[:5] + {"2A": "19", "2B": "18"}.get(first_13[5:7], first_13[5:7]) + first_13[7:]
    return f"{97 - int(body) % 97:02d}"


def patient(*identifiers: dict[str, Any], status: str | None = "QUAL", **extra: Any) -> dict:
    resource = factories.patient(identifiers=list(identifiers), **extra)
    if status is not None:
        resource["extension"] = [factories.identity_reliability(status)]
    return resource


def ipp(system: str, value: str = "IPP0001") -> dict[str, Any]:
    return {
        "type": {"coding": [{"system": V2_0203, "code": "PI"}]},
        "system": system,
        "value": value,
    }


def problems(resource: dict[str, Any]) -> list[tuple[str, str]]:
    return [(p.expression, p.message) for p in check_patient(resource, SITES, today=TODAY)]


def test_a_qualified_identity_with_a_good_nir_and_a_site_ipp_passes() -> None:
    body = "2800199100001"
    resource = patient(ipp(SITE_A), {"system": NIR, "value": body + key_of(body)})
    assert problems(resource) == []


def test_every_ins_system_is_checked_and_corsica_reads_as_19_or_18() -> None:
    for system in (NIR, TEST_NIR, DEMO_NIR, NIA):
        body = "185022A345678"
        assert problems(patient({"system": system, "value": body + key_of(body)})) == []
    body = "3800199100001"  # a 3 is an NIA's older waiting number, not a NIR
    assert problems(patient({"system": NIA, "value": body + key_of(body)})) == []
    [(where, message)] = problems(patient({"system": NIR, "value": body + key_of(body)}))
    assert where == "Patient.identifier[0].value" and "first character" in message


def test_a_wrong_key_is_located_on_the_value_and_says_what_to_fix() -> None:
    body = "2800199100001"
    wrong = f"{(int(key_of(body)) % 96) + 1:02d}"
    [(where, message)] = problems(patient(ipp(SITE_A), {"system": NIR, "value": body + wrong}))
    assert where == "Patient.identifier[1].value"
    assert message.startswith("INS (NIR): the control key")
    assert body not in message  # never quotes the number


def test_a_bad_format_is_refused() -> None:
    [(where, message)] = problems(patient({"system": TEST_NIR, "value": "28001"}))
    assert where == "Patient.identifier[0].value" and "15 characters" in message


def test_an_ins_on_an_identity_that_is_not_qualified_is_refused() -> None:
    body = "2800199100001"
    good = {"system": NIR, "value": body + key_of(body)}
    for status in ("PROV", "RECUP", "VALI", None):
        [(where, message)] = problems(patient(good, status=status))
        assert where == "Patient.identifier[0]"
        assert "only kept on a qualified identity (RNIV: QUAL" in message
        assert (status or "without a status") in message


def test_the_reliability_status_is_read_from_the_fr_core_extension() -> None:
    assert reliability_status(patient(status="VALI")) == "VALI"
    assert reliability_status(patient(status=None)) is None
    other = patient(status=None)
    other["extension"] = [{"url": "http://example.org/x", "valueCoding": {"code": "QUAL"}}]
    assert reliability_status(other) is None


def test_a_birth_date_in_the_future_is_refused_at_its_precision() -> None:
    for birth in ("2026-06-16", "2026-07", "2027"):
        [(where, message)] = problems(patient(status=None, birth_date=birth))
        assert where == "Patient.birthDate" and "future" in message
    for birth in ("2026-06-15", "2026-06", "2026", "1901-01-01"):
        assert problems(patient(status=None, birth_date=birth)) == []


def test_an_ipp_outside_the_configured_sites_is_refused_naming_them() -> None:
    [(where, message)] = problems(patient(ipp(SITE_A), ipp("urn:oid:2.999.250.9.1"), status=None))
    assert where == "Patient.identifier[1].system"
    assert SITE_A in message and SITE_B in message
    # Identifiers that are not IPPs (no type PI) are not the sites' business.
    assert problems(patient(factories.identifier(), status=None)) == []


def test_without_site_configuration_ipp_systems_are_not_checked() -> None:
    resource = patient(ipp("urn:oid:2.999.250.9.1"), status=None)
    assert check_patient(resource, None, today=TODAY) == []
    assert check_patient(resource, frozenset(), today=TODAY)[0].message.endswith("none")


def test_all_problems_are_reported_together() -> None:
    resource = patient(
        ipp("urn:oid:2.999.250.9.1"),
        {"system": NIR, "value": "2800199100001" + "00"},
        status="PROV",
        birth_date="2030-01-01",
    )
    assert [where for where, _ in problems(resource)] == [
        "Patient.identifier[0].system",
        "Patient.identifier[1].value",
        "Patient.identifier[1]",
        "Patient.birthDate",
    ]
