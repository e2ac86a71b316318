"""The authorization code flow with PKCE: an app registered with `maillage admin app
add` signs its user in on the hub's page and exchanges the code, over real HTTP."""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from typer.testing import CliRunner

from maillage.cli.main import app
from maillage.errors import InvalidGrant
from maillage.security.accounts import AccountService, SignedIn
from maillage.security.authorization import (
    CODE_LIFETIME_S,
    AuthorizationCodes,
    challenge_of,
)
from maillage.storage import Database
from tests.conftest import RunningHub, _wait_for_definitions
from tests.security.conftest import with_accounts

PASSWORD = "a long synthetic passphrase 42"
CALLBACK = "http://127.0.0.1:9/callback"  # never contacted: redirects are not followed


@pytest.fixture
def hub_url(
    signed_in_hub: RunningHub, clean_database: str, accounts_database: str, tmp_path: Path
) -> str:
    _wait_for_definitions(clean_database)

    async def register(accounts: AccountService) -> None:
        await accounts.add_user(
            "dr-lucie",
            PASSWORD,
            role="physician",
            sites=["CHM"],
            practitioner="Practitioner/dr-lucie",
        )

    with_accounts(accounts_database, register)
    added = CliRunner().invoke(
        app,
        ["admin", "app", "add", "dossier-web", "--name", "Dossier Web", "--redirect-uri", CALLBACK],
        env={"MAILLAGE_DATABASE_URL": accounts_database, "MAILLAGE_DATA_DIR": str(tmp_path)},
    )
    assert added.exit_code == 0, added.output
    return signed_in_hub.base_url


def _request(verifier: str, **changes: str) -> dict[str, str]:
    params = {
        "response_type": "code",
        "client_id": "dossier-web",
        "redirect_uri": CALLBACK,
        "code_challenge": challenge_of(verifier),
        "code_challenge_method": "S256",
        "scope": "openid user/Patient.rs",
        "state": "s-123",
    }
    params.update(changes)
    return {name: value for name, value in params.items() if value != ""}


def _sign_in(hub_url: str, params: dict[str, str], **form: str) -> httpx.Response:
    fields = {**params, "username": "dr-lucie", "password": PASSWORD, "action": "sign-in"}
    fields.update(form)
    return httpx.post(f"{hub_url}/auth/authorize", data=fields, timeout=30)


def _redirected(response: httpx.Response) -> dict[str, str]:
    assert response.status_code == 302, response.text
    location = response.headers["location"]
    assert location.startswith(CALLBACK + "?")
    return {name: values[0] for name, values in parse_qs(urlsplit(location).query).items()}


def _exchange(hub_url: str, code: str, verifier: str, **changes: str) -> httpx.Response:
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "client_id": "dossier-web",
        "redirect_uri": CALLBACK,
        "code_verifier": verifier,
        **changes,
    }
    return httpx.post(f"{hub_url}/auth/token", data=form, timeout=30)


def test_an_app_signs_its_user_in_and_gets_a_token_for_the_scope_asked(hub_url: str) -> None:
    verifier = secrets.token_urlsafe(48)
    params = _request(verifier)
    page = httpx.get(f"{hub_url}/auth/authorize", params=params, timeout=30)
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert page.headers["x-frame-options"] == "DENY"
    assert "Dossier Web" in page.text and 'name="code_challenge"' in page.text

    back = _redirected(_sign_in(hub_url, params))
    assert back["state"] == "s-123"

    exchanged = _exchange(hub_url, back["code"], verifier)
    assert exchanged.status_code == 200, exchanged.text
    token = exchanged.json()
    assert set(token["scope"].split()) == {"openid", "user/Patient.rs"}
    bearer = {"Authorization": f"Bearer {token['access_token']}"}
    assert httpx.get(f"{hub_url}/fhir/Patient", headers=bearer, timeout=30).status_code == 200
    # the app asked for Patients only
    assert httpx.get(f"{hub_url}/fhir/Observation", headers=bearer, timeout=30).status_code == 403
    # a code is used once
    again = _exchange(hub_url, back["code"], verifier)
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"


def test_a_code_is_bound_to_its_verifier_client_and_redirect_uri(hub_url: str) -> None:
    verifier = secrets.token_urlsafe(48)
    for changes in (
        {"code_verifier": secrets.token_urlsafe(48)},
        {"redirect_uri": "http://127.0.0.1:9/other"},
        {"client_id": "another-app"},
    ):
        code = _redirected(_sign_in(hub_url, _request(verifier)))["code"]
        refused = _exchange(hub_url, code, verifier, **changes)
        assert refused.status_code == 400 and refused.json()["error"] == "invalid_grant", changes
        # and the attempt used it up
        assert _exchange(hub_url, code, verifier).json()["error"] == "invalid_grant"


def test_an_unregistered_client_or_redirect_uri_is_answered_here_never_redirected(
    hub_url: str,
) -> None:
    verifier = secrets.token_urlsafe(48)
    for changes in (
        {"redirect_uri": "https://attacker.example/steal"},
        {"client_id": "unknown-app"},
    ):
        page = httpx.get(f"{hub_url}/auth/authorize", params=_request(verifier, **changes))
        assert page.status_code == 400 and "location" not in page.headers
        posted = _sign_in(hub_url, _request(verifier, **changes))
        assert posted.status_code == 400 and "location" not in posted.headers


def test_other_errors_go_back_to_the_app(hub_url: str) -> None:
    verifier = secrets.token_urlsafe(48)
    no_pkce = httpx.get(
        f"{hub_url}/auth/authorize",
        params=_request(verifier, code_challenge="", code_challenge_method=""),
    )
    assert _redirected(no_pkce)["error"] == "invalid_request"
    plain = httpx.get(
        f"{hub_url}/auth/authorize", params=_request(verifier, code_challenge_method="plain")
    )
    assert _redirected(plain)["error"] == "invalid_request"
    bad_scope = httpx.get(
        f"{hub_url}/auth/authorize", params=_request(verifier, scope="user/Patient.sr")
    )
    assert _redirected(bad_scope)["error"] == "invalid_scope"
    cancelled = _sign_in(hub_url, _request(verifier), action="cancel")
    assert _redirected(cancelled) == {"error": "access_denied", "state": "s-123"}


def test_a_wrong_password_shows_the_page_again_and_issues_no_code(hub_url: str) -> None:
    verifier = secrets.token_urlsafe(48)
    refused = _sign_in(hub_url, _request(verifier), password="not the passphrase")
    assert refused.status_code == 401
    assert "location" not in refused.headers and "wrong" in refused.text


def test_the_smart_configuration_offers_the_code_flow(hub_url: str) -> None:
    configuration = httpx.get(f"{hub_url}/.well-known/smart-configuration").json()
    assert configuration["authorization_endpoint"].endswith("/auth/authorize")
    assert "authorization_code" in configuration["grant_types_supported"]
    assert configuration["code_challenge_methods_supported"] == ["S256"]
    assert "launch-standalone" in configuration["capabilities"]


def test_an_expired_code_is_refused(accounts_database: str) -> None:
    now = [1_800_000_000.0]

    async def flow() -> None:
        database = Database(accounts_database, min_size=1, max_size=2)
        await database.open()
        try:
            codes = AuthorizationCodes(database, clock=lambda: now[0])
            await codes.add_app("expiring-app", "Expiring", [CALLBACK])
            verifier = secrets.token_urlsafe(48)
            request = await codes.check(
                {**_request(verifier), "client_id": "expiring-app", "scope": ""}
            )
            who = SignedIn(subject="dr-x", role="physician", sites=("CHM",))
            code = await codes.grant(request, who)
            now[0] += CODE_LIFETIME_S + 1
            with pytest.raises(InvalidGrant, match="expired"):
                await codes.redeem(
                    code, client_id="expiring-app", redirect_uri=CALLBACK, verifier=verifier
                )
            fresh = await codes.grant(request, who)
            signed_in, scope = await codes.redeem(
                fresh, client_id="expiring-app", redirect_uri=CALLBACK, verifier=verifier
            )
            assert signed_in == who and scope is None
        finally:
            await database.close()

    asyncio.run(flow())


def test_registering_an_app_says_what_a_redirect_uri_must_be(
    accounts_database: str, tmp_path: Path
) -> None:
    result: Any = CliRunner().invoke(
        app,
        ["admin", "app", "add", "web", "--name", "Web", "--redirect-uri", "http://app.example/cb"],
        env={"MAILLAGE_DATABASE_URL": accounts_database, "MAILLAGE_DATA_DIR": str(tmp_path)},
    )
    assert result.exit_code == 1
    assert "https://" in result.stderr and "127.0.0.1" in result.stderr
