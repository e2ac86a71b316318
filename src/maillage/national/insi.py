"""The INSi teleservice: what the hub asks it and what it answers, as types.

INSi is the national teleservice (Assurance maladie, for the ANS) that returns a
person's INS — the matricule (NIR, or NIA for a person whose civil status is still
being checked) and the reference traits of the national registers: birth name, birth
first names list, sex, birth date, INSEE code of the birthplace — or checks an INS held
locally against the traits. Two operations are modelled here:

- **search** (*recherche* by traits): birth name, first name(s), sex and birth date,
  the birthplace optional. The answer is one identity (INSi code 00), none (01), or
  several (02): the teleservice then returns no identity and the desk retries with the
  other birth first names of the identity document, then with the birthplace.
  (The search by carte Vitale is not modelled: the hub has no card reader.)
- **verify** (*vérification*): a matricule, its OID and the local traits. The answer
  says whether the national register holds that matricule with those traits
  (``verified``), holds it with other traits (``mismatch``, naming which ones), or
  does not know it (``unknown``).

``InsiTeleservice`` is the Protocol callers depend on. ``InsiSimulator``
(``insi_simulator.py``) implements it over a synthetic register for the tests and the
demo. A real client, added later behind the same Protocol, needs what the simulator
does without:

- authentication of the caller: a health professional's CPS card or e-CPS (the
  operator's identity goes with each call), or the organisation's certificate
  (*certificat personne morale*, IGC-Santé) for calls made by the structure;
- the transport: SOAP web services over mutual TLS with that certificate, with the
  context headers (calling software, structure, operator) the teleservice requires;
- registration of the calling software (*LPS*: the *logiciel de professionnel de santé*
  declared and approved for INSi, with its identifiers and version sent on each
  call), and the test and production endpoints of the teleservice;
- the teleservice's own error and unavailability answers, translated to
  ``TeleserviceUnavailable`` (503) or ``InvalidRequest`` (400) as here.

Traits are the raw trait dicts of ``maillage.identity.patient_traits.patient_traits``
(``birth_name``, ``first_names``, ``first_name``, ``sex``, ``birth_date``,
``birthplace``, …). Nothing here logs, and no message or ``repr`` quotes a trait or a
matricule: they are personal data.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final, Protocol

from maillage.errors import InvalidRequest, Issue
from maillage.identity.ins import INS_SYSTEMS, OID_NIA, check_ins
from maillage.identity.normalize import (
    normalize_birthplace,
    normalize_first_name,
    normalize_name,
    normalize_sex,
    parse_birth_date,
    split_first_names,
)

# INSi's answer codes to a search.
CODE_FOUND: Final = "00"
CODE_NOT_FOUND: Final = "01"
CODE_SEVERAL: Final = "02"

# The traits of a search or a verification, in the order they are compared and named.
TRAITS: Final = ("birth_name", "first_name", "first_names", "sex", "birth_date", "birthplace")

_GENDER_OF_SEX: Final = {"M": "male", "F": "female"}


class SearchStatus(StrEnum):
    FOUND = "found"
    NOT_FOUND = "not_found"
    SEVERAL = "several"


class VerificationStatus(StrEnum):
    VERIFIED = "verified"
    MISMATCH = "mismatch"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class InsiIdentity:
    """An INS as INSi returns it: the matricule under its system, and the reference traits.

    ``sex`` is ``M`` or ``F`` (INSi's codes; ``gender`` gives the FHIR value),
    ``first_names`` the birth first names in their order, ``birthplace`` the INSEE code
    (commune, or 99 + country for a birth abroad), None when the register has none.
    Checked on creation: the matricule's key under its OID (``InvalidIns``), the sex,
    a first name.
    """

    matricule: str
    oid: str
    birth_name: str
    first_names: tuple[str, ...]
    sex: str
    birth_date: dt.date
    birthplace: str | None = None

    def __post_init__(self) -> None:
        checked = check_ins(self.matricule, self.oid)
        object.__setattr__(self, "matricule", checked.value)
        object.__setattr__(self, "first_names", tuple(self.first_names))
        if self.sex not in _GENDER_OF_SEX:
            raise InvalidRequest("an INS identity's sex is M or F")
        if not self.first_names or not self.birth_name:
            raise InvalidRequest("an INS identity has a birth name and a birth first name")

    def __repr__(self) -> str:  # no personal data in logs or tracebacks
        return f"InsiIdentity(<{self.kind}>)"

    @property
    def kind(self) -> str:
        """NIR, NIA, NIR-TEST or NIR-DEMO (``identity.ins.INS_SYSTEMS``)."""
        return INS_SYSTEMS[self.oid]

    @property
    def is_nia(self) -> bool:
        return self.oid == OID_NIA

    @property
    def first_name(self) -> str:
        """The first birth first name."""
        return self.first_names[0]

    @property
    def gender(self) -> str:
        return _GENDER_OF_SEX[self.sex]

    def traits(self) -> dict[str, Any]:
        """The identity as raw traits (the keys of ``patient_traits``), INS included."""
        return {
            "birth_name": self.birth_name,
            "first_name": self.first_name,
            "first_names": list(self.first_names),
            "sex": self.gender,
            "birth_date": self.birth_date.isoformat(),
            "birthplace": self.birthplace,
            "ins": self.matricule,
            "ins_system": self.oid,
        }

    def to_json(self) -> dict[str, Any]:
        """One line of a register file (``insi_simulator.load_register``)."""
        return {
            "matricule": self.matricule,
            "oid": self.oid,
            "birth_name": self.birth_name,
            "first_names": list(self.first_names),
            "sex": self.sex,
            "birth_date": self.birth_date.isoformat(),
            "birthplace": self.birthplace,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> InsiIdentity:
        names = data.get("first_names")
        return cls(
            matricule=str(data["matricule"]),
            oid=str(data["oid"]),
            birth_name=str(data["birth_name"]),
            first_names=tuple(str(n) for n in names) if isinstance(names, list) else (),
            sex=str(data["sex"]),
            birth_date=dt.date.fromisoformat(str(data["birth_date"])),
            birthplace=str(data["birthplace"]) if data.get("birthplace") else None,
        )


@dataclass(frozen=True, slots=True)
class InsiSearchResult:
    """The answer to a search: ``identity`` only when ``found`` (INSi returns none when
    several people share the traits)."""

    status: SearchStatus
    identity: InsiIdentity | None = None

    def __post_init__(self) -> None:
        if (self.identity is not None) != (self.status is SearchStatus.FOUND):
            raise ValueError("a search result carries an identity exactly when found")

    @property
    def code(self) -> str:
        """INSi's answer code: 00 one identity, 01 none, 02 several."""
        return {
            SearchStatus.FOUND: CODE_FOUND,
            SearchStatus.NOT_FOUND: CODE_NOT_FOUND,
            SearchStatus.SEVERAL: CODE_SEVERAL,
        }[self.status]


@dataclass(frozen=True, slots=True)
class InsiVerification:
    """The answer to a verification: ``differing`` names the traits (of ``TRAITS``) whose
    local value is not the register's, when ``mismatch``."""

    status: VerificationStatus
    differing: tuple[str, ...] = field(default=())


class InsiTeleservice(Protocol):
    """What the hub asks INSi. Implementations raise ``TeleserviceUnavailable`` when the
    teleservice cannot answer, ``InvalidRequest`` (``InvalidIns``) for missing traits or
    a malformed matricule."""

    async def search(self, traits: Mapping[str, Any]) -> InsiSearchResult: ...

    async def verify(
        self, matricule: str, oid: str, traits: Mapping[str, Any]
    ) -> InsiVerification: ...


@dataclass(frozen=True, slots=True)
class Criteria:
    """The traits of a request in their compared (folded) forms: ``birthplace`` is ``""``
    when not given; ``first_names`` holds at least the first given name."""

    birth_name: str
    first_names: tuple[str, ...]
    sex: str
    birth_date: str  # YYYYMMDD
    birthplace: str

    @property
    def first_name(self) -> str:
        return self.first_names[0]


def criteria(traits: Mapping[str, Any]) -> Criteria:
    """The traits INSi needs, folded as ``identity.normalize`` folds them; raise
    ``InvalidRequest`` naming each missing or unreadable trait (never its value).

    The first given name is ``first_name`` when given, else the first of
    ``first_names``; the list follows it (a list that does not start with the first
    given name, even once the parts of a first name typed with spaces are glued back,
    is taken as the first given name alone)."""
    issues: list[Issue] = []
    birth_name = normalize_name(_text(traits.get("birth_name")))
    names = split_first_names(_names(traits.get("first_names")))
    first = normalize_first_name(_text(traits.get("first_name"))) or (names[0] if names else "")
    if names and names[0] != first:
        names = _regrouped(names, first)
    sex = normalize_sex(traits.get("sex"))
    birth_date = parse_birth_date(traits.get("birth_date"))
    raw_place = traits.get("birthplace")
    birthplace = normalize_birthplace(raw_place)
    if not birth_name:
        issues.append(_missing("birth_name", "the birth name is required"))
    if not first:
        issues.append(_missing("first_name", "the first birth first name is required"))
    if not sex:
        issues.append(_missing("sex", "the sex is required: male or female (M or F)"))
    if len(birth_date) != 8:
        issues.append(_missing("birth_date", "the birth date is required, as YYYY-MM-DD"))
    if raw_place not in (None, "") and not birthplace:
        issues.append(
            _missing(
                "birthplace",
                "the birthplace is an INSEE code: department + commune (5 characters, "
                "2A/2B for Corsica) or 99 + country; leave it out when unknown",
            )
        )
    if issues:
        raise InvalidRequest("; ".join(issue.message for issue in issues), issues=issues)
    return Criteria(birth_name, tuple(names or [first]), sex, birth_date, birthplace)


def _regrouped(names: list[str], first: str) -> list[str]:
    """``["marie", "helene", "jeanne"]`` for the first name ``mariehelene`` (typed
    ``Marie Hélène``) → ``["mariehelene", "jeanne"]``; else ``[first]``."""
    for count in range(2, len(names) + 1):
        if "".join(names[:count]) == first:
            return [first, *names[count:]]
    return [first]


def _missing(trait: str, message: str) -> Issue:
    return Issue(message=message, expression=trait, code="required")


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _names(value: Any) -> str | list[str] | None:
    if isinstance(value, str):
        return value
    if isinstance(value, list | tuple):
        return [item for item in value if isinstance(item, str)]
    return None
