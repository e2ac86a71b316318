"""docs/demo-territory.md says what the demo territory really holds."""

from __future__ import annotations

from pathlib import Path

from maillage.demo.docs import RENDERERS, generated_blocks, update_document
from maillage.demo.territory import SITES, demo_patient_sites

DOC = Path(__file__).resolve().parents[2] / "docs" / "demo-territory.md"


def test_the_document_matches_the_territory_table() -> None:
    text = DOC.read_text(encoding="utf-8")
    assert set(generated_blocks(text)) == set(RENDERERS)
    assert update_document(text) == text, (
        "docs/demo-territory.md is stale: run "
        ".venv/bin/python -m maillage.demo.docs docs/demo-territory.md"
    )


def test_the_documented_ipps_find_demo_patients() -> None:
    blocks = generated_blocks(DOC.read_text(encoding="utf-8"))
    known = {
        (site_ipp.site.ipp_system, site_ipp.ipp)
        for sites in demo_patient_sites().values()
        for site_ipp in sites
    }
    for site in SITES:
        assert f"|{site.sending_facility}|" in blocks["hl7"]
        documented = [
            line
            for line in blocks["search"].splitlines()
            if f"identifier={site.ipp_system}|" in line
        ]
        assert len(documented) == 1
        ipp = documented[0].split("|")[-1].rstrip("'")
        assert (site.ipp_system, ipp) in known
        assert f"{ipp}^^^{site.sending_facility}&{site.ipp_oid}&ISO^PI" in blocks["hl7"]
