"""A FHIR Patient (FR Core shape) read as the raw traits the matcher prepares.

- birth name: the ``official`` name's family (FR Core: the name of birth), else the
  first name without a use; used name: the ``usual`` name's family;
- first names: the ``official`` name's given list (the birth first names, in order),
  the first of them the first given name; a ``usual`` given name is used only when no
  official one is known;
- sex (``gender``), birth date, birthplace (the INSEE code of the
  ``patient-birthPlace`` address: an extension coding, else its ``district`` or
  ``postalCode`` field written as an INSEE code), home address and phone;
- the INS (NIR, NIA, test or demo NIR system) and the RNIV status.

Pure: JSON in, a dict out; nothing is logged.
"""

from __future__ import annotations

from typing import Any, Final

from maillage.identity.checks import reliability_status
from maillage.identity.ins import INS_SYSTEMS

BIRTH_PLACE_URL: Final = "http://hl7.org/fhir/StructureDefinition/patient-birthPlace"
# FR Core carries the INSEE code of the birthplace commune as a coding on the address.
INSEE_CODE_URL: Final = "https://hl7.fr/ig/fhir/core/StructureDefinition/fr-core-address-insee-code"


def patient_traits(patient: dict[str, Any]) -> dict[str, Any]:
    """The raw traits of a Patient (keys of ``normalize.COLUMNS`` plus ``ins_status``)."""
    names = [name for name in _list(patient.get("name")) if isinstance(name, dict)]
    official = _by_use(names, "official") or _by_use(names, None) or (names[0] if names else {})
    usual = _by_use(names, "usual")
    given = [str(g) for g in _list(official.get("given")) if isinstance(g, str)]
    if not given and usual:
        given = [str(g) for g in _list(usual.get("given")) if isinstance(g, str)]
    address = _home_address(patient)
    lines = [str(line) for line in _list(address.get("line")) if isinstance(line, str)]
    house_number, street = _split_house_number(lines[0] if lines else "")
    ins, ins_system = _ins(patient)
    return {
        "birth_name": official.get("family"),
        "used_name": usual.get("family") if usual else None,
        "first_name": given[0] if given else None,
        "first_names": given,
        "sex": patient.get("gender"),
        "birth_date": patient.get("birthDate"),
        "birthplace": birthplace_code(patient),
        "ins": ins,
        "ins_system": ins_system,
        "ins_status": reliability_status(patient),
        "house_number": house_number,
        "address_line": street,
        "address_extra": " ".join(lines[1:]) or None,
        "city": address.get("city"),
        "postcode": address.get("postalCode"),
        "phone": _phone(patient),
    }


def birthplace_code(patient: dict[str, Any]) -> str | None:
    for extension in _list(patient.get("extension")):
        if not isinstance(extension, dict) or extension.get("url") != BIRTH_PLACE_URL:
            continue
        address = extension.get("valueAddress")
        if not isinstance(address, dict):
            return None
        for part in _list(address.get("extension")):
            if isinstance(part, dict) and part.get("url") == INSEE_CODE_URL:
                coding = part.get("valueCoding")
                if isinstance(coding, dict) and isinstance(coding.get("code"), str):
                    return str(coding["code"])
        value = address.get("district") or address.get("postalCode")
        return str(value) if isinstance(value, str) else None
    return None


def _ins(patient: dict[str, Any]) -> tuple[str | None, str | None]:
    for identifier in _list(patient.get("identifier")):
        if not isinstance(identifier, dict):
            continue
        system = identifier.get("system")
        if system in INS_SYSTEMS and isinstance(identifier.get("value"), str):
            return str(identifier["value"]), str(system)
    return None, None


def _by_use(names: list[dict[str, Any]], use: str | None) -> dict[str, Any]:
    for name in names:
        if name.get("use") == use:
            return name
    return {}


def _home_address(patient: dict[str, Any]) -> dict[str, Any]:
    addresses = [a for a in _list(patient.get("address")) if isinstance(a, dict)]
    for address in addresses:
        if address.get("use") in (None, "home") and address.get("type") != "postal":
            return address
    return addresses[0] if addresses else {}


def _split_house_number(line: str) -> tuple[str | None, str | None]:
    head, _, rest = line.strip().partition(" ")
    if head[:1].isdigit():
        return head, rest or None
    return None, line or None


def _phone(patient: dict[str, Any]) -> str | None:
    for telecom in _list(patient.get("telecom")):
        if isinstance(telecom, dict) and telecom.get("system") == "phone":
            value = telecom.get("value")
            return str(value) if isinstance(value, str) else None
    return None


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []
