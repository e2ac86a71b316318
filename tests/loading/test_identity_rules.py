"""The bulk loader keeps the identity rules of the FHIR writes: a bad identity's line is
rejected with what to fix, the others load. Synthetic numbers only."""

from __future__ import annotations

from pathlib import Path

import pytest

from maillage.fhir import business_rules
from maillage.loading.service import BulkLoader
from tests import factories
from tests.loading.conftest import stored, write_ndjson

SITE_IPP = "urn:oid:2.999.250.1.1"
PI = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "PI"}]}


def test_a_bad_identity_line_is_rejected_with_its_message(
    clean_database: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        business_rules, "_configuration", business_rules.SiteConfiguration(frozenset({SITE_IPP}))
    )
    nir = "2800199100001"
    nir += f"{97 - int(nir) % 97:02d}"
    ins = {"system": "urn:oid:1.2.250.1.213.1.4.10", "value": nir}
    ipp = {"type": PI, "system": SITE_IPP, "value": "IPP0001"}
    source = write_ndjson(
        tmp_path / "identities.ndjson",
        [
            factories.patient(
                id="good", identifiers=[ipp, ins], extension=[factories.identity_reliability()]
            ),
            factories.patient(id="not-qual", identifiers=[ins]),  # line 2: INS on no status
            factories.patient(id="future", birth_date="2999-12-31"),  # line 3
            factories.patient(id="other-site", identifiers=[{**ipp, "system": "urn:oid:9.9"}]),
        ],
    )

    report = BulkLoader(clean_database, workers=0).load_paths([source])

    assert report.loaded == 1
    messages = {rejected.line: rejected.message for rejected in report.rejected}
    assert set(messages) == {2, 3, 4}
    assert "Patient.identifier[0]" in messages[2] and "qualified identity" in messages[2]
    assert "Patient.birthDate" in messages[3] and "future" in messages[3]
    assert SITE_IPP in messages[4]
    assert nir not in " ".join(messages.values())
    assert stored(clean_database, "Patient", "good") is not None
    for rejected_id in ("not-qual", "future", "other-site"):
        assert stored(clean_database, "Patient", rejected_id) is None
