"""The demo territory's five sites as HL7 v2 senders: the gateway's out-of-the-box
configuration (``MAILLAGE_HL7_SITES_FILE`` replaces it)."""

from __future__ import annotations

from pathlib import Path

from maillage.demo.sites import SITES
from maillage.hl7v2.sites import SiteConfig, SiteRegistry, load_sites


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
        )
        for site in SITES
    )


def configured_sites(sites_file: Path | None) -> SiteRegistry:
    """The senders from ``sites_file``, or the demo territory's."""
    return SiteRegistry(load_sites(sites_file) if sites_file is not None else demo_senders())
