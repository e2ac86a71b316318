"""The demo territory's synthetic national register."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest

from maillage.demo.resources import sample_resources
from maillage.identity.ins import OID_NIR_TEST, check_ins, with_key
from maillage.identity.patient_traits import patient_traits
from maillage.national.demo_register import HOMONYM_BIRTHPLACE, demo_register
from maillage.national.insi import SearchStatus
from maillage.national.insi_simulator import InsiSimulator


@pytest.fixture(scope="module")
def patients() -> list[dict[str, Any]]:
    return [r for r in sample_resources() if r["resourceType"] == "Patient"]


def test_every_demo_patient_has_a_valid_test_nir(patients: list[dict[str, Any]]) -> None:
    register = demo_register(patients)
    assert len(register) == len(patients) + 1  # and the homonym
    for identity in register:
        assert identity.oid == OID_NIR_TEST
        checked = check_ins(identity.matricule, identity.oid)  # the key is right
        assert with_key(checked.value[:13]) == checked.value
        assert checked.sex_digit == {"M": "1", "F": "2"}[identity.sex]
        assert checked.birth_year_2 == f"{identity.birth_date.year % 100:02d}"
        assert checked.birth_month == f"{identity.birth_date.month:02d}"
        assert checked.birthplace == identity.birthplace
    assert len({identity.matricule for identity in register}) == len(register)


def test_the_register_is_deterministic(patients: list[dict[str, Any]]) -> None:
    shuffled = list(patients)
    random.Random(7).shuffle(shuffled)
    assert demo_register(shuffled) == demo_register(patients)
    assert [i.to_json() for i in demo_register(patients)] == [
        i.to_json() for i in demo_register(patients)
    ]


def test_each_demo_patient_is_found_by_its_own_traits(patients: list[dict[str, Any]]) -> None:
    simulator = InsiSimulator(demo_register(patients))

    async def searches() -> list[Any]:
        return [await simulator.search(patient_traits(p)) for p in patients]

    results = asyncio.run(searches())
    assert all(result.status is SearchStatus.FOUND for result in results)
    found = [result.identity for result in results if result.identity is not None]
    assert len({identity.matricule for identity in found}) == len(patients)


def test_the_homonym_makes_four_traits_ambiguous(patients: list[dict[str, Any]]) -> None:
    register = demo_register(patients)
    homonym = register[-1]
    assert homonym.birthplace == HOMONYM_BIRTHPLACE
    simulator = InsiSimulator(register)
    four = {
        "birth_name": homonym.birth_name,
        "first_name": homonym.first_name,
        "sex": homonym.gender,
        "birth_date": homonym.birth_date.isoformat(),
    }
    several = asyncio.run(simulator.search(four))
    assert several.status is SearchStatus.SEVERAL
    with_place = asyncio.run(simulator.search({**four, "birthplace": HOMONYM_BIRTHPLACE}))
    assert with_place.identity == homonym


def test_a_patient_missing_a_trait_gets_no_ins(patients: list[dict[str, Any]]) -> None:
    no_birth_date = {**patients[0], "birthDate": None}
    no_birth_country = {**patients[1], "extension": []}
    assert demo_register([no_birth_date, no_birth_country]) == []


def test_a_patient_with_an_ins_keeps_it(patients: list[dict[str, Any]]) -> None:
    ins = with_key("2270599404999")
    patient = {
        **patients[0],
        "identifier": [{"system": OID_NIR_TEST, "value": ins}],
    }
    assert demo_register([patient])[0].matricule == ins
