"""A synthetic national register for the demo territory, for ``InsiSimulator``.

Given the demo Patients (``maillage.demo.resources``: the Synthea sample spread over
the sites), it gives each one an INS whose reference traits are the Patient's own
(``identity.patient_traits``), written as INSi writes traits (upper case), so that an
INSi search from a demo Patient finds it. A Patient that already carries a valid INS
keeps it; every other matricule is under the **test NIR** system
(``urn:oid:1.2.250.1.213.1.4.10``): none can be mistaken for a real person's.
It is built like a NIR — sex digit, birth year and month, birthplace (the Patient's
INSEE code, else 99 + the INSEE code of the birth country), an order number, the
mod-97 key (``identity.ins.with_key``) — the order number taken from a hash of the
Patient's id, so the register is the same on every run and whatever the order the
Patients come in.

A Patient without a birth name, a first name, a male or female sex, a birth date or a
known birthplace (or birth country) gets no INS, like a person missing from the
national registers: an INSi search answers ``not_found`` for it.

One more identity is added, a homonym of the first living Patient (by id): same birth
name, first given name, sex and birth date, another second first name, born in a
French commune. A search on the four traits alone answers ``several``; adding the
second first name or the birthplace finds one (the desk's procedure on INSi's 02).

Pure: Patients in, identities out; this module imports nothing of ``maillage.demo``
(the caller passes the Patients).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from hashlib import blake2b
from typing import Any, Final

from maillage.identity.ins import INS_SYSTEMS, OID_NIR_TEST, compact, is_valid_ins, with_key
from maillage.identity.normalize import normalize_birthplace, normalize_sex
from maillage.identity.patient_traits import BIRTH_PLACE_URL, patient_traits
from maillage.national.insi import InsiIdentity

# Changing the seed changes every demo matricule.
SEED: Final = "maillage-demo-insi-1"
DEMO_REGISTER_OID: Final = OID_NIR_TEST

# INSEE codes (99 + country) of the birth countries met in the demo sample, by ISO code.
COUNTRY_CODES: Final = {
    "US": "99404",
    "GB": "99132",
    "DE": "99109",
    "BE": "99131",
    "IT": "99127",
    "ES": "99134",
    "PT": "99139",
    "MA": "99350",
    "DZ": "99352",
    "TN": "99351",
}
# The homonym: born in Bordeaux (INSEE commune 33063), another second first name.
HOMONYM_BIRTHPLACE: Final = "33063"
HOMONYM_SECOND_NAME: Final = {"M": "LOUIS", "F": "LOUISE"}

_SEX_DIGIT: Final = {"M": "1", "F": "2"}


def demo_register(patients: Iterable[dict[str, Any]]) -> list[InsiIdentity]:
    """The register for these Patients (in Patient id order), the homonym last."""
    used: set[str] = set()
    register: list[InsiIdentity] = []
    homonym_of: InsiIdentity | None = None
    for patient in sorted(patients, key=lambda p: str(p.get("id", ""))):
        identity = _identity(patient, used)
        if identity is None:
            continue
        register.append(identity)
        if homonym_of is None and not _deceased(patient):
            homonym_of = identity
    if homonym_of is not None:
        register.append(_homonym(homonym_of, used))
    return register


def _identity(patient: dict[str, Any], used: set[str]) -> InsiIdentity | None:
    traits = patient_traits(patient)
    sex = normalize_sex(traits["sex"])
    names = [str(n).upper() for n in traits["first_names"] or [] if str(n).strip()]
    birth_name = str(traits["birth_name"] or "").upper()
    birth_date = _date(traits["birth_date"])
    birthplace = normalize_birthplace(traits["birthplace"]) or _birth_country(patient)
    if sex not in _SEX_DIGIT or not names or not birth_name or not birth_date or not birthplace:
        return None
    ins, oid = traits["ins"], traits["ins_system"]
    if ins and oid in INS_SYSTEMS and is_valid_ins(ins, oid) and compact(ins)[:13] not in used:
        matricule = compact(ins)  # a Patient that has an INS keeps it
        used.add(matricule[:13])
    else:
        oid = DEMO_REGISTER_OID
        matricule = _matricule(sex, birth_date, birthplace, str(patient.get("id", "")), used)
    return InsiIdentity(
        matricule=matricule,
        oid=oid,
        birth_name=birth_name,
        first_names=tuple(names),
        sex=sex,
        birth_date=birth_date,
        birthplace=birthplace,
    )


def _homonym(of: InsiIdentity, used: set[str]) -> InsiIdentity:
    second = HOMONYM_SECOND_NAME[of.sex]
    if len(of.first_names) > 1 and of.first_names[1] == second:
        second += "-MARIE"
    matricule = _matricule(
        of.sex, of.birth_date, HOMONYM_BIRTHPLACE, f"homonym:{of.matricule}", used
    )
    return InsiIdentity(
        matricule=matricule,
        oid=DEMO_REGISTER_OID,
        birth_name=of.birth_name,
        first_names=(of.first_name, second),
        sex=of.sex,
        birth_date=of.birth_date,
        birthplace=HOMONYM_BIRTHPLACE,
    )


def _matricule(sex: str, born: dt.date, place: str, salt: str, used: set[str]) -> str:
    """sex + yy + mm + place + a free order number (from the hash of ``salt``) + key."""
    head = f"{_SEX_DIGIT[sex]}{born.year % 100:02d}{born.month:02d}{place}"
    digest = blake2b(f"{SEED}:{salt}".encode(), digest_size=8).digest()
    order = int.from_bytes(digest) % 999
    for step in range(999):
        body = f"{head}{(order + step) % 999 + 1:03d}"
        if body not in used:
            used.add(body)
            return with_key(body)
    raise ValueError("no free order number left for a demo matricule")  # 999 homonyms


def _birth_country(patient: dict[str, Any]) -> str:
    for extension in patient.get("extension") or []:
        if isinstance(extension, dict) and extension.get("url") == BIRTH_PLACE_URL:
            address = extension.get("valueAddress")
            if isinstance(address, dict):
                return COUNTRY_CODES.get(str(address.get("country") or "").upper(), "")
    return ""


def _date(value: Any) -> dt.date | None:
    try:
        return dt.date.fromisoformat(str(value)[:10]) if value else None
    except ValueError:
        return None


def _deceased(patient: dict[str, Any]) -> bool:
    return bool(patient.get("deceasedDateTime") or patient.get("deceasedBoolean"))
