"""A FHIR request fuzzer against the running hub: random interactions, types, ids, search
parameters, bodies and headers (fixed seeds). Whatever comes in, the hub answers with a
status below 500 and never a stack trace."""

from __future__ import annotations

import json
import random
import urllib.parse
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests import factories
from tests.conftest import RunningHub, _wait_for_definitions

TYPES = ["Patient", "Observation", "Encounter", "Condition", "Bundle", "Nope", "patient", ""]
PARAMS = [
    "name",
    "family",
    "birthdate",
    "identifier",
    "_id",
    "_lastUpdated",
    "code",
    "subject",
    "subject.name",
    "_has:Observation:subject:code",
    "_include",
    "_revinclude",
    "_sort",
    "_count",
    "_summary",
    "_elements",
    "_total",
    "value-quantity",
    "date",
    "_list",
    "code:in",
    "code:not-in",
    "name:exact",
    "name:contains",
    "identifier:of-type",
    "_type",
    "_tag",
    "_profile",
    "_security",
    "status:not",
    "gender:missing",
    "bogus",
    "_format",
]
NASTY = [
    "",
    " ",
    "'",
    '"',
    "%",
    "%00",
    "\\",
    "' OR 1=1 --",
    "ge2024",
    "lt",
    "ap1900-13-45",
    "9" * 40,
    "-1",
    "0",
    "1e999",
    "NaN",
    "Patient/",
    "Patient/../../etc",
    "http://x|y|z",
    "é" * 300,
    "\u0000",
    "|",
    "||",
    "a:b:c",
    "gt2024-02-30T25:61:61Z",
    "eq",
    "sa-5",
    "Observation:subject:Patient",
    "*",
    "1,2,,3",
    "Ω≈ç√",
    "<script>",
    "${jndi:x}",
]
HEADERS = [
    {},
    {"Accept": "application/xml"},
    {"Accept": "*/*"},
    {"Prefer": "handling=strict"},
    {"Prefer": "return=minimal"},
    {"Content-Type": "text/plain"},
    {"If-Match": 'W/"x"'},
    {"If-None-Exist": "identifier=|"},
    {"If-None-Match": "*"},
    {"Accept": "application/fhir+json;q=x"},
]


def _body(rng: random.Random) -> Any:
    base: dict[str, Any] = rng.choice(
        [
            factories.patient(),
            factories.observation(subject="Patient/x"),
            {"resourceType": "Bundle", "type": "transaction", "entry": [{"request": {}}]},
            {"resourceType": "Nope"},
            {},
        ]
    )
    mutated = json.loads(json.dumps(base))
    for _ in range(rng.randint(0, 3)):
        key = rng.choice([*mutated.keys(), "id", "meta", "extension", "text"])
        mutated[key] = rng.choice([None, 1, -1.5, True, "", "x" * 2000, [], {}, [{}], NASTY])
    return rng.choice([mutated, [mutated], "not json", 42, None])


# already percent-encoded, some of it wrongly
RAW = ["%ZZ", "%FF%FE", "%", "%2F%2E%2E"]  # (httpx refuses %00 in a URL)


def _value(rng: random.Random) -> str:
    if rng.random() < 0.2:
        return rng.choice(RAW)
    return urllib.parse.quote(rng.choice(NASTY).replace("\u0000", ""), safe="")


def _request(rng: random.Random) -> tuple[str, str, dict[str, str], Any]:
    kind = rng.choice(TYPES)
    ident = rng.choice(["1", "x" * 70, "..%2Fx", "%2F", "a%20b", "%CE%A9", "-", ""])
    path = rng.choice(
        [
            f"/{kind}",
            f"/{kind}/{ident}",
            f"/{kind}/{ident}/_history",
            f"/{kind}/{ident}/_history/{rng.choice(['1', 'x', '-1', '999999999999'])}",
            f"/{kind}/_search",
            f"/Patient/{ident}/{kind}",
            f"/Patient/{ident}/$everything",
            f"/{kind}/${rng.choice(['match', 'ihe-pix', 'export', 'reindex', 'nope'])}",
            "/",
            "/_history",
            f"/metadata?mode={_value(rng)}",
        ]
    )
    query = "&".join(f"{rng.choice(PARAMS)}={_value(rng)}" for _ in range(rng.randint(0, 4)))
    if query:
        path += ("&" if "?" in path else "?") + query
    method = rng.choice(["GET", "GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"])
    return method, path, rng.choice(HEADERS), _body(rng)


@pytest.fixture
def client(hub: RunningHub, clean_database: str) -> Iterator[httpx.Client]:
    _wait_for_definitions(clean_database)
    with httpx.Client(base_url=f"{hub.base_url}/fhir", timeout=30) as http:
        yield http


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_requests_never_get_a_5xx_or_a_stack_trace(client: httpx.Client, seed: int) -> None:
    rng = random.Random(seed)
    client.post("/Patient", json=factories.patient())  # something to find
    for number in range(200):
        method, path, headers, body = _request(rng)
        content = body if isinstance(body, str) else json.dumps(body)
        response = client.request(
            method,
            path,
            headers={"Content-Type": "application/fhir+json", **headers},
            content=content.encode() if method in ("POST", "PUT", "PATCH") else None,
        )
        where = f"request {number}: {method} {path[:200]}"
        assert response.status_code < 500, (
            f"{where} -> {response.status_code} {response.text[:500]}"
        )
        assert "Traceback" not in response.text, where
        assert 'File "' not in response.text, where


def test_random_requests_under_the_access_rules_never_get_a_5xx(
    care_hub: RunningHub, clean_database: str
) -> None:
    """The same fuzzer as random users of every role, some in nobody's care."""
    _wait_for_definitions(clean_database)
    rng = random.Random(7)
    roles = ["physician", "nurse", "secretary", "dim", "identitovigilance", "service", "", "x"]
    with httpx.Client(base_url=f"{care_hub.base_url}/fhir", timeout=30) as http:
        for number in range(200):
            method, path, headers, body = _request(rng)
            caller = {
                "X-Maillage-User": rng.choice(["Practitioner/a", "anonymous", "x"]),
                "X-Maillage-Site": rng.choice(["CHM", "", "NOPE"]),
                "X-Maillage-Roles": rng.choice(roles),
            }
            content = body if isinstance(body, str) else json.dumps(body)
            response = http.request(
                method,
                path,
                headers={"Content-Type": "application/fhir+json", **caller, **headers},
                content=content.encode() if method in ("POST", "PUT", "PATCH") else None,
            )
            where = f"request {number}: {method} {path[:200]} as {caller}"
            assert response.status_code < 500, f"{where} -> {response.text[:500]}"
            assert "Traceback" not in response.text, where
