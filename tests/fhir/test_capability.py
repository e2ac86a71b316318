"""``GET /fhir/metadata`` tells the truth: what it lists works."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import httpx
import pytest
from psycopg import sql

from maillage.fhir.definitions import params_for
from maillage.fhir.indexing.extractor import extract_index
from maillage.fhir.search.engine import SearchEngine
from maillage.fhir.validation import validate_resource
from tests import factories
from tests.fhir.support import body, create, put

# A syntactically valid value for each search parameter type.
SAMPLE_VALUE = {
    "token": "http://example.org/cs|code-1",
    "string": "abc",
    "date": "ge2020-01-01",
    "reference": "Patient/p1",
    "uri": "http://example.org/x",
    "number": "5",
    "quantity": "5|http://unitsofmeasure.org|mg",
}


@pytest.fixture
def statement(http: httpx.Client) -> dict[str, Any]:
    response = http.get("/metadata")
    assert response.status_code == 200
    return dict(body(response))


def _resources(statement: dict[str, Any]) -> dict[str, dict[str, Any]]:
    (rest,) = statement["rest"]
    return {item["type"]: item for item in rest["resource"]}


def test_metadata_is_a_valid_capability_statement(
    statement: dict[str, Any], fhir_base: str
) -> None:
    validate_resource(statement)
    assert statement["resourceType"] == "CapabilityStatement"
    assert statement["fhirVersion"] == "4.0.1"
    assert statement["kind"] == "instance"
    assert statement["implementation"]["url"] == fhir_base
    assert not [kind for kind in statement["format"] if "xml" in kind]
    assert statement["patchFormat"] == ["application/json-patch+json"]
    (rest,) = statement["rest"]
    assert rest["mode"] == "server"
    assert {"Patient", "Observation", "Encounter", "Bundle"} <= set(_resources(statement))


def test_every_listed_type_is_served(http: httpx.Client, statement: dict[str, Any]) -> None:
    entries = [factories.entry("GET", f"{name}?_count=1") for name in _resources(statement)]
    result = body(http.post("", json=factories.batch(*entries)))
    statuses = {item["response"]["status"] for item in result["entry"]}
    assert statuses == {"200 OK"}
    assert http.get("/Spaceship").status_code == 404


def test_every_advertised_search_parameter_is_understood(statement: dict[str, Any]) -> None:
    """Every (type, parameter) of the statement compiles to a search condition under strict
    handling. Checked in process: the same 1,000+ searches over HTTP take seconds (the
    next test proves parameters end to end on sample resources)."""
    engine = SearchEngine()
    checked = 0
    for name, resource in _resources(statement).items():
        for param in resource["searchParam"]:
            value = _sample_value(name, param["name"], param["type"])
            where, used = engine.conditions(
                name, [(param["name"], value)], strict=True, visible=lambda alias: sql.SQL("TRUE")
            )
            assert len(where) == 1, (name, param["name"])
            assert used == [(param["name"], value)]
            checked += 1
    assert checked > 1000


def _sample_value(resource_type: str, code: str, kind: str) -> str:
    if kind != "composite":
        return SAMPLE_VALUE[kind]
    definition = params_for(resource_type)[code]
    by_url = {param.url: param for param in params_for(resource_type).values()}
    parts = [SAMPLE_VALUE[by_url[url].type] for url, _ in definition.components]
    # a component takes no comma-separated list: keep the sample values plain
    return "$".join(part.replace("ge", "") if part.startswith("ge") else part for part in parts)


def _search_value(kind: str, row: tuple[Any, ...]) -> list[str]:
    """Search values that must find the resource an index row came from."""
    if kind == "token":
        system, code = row[1], row[2]
        return [f"{system}|{code}" if system else str(code)]
    if kind == "string":
        return [row[2]]
    if kind == "date":
        low, high = row[1], row[2]
        assert isinstance(low, datetime)
        # Open period ends are stored as year 1 / 9999: bound only the known side.
        return [f"ge{low.isoformat()}"] if high.year == 9999 else [f"le{high.isoformat()}"]
    if kind == "reference":
        target_type, target_id, url = row[1], row[2], row[3]
        return [f"{target_type}/{target_id}" if target_id else str(url)]
    if kind == "uri":
        return [row[1]]
    if kind == "number":
        return [str(row[1])]
    assert kind == "quantity"
    return [f"{row[3]}|{row[1] or ''}|{row[2]}"]


def _rich_samples(http: httpx.Client) -> list[dict[str, Any]]:
    organization = create(http, factories.organization())
    practitioner = put(
        http, {"resourceType": "Practitioner", "id": "pr1", "name": [{"family": "Docteur"}]}
    ).json()
    patient = create(
        http,
        factories.patient(
            active=True,
            address=[
                {
                    "use": "home",
                    "line": ["1 rue des Essais"],
                    "city": "Testville",
                    "state": "Occitanie",
                    "postalCode": "31000",
                    "country": "FR",
                }
            ],
            telecom=[
                {"system": "phone", "value": "0100000000"},
                {"system": "email", "value": "camille@example.org"},
            ],
            deceasedDateTime="2024-01-02",
            communication=[{"language": {"coding": [{"system": "urn:ietf:bcp:47", "code": "fr"}]}}],
            generalPractitioner=[{"reference": f"Practitioner/{practitioner['id']}"}],
            managingOrganization={"reference": f"Organization/{organization['id']}"},
            link=[{"other": {"reference": "Patient/other-1"}, "type": "seealso"}],
            meta={
                "profile": ["http://example.org/StructureDefinition/test-patient"],
                "tag": [{"system": "http://example.org/tags", "code": "test"}],
                "security": [{"system": "http://example.org/sec", "code": "N"}],
                "source": "http://example.org/source",
            },
        ),
    )
    subject = f"Patient/{patient['id']}"
    encounter = create(http, factories.encounter(subject=subject))
    observation = create(
        http,
        factories.observation(
            subject=subject,
            identifier=[factories.identifier()],
            category=[{"coding": [{"system": "http://example.org/cat", "code": "vital-signs"}]}],
            encounter={"reference": f"Encounter/{encounter['id']}"},
            performer=[{"reference": f"Practitioner/{practitioner['id']}"}],
            method={"coding": [{"system": "http://example.org/m", "code": "auto"}]},
            component=[
                {
                    "code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]},
                    "valueQuantity": {
                        "value": 120,
                        "unit": "mm[Hg]",
                        "system": "http://unitsofmeasure.org",
                        "code": "mm[Hg]",
                    },
                }
            ],
        ),
    )
    return [patient, observation, encounter]


def test_advertised_parameters_find_a_sample_resource_by_its_own_values(
    http: httpx.Client, statement: dict[str, Any]
) -> None:
    samples = _rich_samples(http)
    resources = _resources(statement)
    checked: dict[str, int] = {}
    for sample in samples:
        name = sample["resourceType"]
        advertised = {param["name"]: param["type"] for param in resources[name]["searchParam"]}
        rows = extract_index(sample)
        by_kind: dict[str, list[tuple[Any, ...]]] = {
            "token": rows.token,
            "string": rows.string,
            "date": rows.date,
            "reference": rows.reference,
            "uri": rows.uri,
            "number": rows.number,
            "quantity": rows.quantity,
        }
        checked[name] = 0
        for code, kind in advertised.items():
            # composites are proven in tests/fhir/search/test_composite.py
            for row in by_kind.get(kind, []):
                if row[0] != code:
                    continue
                params = tuple((code, value) for value in _search_value(kind, row))
                response = http.get(
                    f"/{name}", params=params, headers={"Prefer": "handling=strict"}
                )
                found = [item["resource"]["id"] for item in body(response).get("entry", [])]
                assert sample["id"] in found, (name, params, response.text[:300])
                checked[name] += 1
        for code in ("_id", "_lastUpdated"):
            value = sample["id"] if code == "_id" else sample["meta"]["lastUpdated"]
            assert sample["id"] in [
                item["resource"]["id"]
                for item in body(http.get(f"/{name}", params={code: value}))["entry"]
            ]
    assert checked["Patient"] >= 20
    assert checked["Observation"] >= 15


def _interaction_checks(http: httpx.Client) -> dict[str, Callable[[], int]]:
    """One request per CapabilityStatement interaction code, returning its status."""
    created = create(http, factories.patient())
    url = f"/Patient/{created['id']}"
    patch = [{"op": "replace", "path": "/gender", "value": "other"}]
    return {
        "read": lambda: http.get(url).status_code,
        "vread": lambda: http.get(f"{url}/_history/1").status_code,
        "update": lambda: put(http, {**created, "gender": "male"}).status_code,
        "patch": lambda: (
            http.patch(
                url, json=patch, headers={"Content-Type": "application/json-patch+json"}
            ).status_code
        ),
        "history-instance": lambda: http.get(f"{url}/_history").status_code,
        "history-type": lambda: http.get("/Patient/_history").status_code,
        "create": lambda: http.post("/Patient", json=factories.patient()).status_code,
        "search-type": lambda: http.get("/Patient", params={"gender": "male"}).status_code,
        "delete": lambda: http.delete(url).status_code,
        "history-system": lambda: http.get("/_history").status_code,
        "search-system": lambda: http.get("", params={"_type": "Patient"}).status_code,
        "batch": lambda: http.post("", json=factories.batch()).status_code,
        "transaction": lambda: http.post("", json=factories.transaction()).status_code,
    }


def test_every_listed_interaction_is_implemented(
    http: httpx.Client, statement: dict[str, Any]
) -> None:
    checks = _interaction_checks(http)
    (rest,) = statement["rest"]
    listed = [item["code"] for item in rest["interaction"]]
    for resource in rest["resource"]:
        listed += [item["code"] for item in resource["interaction"]]
    unknown = set(listed) - set(checks)
    assert not unknown, f"listed but not checked here: {unknown}"
    order = [code for code in checks if code in listed]
    for code in order:
        status = checks[code]()
        assert 200 <= status < 300, (code, status)


def test_declared_behaviours_match_the_server(statement: dict[str, Any]) -> None:
    patient = _resources(statement)["Patient"]
    # Each flag below is proven by a test of its own (crud, conditional, history).
    assert patient["versioning"] == "versioned-update"
    assert patient["updateCreate"] is True
    assert patient["conditionalCreate"] is True
    assert patient["conditionalUpdate"] is True
    assert patient["conditionalDelete"] == "single"
    assert patient["readHistory"] is True
    assert patient.get("conditionalRead", "not-supported") == "not-supported"
    # proven in tests/fhir/search/test_includes.py
    assert "Patient:organization" in patient["searchInclude"]
    assert "Observation:subject" in patient["searchRevInclude"]
