"""The demo territory's five sites as HL7 v2 senders: the gateway's out-of-the-box
configuration (``MAILLAGE_HL7_SITES_FILE`` replaces it)."""

from __future__ import annotations

from pathlib import Path

from maillage.demo.sites import SITES
from maillage.fhir import business_rules
from maillage.hl7v2.sites import SiteConfig, SiteRegistry, load_sites

# The demo laboratories' local codes that have a LOINC equivalent (OBX-3 sent with the
# local code only): the same small catalogue at every site.
DEMO_LOINC_MAP: dict[str, str] = {
    "GLY": "2345-7",  # Glucose [Mass/volume] in Serum or Plasma
    "NA": "2951-2",  # Sodium [Moles/volume] in Serum or Plasma
    "K": "2823-3",  # Potassium [Moles/volume] in Serum or Plasma
    "CREA": "2160-0",  # Creatinine [Mass/volume] in Serum or Plasma
    "HB": "718-7",  # Hemoglobin [Mass/volume] in Blood
}


def demo_senders() -> tuple[SiteConfig, ...]:
    return tuple(
        SiteConfig(
            code=site.code,
            finess=site.finess_et,
            sending_facility=site.sending_facility,
            ipp_system=site.ipp_system,
            # the demo's IPPs carry the facility as CX-4.1 and the OID as CX-4.2
            ipp_namespace=site.sending_facility,
            default_charset="8859/15",
            visit_system=f"urn:oid:{site.visit_oid}",
            order_system=f"urn:oid:{site.order_oid}",
            lab_code_system=f"urn:oid:{site.lab_code_oid}",
            loinc_map=DEMO_LOINC_MAP,
            organization_id=site.organization_id,
        )
        for site in SITES
    )


def configured_sites(sites_file: Path | None) -> SiteRegistry:
    """The senders from ``sites_file``, or the demo territory's."""
    return SiteRegistry(load_sites(sites_file) if sites_file is not None else demo_senders())


def apply_site_configuration(sites_file: Path | None) -> SiteRegistry:
    """The configured sites (``configured_sites``), whose IPP systems the FHIR write
    rules of this process now accept for a Patient's IPP (``fhir.business_rules``)."""
    registry = configured_sites(sites_file)
    business_rules.configure(site.ipp_system for site in registry.sites)
    return registry
