"""The generated parts of ``docs/demo-territory.md``, rendered from the territory table.

The document holds blocks between ``<!-- generated:NAME -->`` and
``<!-- /generated:NAME -->`` markers; ``update_document`` rewrites them and leaves
the prose alone. Regenerate after changing ``maillage.demo.sites`` or the seed::

    .venv/bin/python -m maillage.demo.docs docs/demo-territory.md

The test suite fails when the document and the table disagree.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from pathlib import Path

import orjson

from maillage.demo.resources import SiteIpp, demo_patient_sites, ipp_identifier
from maillage.demo.sites import GHT, SITES, Site

HUB_APPLICATION = "MAILLAGE"
HUB_FACILITY = "GHT_VAL_DE_MAILLE"
EXAMPLE_TIMESTAMP = "20250312101500"
FHIR_BASE = "http://127.0.0.1:8080/fhir"

_BLOCK = re.compile(
    r"(?P<open><!-- generated:(?P<name>[a-z0-9-]+) -->\n)"
    r".*?"
    r"(?P<close><!-- /generated:(?P=name) -->)",
    re.DOTALL,
)


def render_sites() -> str:
    lines = [
        "| Code | Hospital | Town | FINESS EJ | FINESS ET | MSH-4 sending facility "
        "| IPP system | Organization / Location |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for site in SITES:
        lines.append(
            f"| `{site.code}` | {site.name} | {site.town} ({site.postal_code}) "
            f"| `{site.finess_ej}` | `{site.finess_et}` | `{site.sending_facility}` "
            f"| `{site.ipp_system}` | `Organization/{site.organization_id}`, "
            f"`Location/{site.location_id}` |"
        )
    return "\n".join(lines) + "\n"


def render_units() -> str:
    lines = [
        "| Site | UF code | Unit | Specialty (SNOMED CT) | UF system | Organization |",
        "|---|---|---|---|---|---|",
    ]
    for site in SITES:
        for unit in site.units:
            lines.append(
                f"| `{site.code}` | `{unit.code}` | {unit.name} "
                f"| {unit.specialty.display} (`{unit.specialty.code}`) "
                f"| `{site.uf_system}` | `Organization/{site.unit_id(unit)}` |"
            )
    return "\n".join(lines) + "\n"


def _example_patients() -> dict[str, tuple[str, SiteIpp]]:
    """For each site, the first demo patient (by id) it knows, and its IPP there."""
    examples: dict[str, tuple[str, SiteIpp]] = {}
    for patient_id, known in sorted(demo_patient_sites().items()):
        for site_ipp in known:
            examples.setdefault(site_ipp.site.code, (patient_id, site_ipp))
    return examples


def render_patients() -> str:
    spread = demo_patient_sites()
    examples = _example_patients()
    lines = [
        "| Site | Demo patients known | Example IPP | Example patient |",
        "|---|---|---|---|",
    ]
    for site in SITES:
        count = sum(1 for known in spread.values() if any(k.site is site for k in known))
        patient_id, site_ipp = examples[site.code]
        lines.append(f"| `{site.code}` | {count} | `{site_ipp.ipp}` | `Patient/{patient_id}` |")
    return "\n".join(lines) + "\n"


def render_identifier_example() -> str:
    """The PI identifier of the first site's example patient, as stored in the hub."""
    site_ipp = _example_patients()[SITES[0].code][1]
    body = orjson.dumps(ipp_identifier(site_ipp), option=orjson.OPT_INDENT_2).decode()
    return f"```json\n{body}\n```\n"


def render_search_examples() -> str:
    lines = ["```sh"]
    for site in SITES:
        site_ipp = _example_patients()[site.code][1]
        query = f"{site.ipp_system}|{site_ipp.ipp}"
        lines.append(f"curl '{FHIR_BASE}/Patient?identifier={query}'")
    lines.append("```")
    return "\n".join(lines) + "\n"


def msh_segment(site: Site, message_type: str = "ADT^A31^ADT_A05") -> str:
    """An IHE PAM FR 2.11 MSH segment as the site's admission system would send it."""
    fields = [
        "MSH",
        "^~\\&",
        "GAM",
        site.sending_facility,
        HUB_APPLICATION,
        HUB_FACILITY,
        EXAMPLE_TIMESTAMP,
        "",
        message_type,
        f"{site.code}{EXAMPLE_TIMESTAMP}",
        "P",
        "2.5^FRA^2.11",
        "",
        "",
        "",
        "",
        "FRA",
        "UNICODE UTF-8",
        "FR",
        "",
        "2.11^IHE_FRANCE-2.11-PAM",
    ]
    return "|".join(fields)


def pid3_value(site: Site, ipp: str) -> str:
    """PID-3 carrying a site IPP: CX-4 names the site's assigning authority by its OID."""
    return f"{ipp}^^^{site.sending_facility}&{site.ipp_oid}&ISO^PI"


def render_hl7_examples() -> str:
    examples = _example_patients()
    lines = ["```"]
    for index, site in enumerate(SITES):
        if index:
            lines.append("")
        lines.append(msh_segment(site))
        lines.append(f"PID|1||{pid3_value(site, examples[site.code][1].ipp)}")
    lines.append("```")
    return "\n".join(lines) + "\n"


RENDERERS: dict[str, Callable[[], str]] = {
    "sites": render_sites,
    "units": render_units,
    "identifier": render_identifier_example,
    "patients": render_patients,
    "search": render_search_examples,
    "hl7": render_hl7_examples,
}


def update_document(text: str) -> str:
    """``text`` with each generated block re-rendered; unknown block names raise."""

    def replace(match: re.Match[str]) -> str:
        name = match["name"]
        if name not in RENDERERS:
            raise KeyError(f"no renderer for the generated block {name!r}")
        return match["open"] + RENDERERS[name]() + match["close"]

    return _BLOCK.sub(replace, text)


def generated_blocks(text: str) -> dict[str, str]:
    """The current content of each generated block of ``text``, by name."""
    return {
        match["name"]: match.group(0)[len(match["open"]) : -len(match["close"])]
        for match in _BLOCK.finditer(text)
    }


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        sys.stderr.write(f"usage: python -m maillage.demo.docs PATH (the {GHT.name} doc)\n")
        return 2
    path = Path(argv[0])
    path.write_text(update_document(path.read_text(encoding="utf-8")), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
