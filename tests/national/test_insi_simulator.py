"""The local INSi: search (found, not found, several), verification, availability."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest

from maillage.errors import ConfigurationError, InvalidIns, InvalidRequest, TeleserviceUnavailable
from maillage.identity.ins import OID_NIR, OID_NIR_TEST, with_key
from maillage.national.insi import (
    CODE_FOUND,
    CODE_NOT_FOUND,
    CODE_SEVERAL,
    InsiSearchResult,
    InsiTeleservice,
    InsiVerification,
    SearchStatus,
    VerificationStatus,
)
from maillage.national.insi_simulator import InsiSimulator, load_register, write_register
from tests.national.conftest import AMINA, MARIE, PAUL_LYON, PAUL_NANTES, REGISTER, traits_of


def search(simulator: InsiSimulator, traits: dict[str, Any]) -> InsiSearchResult:
    return asyncio.run(simulator.search(traits))


def verify(
    simulator: InsiSimulator, matricule: str, oid: str, traits: dict[str, Any]
) -> InsiVerification:
    return asyncio.run(simulator.verify(matricule, oid, traits))


def test_the_simulator_is_an_insi_teleservice(simulator: InsiSimulator) -> None:
    teleservice: InsiTeleservice = simulator
    assert len(simulator) == len(REGISTER)
    assert teleservice is simulator


def test_search_finds_one_identity_on_the_folded_traits(simulator: InsiSimulator) -> None:
    # as a desk types it: particle at the end, no accents, first name with a space
    typed = {
        "birth_name": "Fontaine (de la)",
        "first_name": "Marie Helene",
        "sex": "female",
        "birth_date": "14/03/1985",
    }
    result = search(simulator, typed)
    assert result.status is SearchStatus.FOUND
    assert result.code == CODE_FOUND
    assert result.identity == MARIE
    assert result.identity.first_names == ("MARIE-HÉLÈNE", "JEANNE")


def test_search_with_the_traits_of_a_patient(simulator: InsiSimulator) -> None:
    patient_like = traits_of(MARIE, ins=None, ins_system=None, used_name="DURAND")
    assert search(simulator, patient_like).identity == MARIE


def test_a_first_name_typed_with_spaces_keeps_the_list(simulator: InsiSimulator) -> None:
    typed = traits_of(MARIE, first_name="Marie Hélène", first_names=["Marie Hélène", "Jeanne"])
    assert search(simulator, typed).identity == MARIE
    other = traits_of(MARIE, first_name="Marie Hélène", first_names=["Marie Hélène", "Louise"])
    assert search(simulator, other).status is SearchStatus.NOT_FOUND


def test_search_finds_an_nia(simulator: InsiSimulator) -> None:
    result = search(simulator, traits_of(AMINA))
    assert result.identity == AMINA
    assert result.identity.is_nia and result.identity.kind == "NIA"


@pytest.mark.parametrize(
    "change",
    [
        {"birth_name": "DE LA FONTAINES"},
        {"first_names": ["JEANNE"]},
        {"sex": "male"},
        {"birth_date": "1985-03-15"},
        {"birthplace": "75101"},
        {"first_names": ["MARIE-HÉLÈNE", "LOUISE"]},
    ],
)
def test_search_finds_nobody_when_a_trait_differs(
    simulator: InsiSimulator, change: dict[str, Any]
) -> None:
    result = search(simulator, traits_of(MARIE, first_name=None, **change))
    assert result.status is SearchStatus.NOT_FOUND
    assert result.code == CODE_NOT_FOUND
    assert result.identity is None


def test_several_identities_give_no_identity(simulator: InsiSimulator) -> None:
    four_traits = {
        "birth_name": "Martin",
        "first_name": "Paul",
        "sex": "M",
        "birth_date": "1992-01-05",
    }
    result = search(simulator, four_traits)
    assert result.status is SearchStatus.SEVERAL
    assert result.code == CODE_SEVERAL
    assert result.identity is None


def test_several_is_resolved_by_the_other_first_names_then_the_birthplace(
    simulator: InsiSimulator,
) -> None:
    four_traits = {"birth_name": "Martin", "sex": "M", "birth_date": "1992-01-05"}
    with_names = search(simulator, {**four_traits, "first_names": ["Paul", "André"]})
    assert with_names.identity == PAUL_LYON
    with_place = search(simulator, {**four_traits, "first_name": "Paul", "birthplace": "44109"})
    assert with_place.identity == PAUL_NANTES


def test_search_names_every_missing_trait(simulator: InsiSimulator) -> None:
    with pytest.raises(InvalidRequest) as raised:
        search(simulator, {"birth_name": "Martin", "sex": "other", "birthplace": "Lyon"})
    named = {issue.expression for issue in raised.value.issues}
    assert named == {"first_name", "sex", "birth_date", "birthplace"}
    assert "Martin" not in raised.value.message


def test_verification_of_matching_traits(simulator: InsiSimulator) -> None:
    result = verify(simulator, MARIE.matricule, MARIE.oid, traits_of(MARIE))
    assert result.status is VerificationStatus.VERIFIED
    assert result.differing == ()


def test_verification_accepts_a_matricule_typed_with_spaces(simulator: InsiSimulator) -> None:
    typed = " ".join([MARIE.matricule[:1], MARIE.matricule[1:5], MARIE.matricule[5:]])
    assert (
        verify(simulator, typed, MARIE.oid, traits_of(MARIE)).status is VerificationStatus.VERIFIED
    )


def test_mismatch_names_the_differing_traits(simulator: InsiSimulator) -> None:
    local = traits_of(MARIE, birth_name="FONTAINE", birth_date="1985-04-14")
    result = verify(simulator, MARIE.matricule, MARIE.oid, local)
    assert result.status is VerificationStatus.MISMATCH
    assert result.differing == ("birth_name", "birth_date")


def test_mismatch_on_the_first_names_list_and_the_birthplace(simulator: InsiSimulator) -> None:
    local = traits_of(
        PAUL_LYON, first_name=None, first_names=["Paul", "Lucien"], birthplace="44109"
    )
    result = verify(simulator, PAUL_LYON.matricule, PAUL_LYON.oid, local)
    assert result.differing == ("first_names", "birthplace")
    other_sex = verify(simulator, PAUL_LYON.matricule, PAUL_LYON.oid, traits_of(PAUL_LYON, sex="F"))
    assert other_sex.differing == ("sex",)


def test_an_unknown_matricule_is_unknown(simulator: InsiSimulator) -> None:
    elsewhere = with_key("1920169123999")
    assert verify(simulator, elsewhere, OID_NIR_TEST, traits_of(PAUL_LYON)).status is (
        VerificationStatus.UNKNOWN
    )
    # the same number under another system is another INS
    assert verify(simulator, MARIE.matricule, OID_NIR, traits_of(MARIE)).status is (
        VerificationStatus.UNKNOWN
    )


def test_verification_refuses_a_wrong_key(simulator: InsiSimulator) -> None:
    wrong = MARIE.matricule[:13] + f"{(int(MARIE.matricule[13:]) + 1) % 97:02d}"
    with pytest.raises(InvalidIns):
        verify(simulator, wrong, MARIE.oid, traits_of(MARIE))


def test_unavailable_raises_a_typed_error(simulator: InsiSimulator) -> None:
    simulator.unavailable = True
    with pytest.raises(TeleserviceUnavailable) as raised:
        search(simulator, traits_of(MARIE))
    assert raised.value.code == "transient"
    with pytest.raises(TeleserviceUnavailable):
        verify(simulator, MARIE.matricule, MARIE.oid, traits_of(MARIE))
    simulator.unavailable = False
    assert search(simulator, traits_of(MARIE)).identity == MARIE


def test_latency_delays_the_answer() -> None:
    slow = InsiSimulator(REGISTER, latency_s=0.05)
    started = time.monotonic()
    assert search(slow, traits_of(MARIE)).identity == MARIE
    assert time.monotonic() - started >= 0.05


def test_a_register_round_trips_through_ndjson(tmp_path: Path) -> None:
    path = tmp_path / "register.ndjson"
    assert write_register(REGISTER, path) == len(REGISTER)
    assert load_register(path) == list(REGISTER)
    loaded = InsiSimulator.from_ndjson(path)
    assert search(loaded, traits_of(AMINA)).identity == AMINA


def test_a_bad_register_line_names_its_line_not_its_content(tmp_path: Path) -> None:
    path = tmp_path / "register.ndjson"
    write_register([MARIE], path)
    bad = {**MARIE.to_json(), "matricule": MARIE.matricule[:13] + "00"}
    path.write_text(path.read_text() + "\n" + json.dumps(bad) + "\n")
    with pytest.raises(ConfigurationError) as raised:
        load_register(path)
    assert ":3:" in raised.value.message
    assert MARIE.matricule[:13] not in raised.value.message


def test_the_same_ins_twice_is_refused() -> None:
    with pytest.raises(ConfigurationError):
        InsiSimulator([MARIE, MARIE])


def test_identities_keep_personal_data_out_of_their_repr() -> None:
    assert MARIE.matricule not in repr(MARIE)
    assert "FONTAINE" not in repr(MARIE)
