"""The hub as it ships answers INSi searches from the simulator over the demo register."""

from __future__ import annotations

import httpx

from maillage.demo.resources import demo_resources
from maillage.national.demo_register import demo_register


def test_the_hub_finds_a_demo_patients_ins(http: httpx.Client) -> None:
    register = demo_register(r for r in demo_resources() if r["resourceType"] == "Patient")
    # one the register holds once under its four search traits
    keys = [(i.birth_name, i.first_names[0], i.sex, i.birth_date) for i in register]
    identity = next(i for i, key in zip(register, keys, strict=True) if keys.count(key) == 1)
    gender = {"F": "female", "M": "male"}[identity.sex]
    body = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "birthName", "valueString": identity.birth_name.lower()},
            {"name": "firstName", "valueString": identity.first_names[0].title()},
            {"name": "gender", "valueCode": gender},
            {"name": "birthDate", "valueDate": identity.birth_date.isoformat()},
        ],
    }
    response = http.post(
        "/Patient/$insi-search", json=body, headers={"Content-Type": "application/fhir+json"}
    )
    assert response.status_code == 200, response.text
    answer = {p["name"]: p for p in response.json()["parameter"]}
    assert answer["status"]["valueCode"] == "found"
    assert answer["ins"]["valueIdentifier"]["value"] == identity.matricule
