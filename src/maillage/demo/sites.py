"""The demo territory as data: one fictitious GHT, its five hospitals and their units.

Everything here is fictitious: the GHT, the hospitals, their towns (postal codes
in 99xxx, which no French department uses), their FINESS numbers (department
prefix ``99``, which does not exist, with a valid Luhn key like real FINESS
numbers) and their identifier systems (OIDs under ``2.999``, the arc ITU-T X.660
reserves for examples, so they can never collide with a real assigning authority).

The FHIR resources (``maillage.demo.resources``) and the tables of
``docs/demo-territory.md`` (``maillage.demo.docs``) are both generated from this
module; change the territory here and regenerate the docs.
"""

from __future__ import annotations

from dataclasses import dataclass

FINESS_SYSTEM = "https://finess.esante.gouv.fr"
# FR Core identifier types (FINESS of a legal entity / of a geographical entity).
FR_IDENTIFIER_TYPE_SYSTEM = "https://hl7.fr/ig/fhir/core/CodeSystem/fr-core-cs-v2-0203"
# FR Core organisation types (table 3307: GHT, LEGAL-ENTITY, UF...).
FR_ORGANIZATION_TYPE_SYSTEM = "https://hl7.fr/ig/fhir/core/CodeSystem/fr-core-cs-v2-3307"
V2_IDENTIFIER_TYPE_SYSTEM = "http://terminology.hl7.org/CodeSystem/v2-0203"
SNOMED_SYSTEM = "http://snomed.info/sct"

# Root of the demo's fictitious OIDs; site n owns ``2.999.250.<n>``.
DEMO_OID_ROOT = "2.999.250"


@dataclass(frozen=True, slots=True)
class Specialty:
    """A practice setting (SNOMED CT, FHIR value set ``c80-practice-codes``)."""

    code: str
    display: str


CARDIOLOGY = Specialty("394579002", "Cardiology")
EMERGENCY = Specialty("394576009", "Surgical-Accident & emergency")
INTERNAL_MEDICINE = Specialty("419192003", "Internal medicine")
GENERAL_SURGERY = Specialty("394609007", "Surgery-general")
OBSTETRICS = Specialty("394585009", "Obstetrics and gynecology")
GERIATRICS = Specialty("394811001", "Geriatric medicine")
PATHOLOGY = Specialty("394915009", "General pathology")
RADIOLOGY = Specialty("394914008", "Radiology")
PSYCHIATRY = Specialty("394587001", "Psychiatry")
CHILD_PSYCHIATRY = Specialty("394588006", "Pediatric (Child and adolescent) psychiatry")


@dataclass(frozen=True, slots=True)
class Unit:
    """An UF (unité fonctionnelle): its code is unique within its site."""

    code: str
    name: str
    specialty: Specialty


@dataclass(frozen=True, slots=True)
class Site:
    """A hospital of the GHT: one legal entity (FINESS EJ) with one site (FINESS ET)."""

    number: int
    code: str
    name: str
    town: str
    postal_code: str
    street: str
    finess_ej: str
    finess_et: str
    # MSH-4 (sending facility) of the site's HL7 v2 feeds, and CX-4.1 of its IPPs.
    sending_facility: str
    units: tuple[Unit, ...]
    # Acute-care hospitals manage patients; a mental health one only also knows some.
    acute_care: bool = True

    @property
    def oid(self) -> str:
        return f"{DEMO_OID_ROOT}.{self.number}"

    @property
    def ipp_oid(self) -> str:
        """Assigning authority of the site's IPPs (PID-3.4.2)."""
        return f"{self.oid}.1"

    @property
    def uf_oid(self) -> str:
        """Assigning authority of the site's UF codes (ZBE-7.6 / ZBE-8.6)."""
        return f"{self.oid}.2"

    @property
    def visit_oid(self) -> str:
        """Assigning authority of the site's visit numbers (PV1-19)."""
        return f"{self.oid}.3"

    @property
    def order_oid(self) -> str:
        """Assigning authority of the site's filler order numbers (OBR-3)."""
        return f"{self.oid}.4"

    @property
    def lab_code_oid(self) -> str:
        """The site's local laboratory code system (OBX-3 when not LOINC)."""
        return f"{self.oid}.5"

    @property
    def ipp_system(self) -> str:
        return f"urn:oid:{self.ipp_oid}"

    @property
    def uf_system(self) -> str:
        return f"urn:oid:{self.uf_oid}"

    @property
    def organization_id(self) -> str:
        return self.code.lower()

    @property
    def location_id(self) -> str:
        return f"site-{self.code.lower()}"

    def unit_id(self, unit: Unit) -> str:
        return f"{self.code.lower()}-uf-{unit.code}"


@dataclass(frozen=True, slots=True)
class Ght:
    id: str
    name: str
    support_site_code: str


GHT = Ght(id="ght-val-de-maille", name="GHT Val de Maille", support_site_code="CHM")

SITES: tuple[Site, ...] = (
    Site(
        number=1,
        code="CHM",
        name="Centre hospitalier de Maillebourg",
        town="Maillebourg",
        postal_code="99100",
        street="1 avenue de la Maille",
        finess_ej="990000010",
        finess_et="990010001",
        sending_facility="CH_MAILLEBOURG",
        units=(
            Unit("1010", "Urgences adultes", EMERGENCY),
            Unit("2010", "Cardiologie", CARDIOLOGY),
            Unit("2020", "Médecine polyvalente", INTERNAL_MEDICINE),
            Unit("5010", "Laboratoire de biologie médicale", PATHOLOGY),
            Unit("5020", "Imagerie médicale", RADIOLOGY),
        ),
    ),
    Site(
        number=2,
        code="CHA",
        name="Centre hospitalier d'Ardenval",
        town="Ardenval",
        postal_code="99200",
        street="12 rue des Tilleuls",
        finess_ej="990000028",
        finess_et="990020000",
        sending_facility="CH_ARDENVAL",
        units=(
            Unit("1100", "Urgences", EMERGENCY),
            Unit("3100", "Chirurgie viscérale", GENERAL_SURGERY),
            Unit("3200", "Gynécologie-obstétrique", OBSTETRICS),
            Unit("5100", "Laboratoire", PATHOLOGY),
        ),
    ),
    Site(
        number=3,
        code="CHL",
        name="Centre hospitalier de Lormecourt",
        town="Lormecourt",
        postal_code="99300",
        street="3 place de l'Hôtel-Dieu",
        finess_ej="990000036",
        finess_et="990030009",
        sending_facility="CH_LORMECOURT",
        units=(
            Unit("1200", "Urgences", EMERGENCY),
            Unit("2200", "Médecine interne", INTERNAL_MEDICINE),
            Unit("4200", "Court séjour gériatrique", GERIATRICS),
        ),
    ),
    Site(
        number=4,
        code="CHB",
        name="Centre hospitalier de Bréhaut-sur-Maille",
        town="Bréhaut-sur-Maille",
        postal_code="99400",
        street="8 chemin du Moulin",
        finess_ej="990000044",
        finess_et="990040008",
        sending_facility="CH_BREHAUT",
        units=(
            Unit("4400", "Soins médicaux et de réadaptation gériatriques", GERIATRICS),
            Unit("2400", "Médecine", INTERNAL_MEDICINE),
        ),
    ),
    Site(
        number=5,
        code="EPS",
        name="Établissement public de santé mentale de Sainte-Oriane",
        town="Sainte-Oriane",
        postal_code="99500",
        street="25 route des Vergers",
        finess_ej="990000051",
        finess_et="990050007",
        sending_facility="EPSM_STE_ORIANE",
        units=(
            Unit("6100", "Psychiatrie adulte", PSYCHIATRY),
            Unit("6500", "Psychiatrie de l'enfant et de l'adolescent", CHILD_PSYCHIATRY),
        ),
        acute_care=False,
    ),
)


def site_by_code(code: str) -> Site:
    for site in SITES:
        if site.code == code:
            return site
    raise KeyError(f"no demo site with code {code!r}")


def luhn_is_valid(number: str) -> bool:
    """True when ``number`` ends with a valid Luhn check digit (as FINESS numbers do)."""
    if not number.isdigit():
        return False
    total = 0
    for position, char in enumerate(reversed(number)):
        digit = int(char)
        if position % 2 == 1:
            digit = digit * 2 - 9 if digit > 4 else digit * 2
        total += digit
    return total % 10 == 0
