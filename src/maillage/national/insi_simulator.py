"""A local INSi: the teleservice's answers computed over a synthetic national register.

Used by the tests and the demo (there is no network to the national service here).
It answers as INSi does, on the traits folded as ``identity.normalize`` folds them:

- search: the identities whose birth name, first birth first name, sex and birth date
  equal the request's; further first names given must be the register's next ones, in
  order; a birthplace given must equal the register's. One → ``found`` with the
  identity, none → ``not_found``, several → ``several`` and no identity (the desk then
  adds the other first names, then the birthplace);
- verify: the matricule (checked: ``InvalidIns``) under its OID unknown to the register
  → ``unknown``; known, its traits compared one by one (birth name, first given name,
  the first names list when more than one is given, sex, birth date, birthplace when
  given) → ``verified`` or ``mismatch`` naming the differing traits.

``latency_s`` delays every answer (as a remote call would); ``unavailable`` makes every
call raise ``TeleserviceUnavailable``. A register file is NDJSON, one
``InsiIdentity.to_json()`` per line.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import orjson

from maillage.errors import ConfigurationError, MaillageError, TeleserviceUnavailable
from maillage.identity.ins import check_ins
from maillage.identity.normalize import (
    normalize_birthplace,
    normalize_first_name,
    normalize_name,
    split_first_names,
)
from maillage.national.insi import (
    Criteria,
    InsiIdentity,
    InsiSearchResult,
    InsiVerification,
    SearchStatus,
    VerificationStatus,
    criteria,
)

_Key = tuple[str, str, str, str]


class InsiSimulator:
    """An ``InsiTeleservice`` over a register of ``InsiIdentity``."""

    def __init__(
        self,
        register: Iterable[InsiIdentity],
        *,
        latency_s: float = 0.0,
        unavailable: bool = False,
    ) -> None:
        self.latency_s = latency_s
        self.unavailable = unavailable
        self._by_traits: dict[_Key, list[InsiIdentity]] = defaultdict(list)
        self._by_ins: dict[tuple[str, str], InsiIdentity] = {}
        for identity in register:
            ins = (identity.matricule, identity.oid)
            if ins in self._by_ins:
                raise ConfigurationError(
                    "the INSi register holds the same matricule twice under one system"
                )
            self._by_ins[ins] = identity
            self._by_traits[_key_of(identity)].append(identity)

    @classmethod
    def from_ndjson(cls, path: Path, **options: Any) -> InsiSimulator:
        return cls(load_register(path), **options)

    def __len__(self) -> int:
        return len(self._by_ins)

    async def search(self, traits: Mapping[str, Any]) -> InsiSearchResult:
        wanted = criteria(traits)
        await self._answer()
        key = (wanted.birth_name, wanted.first_name, wanted.sex, wanted.birth_date)
        found = [identity for identity in self._by_traits.get(key, []) if _fits(identity, wanted)]
        if not found:
            return InsiSearchResult(SearchStatus.NOT_FOUND)
        if len(found) > 1:
            return InsiSearchResult(SearchStatus.SEVERAL)
        return InsiSearchResult(SearchStatus.FOUND, found[0])

    async def verify(self, matricule: str, oid: str, traits: Mapping[str, Any]) -> InsiVerification:
        checked = check_ins(matricule, oid)
        wanted = criteria(traits)
        await self._answer()
        identity = self._by_ins.get((checked.value, oid))
        if identity is None:
            return InsiVerification(VerificationStatus.UNKNOWN)
        differing = differing_traits(identity, wanted)
        if differing:
            return InsiVerification(VerificationStatus.MISMATCH, differing)
        return InsiVerification(VerificationStatus.VERIFIED)

    async def _answer(self) -> None:
        if self.latency_s > 0:
            await asyncio.sleep(self.latency_s)
        if self.unavailable:
            raise TeleserviceUnavailable(
                "the INSi teleservice is unavailable: keep the identity as it is "
                "(provisional) and retry later"
            )


def differing_traits(identity: InsiIdentity, wanted: Criteria) -> tuple[str, ...]:
    """The traits (names of ``insi.TRAITS``) where the request is not the register."""
    reference = _reference_names(identity)
    differing: list[str] = []
    if normalize_name(identity.birth_name) != wanted.birth_name:
        differing.append("birth_name")
    if reference[0] != wanted.first_name:
        differing.append("first_name")
    elif len(wanted.first_names) > 1 and "".join(reference) != "".join(wanted.first_names):
        differing.append("first_names")
    if identity.sex != wanted.sex:
        differing.append("sex")
    if identity.birth_date.strftime("%Y%m%d") != wanted.birth_date:
        differing.append("birth_date")
    if wanted.birthplace and normalize_birthplace(identity.birthplace) != wanted.birthplace:
        differing.append("birthplace")
    return tuple(differing)


def load_register(path: Path) -> list[InsiIdentity]:
    """A register from NDJSON; a bad line stops the load with its line number (not its
    content: it is personal data)."""
    register: list[InsiIdentity] = []
    with path.open("rb") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                register.append(InsiIdentity.from_json(orjson.loads(line)))
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as error:
                raise ConfigurationError(
                    f"{path}:{number}: not an INSi identity ({type(error).__name__})"
                ) from None
            except MaillageError as error:
                raise ConfigurationError(f"{path}:{number}: {error.message}") from None
    return register


def write_register(register: Iterable[InsiIdentity], path: Path) -> int:
    """Write a register as NDJSON; the number of identities written."""
    count = 0
    with path.open("wb") as out:
        for identity in register:
            out.write(orjson.dumps(identity.to_json()) + b"\n")
            count += 1
    return count


def _reference_names(identity: InsiIdentity) -> list[str]:
    return split_first_names(list(identity.first_names)) or [
        normalize_first_name(identity.first_name)
    ]


def _key_of(identity: InsiIdentity) -> _Key:
    return (
        normalize_name(identity.birth_name),
        _reference_names(identity)[0],
        identity.sex,
        identity.birth_date.strftime("%Y%m%d"),
    )


def _fits(identity: InsiIdentity, wanted: Criteria) -> bool:
    """Further first names and the birthplace, when the request gives them."""
    reference = _reference_names(identity)
    if (
        len(wanted.first_names) > 1
        and list(wanted.first_names) != reference[: len(wanted.first_names)]
    ):
        return False
    return not wanted.birthplace or normalize_birthplace(identity.birthplace) == wanted.birthplace
