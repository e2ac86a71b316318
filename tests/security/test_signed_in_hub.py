"""The hub with sign-in on: tokens from its own issuer, then the access rules by role and
care relationship, end to end over HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import jwt
import pytest

from maillage.security.accounts import AccountService
from tests import factories
from tests.conftest import RunningHub, _wait_for_definitions
from tests.factories import source_identity
from tests.security.conftest import with_accounts

PASSWORD = "a long synthetic passphrase 42"


@pytest.fixture
def hub_url(signed_in_hub: RunningHub, clean_database: str, accounts_database: str) -> str:
    _wait_for_definitions(clean_database)
    return signed_in_hub.base_url


@pytest.fixture
def feed_secret(hub_url: str, database_url: str) -> str:
    async def register(accounts: AccountService) -> str:
        await accounts.add_user(
            "dr-lucie",
            PASSWORD,
            role="physician",
            sites=["CHM"],
            practitioner="Practitioner/dr-lucie",
        )
        return await accounts.add_client("lab-feed", scopes=["system/*.cruds"])

    return with_accounts(database_url, register)


def _token(hub_url: str, form: dict[str, str]) -> str:
    answer = httpx.post(f"{hub_url}/auth/token", data=form, timeout=30)
    assert answer.status_code == 200, answer.text
    return str(answer.json()["access_token"])


@pytest.fixture
def clients(hub_url: str, feed_secret: str) -> Iterator[dict[str, httpx.Client]]:
    feed = _token(
        hub_url,
        {"grant_type": "client_credentials", "client_id": "lab-feed", "client_secret": feed_secret},
    )
    doctor = _token(
        hub_url, {"grant_type": "password", "username": "dr-lucie", "password": PASSWORD}
    )
    made = {
        name: httpx.Client(
            base_url=f"{hub_url}/fhir", timeout=30, headers={"Authorization": f"Bearer {token}"}
        )
        for name, token in (("feed", feed), ("doctor", doctor))
    }
    made["anonymous"] = httpx.Client(base_url=f"{hub_url}/fhir", timeout=30)
    yield made
    for client in made.values():
        client.close()


def _write(client: httpx.Client, resource: dict[str, Any]) -> dict[str, Any]:
    answer = client.post(f"/{resource['resourceType']}", json=resource)
    assert answer.status_code == 201, answer.text
    return dict(answer.json())


def test_without_a_token_the_hub_answers_401_with_a_challenge(
    hub_url: str, clients: dict[str, httpx.Client]
) -> None:
    refused = clients["anonymous"].get("/Patient")
    assert refused.status_code == 401
    assert refused.headers["WWW-Authenticate"].startswith("Bearer")
    assert httpx.get(f"{hub_url}/health", timeout=10).status_code == 200
    assert httpx.get(f"{hub_url}/.well-known/smart-configuration", timeout=10).status_code == 200
    # alg "none" takes no key: PyJWT reads "" as None (its annotation does not allow None)
    forged = jwt.encode({"sub": "x", "iss": "x", "aud": "x"}, key="", algorithm="none")
    with_forged = clients["anonymous"].get(
        "/Patient", headers={"Authorization": f"Bearer {forged}"}
    )
    assert with_forged.status_code == 401


def test_a_signed_in_physician_reads_the_records_of_her_sites_patients_only(
    clients: dict[str, httpx.Client],
) -> None:
    feed, doctor = clients["feed"], clients["doctor"]
    in_care = _write(feed, source_identity(site=0, birth_name="Signé", birth_date="1981-01-01"))
    elsewhere = _write(feed, source_identity(site=2, birth_name="Autre", birth_date="1982-02-02"))
    _write(
        feed,
        factories.encounter(
            subject=f"Patient/{in_care['id']}",
            status="in-progress",
            serviceProvider={"reference": "Organization/chm"},
        ),
    )
    mine = _write(feed, factories.observation(subject=f"Patient/{in_care['id']}"))
    other = _write(feed, factories.observation(subject=f"Patient/{elsewhere['id']}"))
    assert doctor.get(f"/Observation/{mine['id']}").status_code == 200
    assert doctor.get(f"/Observation/{other['id']}").status_code == 404
    assert doctor.get("/Observation").json()["total"] == 1
    # reads by id take a shorter road: it is signed in too
    assert clients["anonymous"].get(f"/Observation/{mine['id']}").status_code == 401
    # the token says who she is: no header can make her someone else
    spoofed = doctor.get(
        f"/Observation/{other['id']}",
        headers={"X-Maillage-User": "Practitioner/chief", "X-Maillage-Roles": "dim"},
    )
    assert spoofed.status_code == 404


def test_a_token_with_narrower_scopes_does_only_what_they_allow(
    hub_url: str, feed_secret: str
) -> None:
    narrow = _token(
        hub_url,
        {
            "grant_type": "password",
            "username": "dr-lucie",
            "password": PASSWORD,
            "scope": "user/Patient.rs",
        },
    )
    with httpx.Client(
        base_url=f"{hub_url}/fhir", timeout=30, headers={"Authorization": f"Bearer {narrow}"}
    ) as client:
        assert client.get("/Patient").status_code == 200
        refused = client.get("/Observation")
        assert refused.status_code == 403
        assert "scopes" in refused.text


OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"


def _categorised(subject: str, category: str) -> dict[str, Any]:
    return factories.observation(
        subject=subject,
        category=[{"coding": [{"system": OBSERVATION_CATEGORY, "code": category}]}],
    )


def test_a_restricted_scope_opens_only_the_rows_its_search_finds(
    hub_url: str, clients: dict[str, httpx.Client]
) -> None:
    feed = clients["feed"]
    patient = _write(feed, source_identity(site=0, birth_name="Scopée", birth_date="1983-03-03"))
    subject = f"Patient/{patient['id']}"
    _write(
        feed,
        factories.encounter(
            subject=subject, status="in-progress", serviceProvider={"reference": "Organization/chm"}
        ),
    )
    lab = _write(feed, _categorised(subject, "laboratory"))
    vital = _write(feed, _categorised(subject, "vital-signs"))
    restricted = _token(
        hub_url,
        {
            "grant_type": "password",
            "username": "dr-lucie",
            "password": PASSWORD,
            "scope": f"user/Patient.rs user/Observation.rs?category={OBSERVATION_CATEGORY}"
            "|laboratory",
        },
    )
    with httpx.Client(
        base_url=f"{hub_url}/fhir", timeout=30, headers={"Authorization": f"Bearer {restricted}"}
    ) as client:
        found = client.get("/Observation", params={"subject": subject, "_total": "accurate"})
        assert found.status_code == 200, found.text
        assert [e["resource"]["id"] for e in found.json()["entry"]] == [lab["id"]]
        assert found.json()["total"] == 1
        assert client.get(f"/Observation/{lab['id']}").status_code == 200
        # outside the restriction: absent, as an unknown id
        assert client.get(f"/Observation/{vital['id']}").status_code == 404
        included = client.get(
            "/Patient", params={"_id": patient["id"], "_revinclude": "Observation:subject"}
        )
        assert {e["resource"]["id"] for e in included.json()["entry"]} == {patient["id"], lab["id"]}
        everything = client.get(f"/Patient/{patient['id']}/$everything")
        ids = {e["resource"]["id"] for e in everything.json()["entry"]}
        assert lab["id"] in ids and vital["id"] not in ids
        # a restricted scope opens reads and searches, not writes
        written = client.post("/Observation", json=_categorised(subject, "laboratory"))
        assert written.status_code == 403
    # the same user with her whole rights sees both
    assert clients["doctor"].get(f"/Observation/{vital['id']}").status_code == 200
