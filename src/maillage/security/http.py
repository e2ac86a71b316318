"""Sign-in over HTTP: the token endpoint, the keys, SMART discovery, and the middleware
that turns a Bearer token into the request's ``RequestContext``.

Plain ASGI (the security layer does not import the web framework): ``AuthEndpoints.routes``
gives ``(path, methods, asgi_app)`` for the app to mount, and ``AuthenticationMiddleware``
wraps the app. The context is stored in ``scope["state"]["maillage_context"]`` (read it with
``authenticated_context(request.state)``); a request without a valid token is answered 401
with ``WWW-Authenticate: Bearer ...`` (RFC 6750) and an OperationOutcome.
"""

from __future__ import annotations

import base64
import binascii
import logging
import re
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, NamedTuple
from urllib.parse import parse_qsl, unquote_plus

from maillage.errors import InvalidGrant, InvalidRequest, InvalidScope, Unauthenticated
from maillage.security.accounts import AccountService
from maillage.security.accounts_store import AccountStore
from maillage.security.asgi import (
    FORM,
    Answer,
    ASGIApp,
    Endpoint,
    Receive,
    Request,
    Scope,
    Send,
    header_values,
    oauth_error,
    send_json,
)
from maillage.security.authorization import AuthorizationCodes
from maillage.security.authorize_http import AUTHORIZE_PATH, AuthorizePage
from maillage.security.context import RequestContext
from maillage.security.issuer import USER_SCOPES, LocalIssuer, load_or_create_key
from maillage.security.sealing import SecretSeal
from maillage.security.throttle import FailureThrottle
from maillage.security.tokens import TokenValidator, load_issuers
from maillage.settings import Settings
from maillage.storage import Database

log = logging.getLogger(__name__)


CONTEXT_KEY = "maillage_context"
TOKEN_PATH = "/auth/token"
JWKS_PATH = "/auth/jwks.json"
SMART_PATH = "/.well-known/smart-configuration"
# The CapabilityStatement stays open: clients discover the server (and its sign-in) there.
OPEN_PATHS = frozenset(
    {"/health", "/fhir/metadata", TOKEN_PATH, JWKS_PATH, SMART_PATH, AUTHORIZE_PATH}
)
_BEARER = re.compile(r"^Bearer +([A-Za-z0-9\-._~+/]+=*)$", re.IGNORECASE)


def authenticated_context(state: Any) -> RequestContext | None:
    """The context the middleware stored for this request (``request.state``), if any."""
    found = getattr(state, CONTEXT_KEY, None)
    return found if isinstance(found, RequestContext) else None


def _outcome(message: str, code: str) -> dict[str, Any]:
    issue = {"severity": "error", "code": code, "diagnostics": message}
    return {"resourceType": "OperationOutcome", "issue": [issue]}


class AuthenticationMiddleware:
    """Every request but the open paths must carry ``Authorization: Bearer <token>``."""

    def __init__(
        self,
        app: ASGIApp,
        validator: TokenValidator,
        *,
        protect_metrics: bool = False,
        open_paths: Iterable[str] = OPEN_PATHS,
        realm: str = "maillage",
    ) -> None:
        self.app = app
        self.validator = validator
        self.realm = realm
        self.open_paths = frozenset(open_paths) | (
            frozenset() if protect_metrics else frozenset({"/metrics"})
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or scope["path"] in self.open_paths:
            await self.app(scope, receive, send)
            return
        try:
            context = await self.authenticate(scope)
        except Unauthenticated as error:
            log.info("request refused on %s: %s", scope["path"], error.message)
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1008})
                return
            status = 400 if error.error == "invalid_request" else 401
            content_type = (
                "application/fhir+json" if scope["path"].startswith("/fhir") else "application/json"
            )
            await send_json(
                send,
                status,
                _outcome(error.message, error.code),
                content_type=content_type,
                headers=[("www-authenticate", error.www_authenticate(self.realm))],
            )
            return
        scope.setdefault("state", {})[CONTEXT_KEY] = context
        await self.app(scope, receive, send)

    async def authenticate(self, scope: Scope) -> RequestContext:
        values = header_values(scope, b"authorization")
        if not values:
            raise Unauthenticated("sign in: the request carries no access token", error=None)
        if len(values) > 1:
            raise Unauthenticated("one Authorization header only", error="invalid_request")
        match = _BEARER.match(values[0].strip())
        if match is None:
            if values[0].split(" ", 1)[0].lower() == "bearer":
                raise Unauthenticated("the Bearer token is malformed", error="invalid_request")
            raise Unauthenticated("sign in: only Bearer access tokens are accepted", error=None)
        return (await self.validator.validate(match[1])).context


class AuthRoute(NamedTuple):
    path: str
    methods: tuple[str, ...]
    app: ASGIApp


class AuthEndpoints:
    """``POST /auth/token`` (password + TOTP, client_credentials), ``GET /auth/jwks.json``,
    ``GET /.well-known/smart-configuration``."""

    def __init__(
        self,
        issuer: LocalIssuer,
        accounts: AccountService,
        *,
        public_root: str,
        max_body_bytes: int = 64 * 1024,
        throttle: FailureThrottle | None = None,
        codes: AuthorizationCodes | None = None,
    ) -> None:
        self.issuer = issuer
        self.accounts = accounts
        self.public_root = public_root.rstrip("/")
        self.max_body = max_body_bytes
        self.throttle = throttle or FailureThrottle(20, 300.0)
        # The authorization code flow (apps signing users in); None: not offered.
        self.codes = codes
        self.page = AuthorizePage(codes, accounts, self.throttle) if codes else None

    def routes(self) -> list[AuthRoute]:
        return [
            AuthRoute(TOKEN_PATH, ("POST",), Endpoint(self.token, self.max_body)),
            AuthRoute(JWKS_PATH, ("GET",), Endpoint(self.jwks, 0)),
            AuthRoute(SMART_PATH, ("GET",), Endpoint(self.smart_configuration, 0)),
            *(
                [AuthRoute(AUTHORIZE_PATH, ("GET", "POST"), Endpoint(self.page.handle, 16_384))]
                if self.page is not None
                else []
            ),
        ]

    async def jwks(self, request: Request) -> Answer:
        return Answer(200, self.issuer.jwks())

    async def smart_configuration(self, request: Request) -> Answer:
        configuration: dict[str, Any] = {
            "issuer": self.issuer.issuer,
            "jwks_uri": self.public_root + JWKS_PATH,
            "token_endpoint": self.public_root + TOKEN_PATH,
            "token_endpoint_auth_methods_supported": [
                "client_secret_basic",
                "client_secret_post",
            ],
            "grant_types_supported": ["password", "client_credentials"],
            "scopes_supported": [*USER_SCOPES, "system/*.cruds", "system/*.rs"],
            "response_types_supported": [],
            "capabilities": [
                "client-confidential-symmetric",
                "permission-v1",
                "permission-v2",
                "permission-user",
            ],
        }
        if self.codes is not None:
            configuration["authorization_endpoint"] = self.public_root + AUTHORIZE_PATH
            configuration["grant_types_supported"].insert(0, "authorization_code")
            configuration["response_types_supported"] = ["code"]
            configuration["code_challenge_methods_supported"] = ["S256"]
            configuration["token_endpoint_auth_methods_supported"].append("none")
            configuration["capabilities"] += ["launch-standalone", "client-public"]
        return Answer(200, configuration)

    async def token(self, request: Request) -> Answer:
        client = request.scope.get("client")
        address = str(client[0]) if client else "unknown"
        wait = self.throttle.retry_after(address)
        if wait is not None:
            log.warning("sign-in: too many failures from one address; refused for %d s", wait)
            return oauth_error(
                429,
                "invalid_request",
                f"too many failed sign-ins from this address: try again in {wait} s",
                **{"retry-after": str(wait)},
            )
        answer = await self._token(request)
        if answer.body.get("error") in ("invalid_grant", "invalid_client"):
            self.throttle.failed(address)
        return answer

    async def _token(self, request: Request) -> Answer:
        content_type = (request.header("content-type") or "").split(";")[0].strip().lower()
        if content_type != FORM:
            return oauth_error(400, "invalid_request", f"send the parameters as {FORM}")
        try:
            pairs = parse_qsl(request.body.decode("utf-8"), keep_blank_values=True)
        except (UnicodeDecodeError, ValueError):
            return oauth_error(400, "invalid_request", "the body is not a UTF-8 form")
        form = dict(pairs)
        if len(form) != len(pairs):
            return oauth_error(400, "invalid_request", "a parameter is repeated")
        grant = form.get("grant_type")
        try:
            if grant == "password":
                return await self._password(form)
            if grant == "client_credentials":
                return await self._client_credentials(request, form)
            if grant == "authorization_code" and self.codes is not None:
                return await self._authorization_code(form)
        except InvalidGrant as error:
            return oauth_error(400, "invalid_grant", error.message)
        except InvalidScope as error:
            return oauth_error(400, "invalid_scope", error.message)
        except InvalidRequest as error:
            return oauth_error(400, "invalid_request", error.message)
        return oauth_error(
            400,
            "unsupported_grant_type",
            "grant_type: authorization_code, password or client_credentials",
        )

    async def _password(self, form: dict[str, str]) -> Answer:
        login, password = form.get("username"), form.get("password")
        if not login or not password:
            return oauth_error(400, "invalid_request", "give username and password")
        try:
            who = await self.accounts.authenticate(login, password, form.get("totp"))
        except Unauthenticated as error:
            log.info("sign-in refused for %r: %s", login, error.message)
            return oauth_error(400, "invalid_grant", error.message)
        log.info("signed in: %s", login)
        return Answer(200, self.issuer.issue(who, form.get("scope")).response())

    async def _authorization_code(self, form: dict[str, str]) -> Answer:
        assert self.codes is not None
        who, scope = await self.codes.redeem(
            form.get("code", ""),
            client_id=form.get("client_id", ""),
            redirect_uri=form.get("redirect_uri", ""),
            verifier=form.get("code_verifier", ""),
        )
        log.info("code exchanged by the app %s", form.get("client_id"))
        return Answer(200, self.issuer.issue(who, scope).response())

    async def _client_credentials(self, request: Request, form: dict[str, str]) -> Answer:
        basic = request.header("authorization")
        challenge = {"www-authenticate": 'Basic realm="maillage"'} if basic else {}
        if basic and "client_secret" in form:
            return oauth_error(400, "invalid_request", "authenticate the client one way only")
        if basic:
            credentials = _basic_credentials(basic)
            if credentials is None:
                return oauth_error(
                    401, "invalid_client", "malformed Basic credentials", **challenge
                )
            client_id, secret = credentials
        else:
            client_id, secret = form.get("client_id", ""), form.get("client_secret", "")
        if not client_id or not secret:
            return oauth_error(401, "invalid_client", "the client must authenticate")
        try:
            who = await self.accounts.authenticate_client(client_id, secret)
        except Unauthenticated as error:
            log.info("client refused %r: %s", client_id, error.message)
            return oauth_error(401, "invalid_client", error.message, **challenge)
        return Answer(200, self.issuer.issue(who, form.get("scope")).response())


def _basic_credentials(header: str) -> tuple[str, str] | None:
    """RFC 6749 §2.3.1: Basic over the form-encoded client id and secret."""
    scheme, _, encoded = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    client_id, colon, secret = decoded.partition(":")
    return (unquote_plus(client_id), unquote_plus(secret)) if colon else None


@dataclass
class Authentication:
    """Everything sign-in needs in one process, built from the settings."""

    issuer: LocalIssuer
    accounts: AccountService
    validator: TokenValidator
    endpoints: AuthEndpoints


def account_service(settings: Settings, database: Database) -> AccountService:
    return AccountService(
        AccountStore(database),
        seal=SecretSeal.load_or_create(settings.keys_path),
        lockout_threshold=settings.auth_lockout_threshold,
        lockout_duration=timedelta(seconds=settings.auth_lockout_duration_s),
    )


def local_issuer(settings: Settings) -> LocalIssuer:
    key = load_or_create_key(settings.keys_path, settings.auth_signing_algorithm)
    return LocalIssuer(
        settings.auth_issuer,
        settings.auth_audience_url,
        key,
        lifetime_s=settings.auth_token_lifetime_s,
    )


def build_authentication(
    settings: Settings,
    database: Database,
    *,
    accounts: AccountService | None = None,
    known_sites: Collection[str] | None = None,
) -> Authentication:
    """``known_sites``: the hub's site codes, which issuers' ``site_map`` must name."""
    issuer = local_issuer(settings)
    accounts = accounts or account_service(settings, database)
    validator = TokenValidator(
        [issuer.trust(), *load_issuers(settings.auth_issuers_file, known_sites)],
        audience=settings.auth_audience_url,
        leeway_s=settings.auth_leeway_s,
        cache_s=settings.auth_jwks_cache_s,
    )
    endpoints = AuthEndpoints(
        issuer,
        accounts,
        public_root=settings.public_root_url,
        throttle=FailureThrottle(
            settings.auth_address_failure_limit, settings.auth_address_failure_window_s
        ),
        codes=AuthorizationCodes(database),
    )
    return Authentication(issuer, accounts, validator, endpoints)
