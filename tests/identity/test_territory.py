"""The French territorial benchmark at a small size: the generator's Patients are valid
under the identity rules, the batch match merges no twin or homonym and keeps its
precision (the full figures: ``python -m bench.identity_territory``)."""

from __future__ import annotations

import pytest
from bench.identity_territory import match
from bench.identity_territory_data import TerritorySet, generate

from maillage.demo.sites import SITES
from maillage.identity.checks import check_patient
from maillage.identity.model import default_model
from maillage.identity.patient_traits import patient_traits


@pytest.fixture(scope="module")
def territory() -> TerritorySet:
    return generate(persons=1000, seed=11)


def test_the_set_is_deterministic_and_keeps_the_identity_rules(territory: TerritorySet) -> None:
    again = generate(persons=1000, seed=11)
    assert again.patients == territory.patients and again.truth == territory.truth
    systems = [site.ipp_system for site in SITES]
    assert all(not check_patient(patient, systems) for patient in territory.patients)
    traits = [patient_traits(patient) for patient in territory.patients]
    qualified = [t for t in traits if t["ins_status"] == "QUAL"]
    assert all(t["ins"] for t in qualified)
    assert not any(t["ins"] for t in traits if t["ins_status"] != "QUAL")
    assert 0.3 < len(qualified) / len(traits) < 0.5
    assert len(territory.twins) == 10 and len(territory.homonyms) == 5


def test_nir_digits_agree_with_the_traits(territory: TerritorySet) -> None:
    for patient in territory.patients:
        traits = patient_traits(patient)
        if not traits["ins"]:
            continue
        nir = traits["ins"]
        assert nir[0] == ("1" if traits["sex"] == "male" else "2")
        assert nir[1:5] == traits["birth_date"][2:4] + traits["birth_date"][5:7]
        assert nir[5:10] == traits["birthplace"]


def test_batch_match_merges_no_twin_and_keeps_precision(territory: TerritorySet) -> None:
    result = match(territory, default_model(), "default")
    assert result["twins_merged"] == 0 and result["homonyms_merged"] == 0
    assert result["precision"] >= 0.999
    assert result["recall_with_review"] >= 0.97
