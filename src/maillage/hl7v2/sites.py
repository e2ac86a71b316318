"""Which senders the gateway accepts: one ``SiteConfig`` per hospital site.

A message is attributed to a site by its sending facility (MSH-4.1), optionally narrowed
to some sending applications (MSH-3.1) when a site's feeds must be told apart. The site
brings its FINESS, the identifier system of its IPPs (to find PID-3's IPP) and its
default character set (when MSH-18 is empty). A site may have its own MLLP port.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from maillage.errors import ConfigurationError, ErrorReport
from maillage.hl7v2.charset import CODECS


@dataclass(frozen=True, slots=True)
class SiteConfig:
    code: str
    finess: str
    sending_facility: str
    # FHIR system of the site's IPPs (``urn:oid:...``); its OID is PID-3's CX-4.2.
    ipp_system: str
    # CX-4.1 (namespace) of the site's IPPs, when senders fill it instead of the OID.
    ipp_namespace: str | None = None
    # Empty: any sending application of the facility.
    sending_applications: tuple[str, ...] = ()
    default_charset: str = "8859/15"
    # A port of its own (messages there must come from this site); None: the main port.
    port: int | None = None
    # FHIR systems of the site's visit numbers (PV1-19), filler order numbers (OBR-3,
    # also the base of its results' identifiers) and local lab codes (OBX-3/OBR-4 when
    # not LOINC); None: ``urn:maillage:site:<code>:<kind>``.
    visit_system: str | None = None
    order_system: str | None = None
    lab_code_system: str | None = None
    # Local lab code -> LOINC code, for results whose OBX-3 carries only a local code.
    loinc_map: Mapping[str, str] = field(default_factory=dict, hash=False)
    # The FHIR Organization of the site (an Encounter's serviceProvider): its users share
    # the care relationships of the site's encounters. None: no site-wide relationships.
    organization_id: str | None = None

    @property
    def ipp_oid(self) -> str:
        return self.ipp_system.removeprefix("urn:oid:")

    @property
    def visit_number_system(self) -> str:
        return self.visit_system or f"urn:maillage:site:{self.code}:visit"

    @property
    def filler_order_system(self) -> str:
        return self.order_system or f"urn:maillage:site:{self.code}:filler-order"

    @property
    def local_code_system(self) -> str:
        return self.lab_code_system or f"urn:maillage:site:{self.code}:lab-code"


class SiteRegistry:
    def __init__(self, sites: Iterable[SiteConfig]) -> None:
        self.sites = tuple(sites)
        report = ErrorReport()
        self._by_facility: dict[str, list[SiteConfig]] = {}
        codes: set[str] = set()
        ports: set[int] = set()
        for site in self.sites:
            if site.code in codes:
                report.add(f"site code {site.code!r} is configured twice")
            codes.add(site.code)
            if site.default_charset.upper() not in CODECS:
                report.add(
                    f"site {site.code}: default charset {site.default_charset!r} is not one "
                    f"of {', '.join(CODECS)}"
                )
            if site.port is not None:
                if site.port in ports:
                    report.add(f"site {site.code}: port {site.port} is given to two sites")
                ports.add(site.port)
            self._by_facility.setdefault(site.sending_facility, []).append(site)
        for facility, sharing in self._by_facility.items():
            if len(sharing) > 1 and any(not site.sending_applications for site in sharing):
                report.add(
                    f"sending facility {facility!r} belongs to several sites: each must "
                    "name its sending applications"
                )
        report.raise_if_any(ConfigurationError)

    def match(self, application: str, facility: str) -> SiteConfig | None:
        for site in self._by_facility.get(facility, ()):
            if not site.sending_applications or application in site.sending_applications:
                return site
        return None

    def get(self, code: str) -> SiteConfig | None:
        for site in self.sites:
            if site.code == code:
                return site
        return None

    def site_ports(self) -> dict[int, str]:
        return {site.port: site.code for site in self.sites if site.port is not None}


def load_sites(path: Path) -> tuple[SiteConfig, ...]:
    """Sites from a JSON file: a list of objects with the ``SiteConfig`` field names."""
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ConfigurationError(f"cannot read the HL7 sites file {path}: {error}") from error
    if not isinstance(entries, list):
        raise ConfigurationError(f"{path}: expected a JSON list of sites")
    sites = []
    for number, entry in enumerate(entries, start=1):
        try:
            entry = dict(entry)
            entry["sending_applications"] = tuple(entry.get("sending_applications", ()))
            entry["loinc_map"] = {
                str(k): str(v) for k, v in dict(entry.get("loinc_map", {})).items()
            }
            sites.append(SiteConfig(**entry))
        except (TypeError, ValueError) as error:
            raise ConfigurationError(f"{path}: site #{number}: {error}") from error
    return tuple(sites)
