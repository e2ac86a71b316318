"""Value set expansion (``maillage.terminology``), pure: no database, no hub."""

from __future__ import annotations

import re
from typing import Any

import pytest

from maillage.errors import UnknownValueSet, ValueSetNotExpandable
from maillage.terminology import Catalog, Expansion, Members, Terminology, by_canonical
from tests import factories
from tests.factories import SNOMED

LAB = "http://example.org/fhir/CodeSystem/lab"
GENDER = "http://hl7.org/fhir/administrative-gender"
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"


def _lab_system() -> dict[str, Any]:
    """A small complete code system: panel > (chem > (gluc, na), hemato > hb), plus
    ``k`` placed under ``chem`` by a ``parent`` property and ``x`` on its own."""
    return {
        "resourceType": "CodeSystem",
        "url": LAB,
        "content": "complete",
        "concept": [
            {
                "code": "panel",
                "concept": [
                    {"code": "chem", "concept": [{"code": "gluc"}, {"code": "na"}]},
                    {"code": "hemato", "concept": [{"code": "hb"}]},
                ],
            },
            {"code": "k", "property": [{"code": "parent", "valueCode": "chem"}]},
            {"code": "x", "property": [{"code": "kind", "valueString": "other"}]},
        ],
    }


def _terminology(*stored: dict[str, Any]) -> Terminology:
    catalog = Catalog([_lab_system(), *stored])
    return Terminology(catalog=catalog)


def _codes(expansion: Expansion) -> set[tuple[str, str]]:
    return set(expansion.enumerated())


def test_explicit_concepts_and_exclude() -> None:
    vs = factories.value_set(
        include=[factories.concepts(LAB, "gluc", "na", "hb")],
        exclude=[factories.concepts(LAB, "na")],
    )
    found = _terminology(vs).expand(vs["url"])
    assert _codes(found) == {(LAB, "gluc"), (LAB, "hb")}
    assert found.contains(LAB, "gluc") and not found.contains(LAB, "na")


def test_whole_system_is_kept_whole_with_its_exceptions() -> None:
    vs = factories.value_set(
        include=[{"system": SNOMED}], exclude=[factories.concepts(SNOMED, "38341003")]
    )
    found = _terminology(vs).expand(vs["url"])
    assert list(found.whole_systems()) == [(SNOMED, frozenset({"38341003"}))]
    assert _codes(found) == set()
    assert found.contains(SNOMED, "73211009")
    assert not found.contains(SNOMED, "38341003")
    assert not found.contains(LAB, "gluc")


def test_value_set_imports_union_and_intersection() -> None:
    chemistry = factories.value_set(include=[factories.concepts(LAB, "gluc", "na", "k")])
    blood = factories.value_set(include=[factories.concepts(LAB, "gluc", "hb")])
    both = factories.value_set(include=[{"valueSet": [chemistry["url"], blood["url"]]}])
    either = factories.value_set(
        include=[{"valueSet": [chemistry["url"]]}, {"valueSet": [blood["url"]]}],
        exclude=[{"valueSet": [blood["url"]]}],
    )
    # system + valueSet in one include: the codes of the system that are in the import
    narrowed = factories.value_set(include=[{"system": LAB, "valueSet": [blood["url"]]}])
    terminology = _terminology(chemistry, blood, both, either, narrowed)
    assert _codes(terminology.expand(both["url"])) == {(LAB, "gluc")}
    assert _codes(terminology.expand(either["url"])) == {(LAB, "na"), (LAB, "k")}
    assert _codes(terminology.expand(narrowed["url"])) == {(LAB, "gluc"), (LAB, "hb")}


def test_filters_on_a_complete_hierarchy() -> None:
    def expand(*filters: dict[str, str]) -> set[str]:
        vs = factories.value_set(include=[{"system": LAB, "filter": list(filters)}])
        return {code for _, code in _codes(_terminology(vs).expand(vs["url"]))}

    assert expand({"property": "concept", "op": "is-a", "value": "chem"}) == {
        "chem",
        "gluc",
        "na",
        "k",  # below chem through its ``parent`` property
    }
    assert expand({"property": "concept", "op": "descendent-of", "value": "panel"}) == {
        "chem",
        "gluc",
        "na",
        "k",
        "hemato",
        "hb",
    }
    assert expand({"property": "concept", "op": "is-not-a", "value": "chem"}) == {
        "panel",
        "hemato",
        "hb",
        "x",
    }
    assert expand({"property": "concept", "op": "generalizes", "value": "gluc"}) == {
        "gluc",
        "chem",
        "panel",
    }
    assert expand({"property": "kind", "op": "=", "value": "other"}) == {"x"}
    assert expand({"property": "code", "op": "regex", "value": "h.*"}) == {"hemato", "hb"}
    assert expand({"property": "concept", "op": "in", "value": "na,hb,zz"}) == {"na", "hb"}
    # several filters in one include: all of them
    assert expand(
        {"property": "concept", "op": "is-a", "value": "chem"},
        {"property": "concept", "op": "regex", "value": "[gn].*"},
    ) == {"gluc", "na"}


def test_filter_without_the_hierarchy_is_a_typed_error() -> None:
    vs = factories.value_set(
        include=[
            {"system": SNOMED, "filter": [{"property": "concept", "op": "is-a", "value": "1"}]}
        ]
    )
    with pytest.raises(ValueSetNotExpandable, match="cannot be expanded here"):
        _terminology(vs).expand(vs["url"])
    # the shipped SNOMED CT CodeSystem is "not-present": the same answer
    with pytest.raises(ValueSetNotExpandable, match="snomed"):
        Terminology().expand("http://hl7.org/fhir/ValueSet/clinical-findings")


def test_an_expansion_carried_by_the_value_set() -> None:
    listed = factories.value_set(
        expansion={
            "timestamp": "2024-01-01T00:00:00Z",
            "contains": [
                {"system": LAB, "code": "gluc"},
                {"system": SNOMED, "code": "1", "contains": [{"system": SNOMED, "code": "2"}]},
            ],
        }
    )
    assert _codes(_terminology(listed).expand(listed["url"])) == {
        (LAB, "gluc"),
        (SNOMED, "1"),
        (SNOMED, "2"),
    }
    # a compose this hub cannot evaluate falls back to the expansion given with it
    snomed_filter = {"property": "concept", "op": "is-a", "value": "1"}
    both = {**listed, "url": listed["url"] + "-2"}
    both["compose"] = {"include": [{"system": SNOMED, "filter": [snomed_filter]}]}
    assert _codes(_terminology(both).expand(both["url"])) == _codes(
        _terminology(listed).expand(listed["url"])
    )
    # one page of a larger expansion is not the value set
    paged = factories.value_set(
        expansion={"total": 40, "offset": 0, "contains": [{"system": LAB, "code": "gluc"}]}
    )
    with pytest.raises(ValueSetNotExpandable):
        _terminology(paged).expand(paged["url"])


def test_unknown_urls_and_cycles() -> None:
    with pytest.raises(UnknownValueSet, match=re.escape("http://example.org/none")):
        _terminology().expand("http://example.org/none")
    dangling = factories.value_set(include=[{"valueSet": ["http://example.org/none"]}])
    with pytest.raises(ValueSetNotExpandable, match=re.escape("http://example.org/none")):
        _terminology(dangling).expand(dangling["url"])
    loop = factories.value_set(include=[factories.concepts(LAB, "gluc")])
    loop["compose"]["include"].append({"valueSet": [loop["url"]]})
    with pytest.raises(ValueSetNotExpandable, match="imports itself"):
        _terminology(loop).expand(loop["url"])


def test_canonical_versions() -> None:
    first = factories.value_set(version="1", include=[factories.concepts(LAB, "gluc")])
    second = {**first, "version": "2", "compose": {"include": [factories.concepts(LAB, "na")]}}
    terminology = Terminology(by_canonical([first, second]), catalog=Catalog([_lab_system()]))
    assert _codes(terminology.expand(first["url"] + "|1")) == {(LAB, "gluc")}
    assert _codes(terminology.expand(first["url"] + "|2")) == {(LAB, "na")}
    assert _codes(terminology.expand(first["url"])) == {(LAB, "na")}  # the last given
    with pytest.raises(UnknownValueSet):
        terminology.expand(first["url"] + "|3")


def test_shipped_value_sets_and_code_systems() -> None:
    terminology = Terminology()
    gender = terminology.expand("http://hl7.org/fhir/ValueSet/administrative-gender")
    assert list(gender.whole_systems()) == [(GENDER, frozenset())]
    assert terminology.expand("http://hl7.org/fhir/ValueSet/administrative-gender|4.0.1")
    assert terminology.codes_of(GENDER) == {"male", "female", "other", "unknown"}
    assert terminology.codes_of(SNOMED) is None  # not-present: never enumerated
    # a v3 value set defined by an is-a filter over the shipped v3 ActCode hierarchy
    encounter = terminology.expand("http://terminology.hl7.org/ValueSet/v3-ActEncounterCode")
    assert {"AMB", "IMP", "EMER"} <= {code for system, code in encounter.enumerated()}
    assert all(system == ACT_CODE for system, _ in encounter.enumerated())


def test_stored_value_sets_take_precedence() -> None:
    url = "http://hl7.org/fhir/ValueSet/administrative-gender"
    mine = factories.value_set(url=url, include=[factories.concepts(GENDER, "female")])
    found = Terminology(by_canonical([mine])).expand(url)
    assert _codes(found) == {(GENDER, "female")}


def test_members_algebra() -> None:
    whole, some = Members(True, frozenset({"a"})), Members(False, frozenset({"a", "b"}))
    assert whole.union(some) == Members(True)
    assert some.difference(whole) == Members(False, frozenset({"a"}))
    assert whole.difference(some) == Members(True, frozenset({"a", "b"}))
    assert whole.intersection(some) == Members(False, frozenset({"b"}))
    assert Members(True).difference(Members(True)).empty
