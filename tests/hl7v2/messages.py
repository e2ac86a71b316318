"""A small factory of HL7 v2 messages from the samples in ``tests/fixtures/hl7/``."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from maillage.demo.sites import site_by_code
from maillage.hl7v2.charset import CODECS

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "hl7"
# Synthetic identity with an accent that 8859/15 and UTF-8 encode differently.
FAMILY, GIVEN = "Quenouillé", "Élodie"


def message(
    kind: str = "adt_a28",
    *,
    control_id: str = "MSG00001",
    ipp: str = "IPP1001",
    site: str = "CHM",
    application: str = "GAM",
    charset: str = "8859/15",
    family: str = FAMILY,
    given: str = GIVEN,
    fields: Mapping[str, str] | None = None,
) -> bytes:
    """One message from ``tests/fixtures/hl7/{kind}.hl7``, encoded as MSH-18 says;
    ``fields`` fills the template's other ``{placeholders}``."""
    demo = site_by_code(site)
    template = (FIXTURES / f"{kind}.hl7").read_text(encoding="utf-8")
    text = "\r".join(line for line in template.splitlines() if line) + "\r"
    filled = (
        text.replace("{application}", application)
        .replace("{facility}", demo.sending_facility)
        .replace("{control_id}", control_id)
        .replace("{ipp}", ipp)
        .replace("{ipp_oid}", demo.ipp_oid)
        .replace("{family}", family)
        .replace("{given}", given)
        .replace("{charset}", charset)
    )
    for name, value in (fields or {}).items():
        filled = filled.replace("{" + name + "}", value)
    # a placeholder filled with nothing leaves an empty segment: drop it
    filled = "\r".join(segment for segment in filled.split("\r") if segment) + "\r"
    # no MSH-18: the demo sites' default, 8859/15
    return filled.encode(CODECS.get(charset or "8859/15", "utf-8"))
