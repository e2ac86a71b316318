"""The sign-in endpoints and the middleware, through a real uvicorn server on a free port."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pyotp
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from maillage.security.accounts import AccountService
from maillage.security.accounts_store import AccountStore
from maillage.security.http import (
    OPEN_PATHS,
    AuthenticationMiddleware,
    authenticated_context,
    build_authentication,
)
from maillage.settings import Settings
from maillage.storage import Database
from tests.conftest import free_port
from tests.security.conftest import SigningKeys, cheap_hasher, totp_of, with_accounts

PASSWORD = "correct horse battery"
IDP_PATH = "/idp/jwks.json"


@dataclass
class Served:
    base: str
    idp: SigningKeys
    issuer_url: str
    totp: pyotp.TOTP
    client_secret: str


async def _whoami(request: Request) -> Response:
    context = authenticated_context(request.state)
    assert context is not None
    return JSONResponse(
        {
            "who": context.who,
            "site": context.site,
            "sites": sorted(context.sites),
            "roles": sorted(context.roles),
            "scopes": sorted(context.scopes),
            "issuer": context.issuer,
        }
    )


async def _text(request: Request) -> Response:
    return PlainTextResponse("ok")


def _app(settings: Settings, conninfo: str, idp: SigningKeys) -> Starlette:
    database = Database(conninfo, min_size=1, max_size=2)
    accounts = AccountService(
        AccountStore(database),
        lockout_threshold=settings.auth_lockout_threshold,
        lockout_duration=timedelta(seconds=settings.auth_lockout_duration_s),
        hasher=cheap_hasher(),
    )
    auth = build_authentication(settings, database, accounts=accounts)

    async def idp_jwks(request: Request) -> Response:
        return JSONResponse(idp.jwks())

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await database.open()
        try:
            yield
        finally:
            await database.close()

    app = Starlette(
        routes=[
            Route("/health", _text),
            Route("/metrics", _text),
            Route(IDP_PATH, idp_jwks),
            Route("/fhir/whoami", _whoami),
            *(
                Route(path, app, methods=list(methods))
                for path, methods, app in auth.endpoints.routes()
            ),
        ],
        lifespan=lifespan,
    )
    app.add_middleware(
        AuthenticationMiddleware,
        validator=auth.validator,
        protect_metrics=settings.auth_protect_metrics,
        open_paths=OPEN_PATHS | {IDP_PATH},
    )
    return app


@contextmanager
def _serving(database_url: str, folder: Path, **overrides: Any) -> Iterator[Served]:
    """A uvicorn server on a free port with the sign-in endpoints and the middleware;
    ``overrides``: settings. The accounts of the module are added by ``served``."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    idp = SigningKeys()
    idp_issuer = f"{base}/idp"
    issuers = folder / f"issuers-{port}.json"
    issuers.write_text(
        json.dumps([{"name": "ght", "issuer": idp_issuer, "jwks_uri": base + IDP_PATH}])
    )
    settings = Settings(
        database_url=database_url,
        data_dir=folder,
        base_url=f"{base}/fhir",
        auth_enabled=True,
        auth_issuers_file=issuers,
        **{"auth_lockout_threshold": 3, **overrides},
    )
    config = uvicorn.Config(
        _app(settings, database_url, idp), host="127.0.0.1", port=port, log_level="warning"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            time.sleep(0.05)
    else:
        raise RuntimeError("the auth test server did not start")
    try:
        yield Served(base, idp, idp_issuer, pyotp.TOTP(pyotp.random_base32()), "")
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture(scope="module")
def served(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("TRUNCATE auth_user, auth_client, auth_code, auth_app")

    async def accounts_setup(accounts: AccountService) -> tuple[str, str]:
        for login in ("jdupont", "mtotp", "locked"):
            await accounts.add_user(
                login, PASSWORD, role="physician", sites=["CHM"], practitioner="Practitioner/pr-1"
            )
        uri = await accounts.enroll_totp("mtotp")
        secret = await accounts.add_client(
            "lab-interface", scopes=["system/Observation.cruds", "system/Patient.rs"]
        )
        return uri, secret

    uri, secret = with_accounts(database_url, accounts_setup)
    with _serving(database_url, tmp_path_factory.mktemp("auth")) as running:
        yield Served(running.base, running.idp, running.issuer_url, totp_of(uri), secret)


@pytest.fixture
def http(served: Served) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=served.base, timeout=10) as client:
        yield client


def _password_token(http: httpx.Client, login: str = "jdupont", **extra: str) -> httpx.Response:
    data = {"grant_type": "password", "username": login, "password": PASSWORD, **extra}
    return http.post("/auth/token", data=data)


def test_open_paths_need_no_token(http: httpx.Client) -> None:
    assert http.get("/health").status_code == 200
    assert http.get("/metrics").status_code == 200  # not protected unless configured
    assert http.get("/auth/jwks.json").status_code == 200


def test_no_token_is_a_401_with_a_bearer_challenge(http: httpx.Client) -> None:
    response = http.get("/fhir/whoami")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Bearer realm="maillage"'
    assert response.headers["content-type"] == "application/fhir+json"
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["code"] == "login"


@pytest.mark.parametrize(
    ("authorization", "status", "challenge"),
    [
        ("Bearer not.a.jwt", 401, 'error="invalid_token"'),
        ("Basic amR1cG9udDpzZWNyZXQ=", 401, 'Bearer realm="maillage"'),
        ("Bearer two words", 400, 'error="invalid_request"'),
    ],
)
def test_bad_credentials(
    http: httpx.Client, authorization: str, status: int, challenge: str
) -> None:
    response = http.get("/fhir/whoami", headers={"Authorization": authorization})
    assert response.status_code == status
    assert challenge in response.headers["www-authenticate"]


def test_password_grant_then_a_protected_request(http: httpx.Client, served: Served) -> None:
    response = _password_token(http)
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == 600
    me = http.get("/fhir/whoami", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert me.status_code == 200
    assert me.json() == {
        "who": "Practitioner/pr-1",
        "site": "CHM",
        "sites": ["CHM"],
        "roles": ["physician"],
        "scopes": ["fhirUser", "openid", "user/*.cruds"],
        "issuer": f"{served.base}/auth",
    }


def test_wrong_password_and_lockout(http: httpx.Client) -> None:
    for _ in range(3):
        wrong = _password_token(http, "locked", password="not the password")
        assert wrong.status_code == 400 and wrong.json()["error"] == "invalid_grant"
    assert "locked until" in wrong.json()["error_description"]
    refused = _password_token(http, "locked")
    assert refused.status_code == 400 and "locked until" in refused.json()["error_description"]


def test_totp_is_required_once_enrolled(http: httpx.Client, served: Served) -> None:
    missing = _password_token(http, "mtotp")
    assert missing.status_code == 400
    assert "TOTP" in missing.json()["error_description"]
    assert _password_token(http, "mtotp", totp=served.totp.now()).status_code == 200


def test_client_credentials_basic_and_post(http: httpx.Client, served: Served) -> None:
    basic = http.post(
        "/auth/token",
        data={"grant_type": "client_credentials", "scope": "system/Observation.rs"},
        auth=("lab-interface", served.client_secret),
    )
    assert basic.status_code == 200, basic.text
    assert basic.json()["scope"] == "system/Observation.rs"
    posted = http.post(
        "/auth/token",
        data={
            "grant_type": "client_credentials",
            "client_id": "lab-interface",
            "client_secret": served.client_secret,
        },
    )
    assert posted.status_code == 200
    token = posted.json()["access_token"]
    me = http.get("/fhir/whoami", headers={"Authorization": f"Bearer {token}"}).json()
    assert me["who"] == "lab-interface" and me["roles"] == ["service"]
    assert me["scopes"] == ["system/Observation.cruds", "system/Patient.rs"]


def test_client_errors(http: httpx.Client, served: Served) -> None:
    wrong = http.post(
        "/auth/token",
        data={"grant_type": "client_credentials"},
        auth=("lab-interface", "not-the-secret"),
    )
    assert wrong.status_code == 401 and wrong.json()["error"] == "invalid_client"
    assert wrong.headers["www-authenticate"] == 'Basic realm="maillage"'
    too_much = http.post(
        "/auth/token",
        data={"grant_type": "client_credentials", "scope": "system/*.cruds"},
        auth=("lab-interface", served.client_secret),
    )
    assert too_much.status_code == 400 and too_much.json()["error"] == "invalid_scope"


def test_token_request_errors(http: httpx.Client) -> None:
    unsupported = http.post("/auth/token", data={"grant_type": "refresh_token"})
    assert unsupported.json()["error"] == "unsupported_grant_type"
    no_code = http.post("/auth/token", data={"grant_type": "authorization_code"})
    assert no_code.status_code == 400 and no_code.json()["error"] == "invalid_request"
    as_json = http.post("/auth/token", json={"grant_type": "password"})
    assert as_json.status_code == 400 and as_json.json()["error"] == "invalid_request"
    assert http.get("/auth/token").status_code == 405


def test_jwks_and_smart_configuration(http: httpx.Client, served: Served) -> None:
    keys = http.get("/auth/jwks.json").json()["keys"]
    assert len(keys) == 1 and keys[0]["kty"] == "EC" and "d" not in keys[0]
    smart = http.get("/.well-known/smart-configuration").json()
    assert smart["token_endpoint"] == f"{served.base}/auth/token"
    assert smart["jwks_uri"] == f"{served.base}/auth/jwks.json"
    assert smart["issuer"] == f"{served.base}/auth"
    assert "client-confidential-symmetric" in smart["capabilities"]
    assert "permission-v2" in smart["capabilities"]
    assert {"password", "client_credentials"} <= set(smart["grant_types_supported"])


def test_a_token_of_the_configured_idp_is_accepted(http: httpx.Client, served: Served) -> None:
    token = served.idp.token(iss=served.issuer_url, aud=f"{served.base}/fhir")
    me = http.get("/fhir/whoami", headers={"Authorization": f"Bearer {token}"})
    assert me.status_code == 200, me.text
    assert me.json()["issuer"] == served.issuer_url
    assert me.json()["roles"] == ["physician"]
    expired = served.idp.token(iss=served.issuer_url, aud=f"{served.base}/fhir", exp=1)
    refused = http.get("/fhir/whoami", headers={"Authorization": f"Bearer {expired}"})
    assert refused.status_code == 401
    assert "expired" in refused.headers["www-authenticate"]


def test_metrics_protected_when_configured(tmp_path: Path) -> None:
    async def inner(scope: Any, receive: Any, send: Any) -> None:
        await PlainTextResponse("metrics")(scope, receive, send)

    from maillage.security.tokens import TokenValidator

    middleware = AuthenticationMiddleware(
        inner, TokenValidator([], audience="x"), protect_metrics=True
    )
    sent: list[dict[str, Any]] = []

    async def call() -> None:
        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b""}

        async def send(message: Any) -> None:
            sent.append(message)

        scope = {"type": "http", "method": "GET", "path": "/metrics", "headers": []}
        await middleware(scope, receive, send)

    asyncio.run(call())
    assert sent[0]["status"] == 401


def test_an_address_with_too_many_failed_sign_ins_is_refused_for_a_while(
    database_url: str, tmp_path: Path
) -> None:
    """Failures spread over logins the lockout does not see: after the limit, the
    address gets 429 with Retry-After, without any credential being checked (even a
    right one); requests that fail before any check do not count."""
    with (
        _serving(database_url, tmp_path, auth_address_failure_limit=3) as running,
        httpx.Client(base_url=running.base, timeout=10) as client,
    ):
        malformed = client.post("/auth/token", data={"grant_type": "password"})
        assert malformed.status_code == 400
        for login in ("guess-1", "guess-2", "guess-3"):
            refused = _password_token(client, login)
            assert refused.status_code == 400
            assert refused.json()["error"] == "invalid_grant"
        slowed = _password_token(client, "jdupont")
        assert slowed.status_code == 429
        assert slowed.json()["error"] == "invalid_request"
        assert "too many failed sign-ins" in slowed.json()["error_description"]
        assert 1 <= int(slowed.headers["retry-after"]) <= 300
        assert client.get("/health").status_code == 200  # only sign-in is refused
