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
import json
import logging
import re
from collections.abc import Awaitable, Callable, Collection, Iterable, MutableMapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, NamedTuple
from urllib.parse import parse_qsl, unquote_plus

from maillage.errors import InvalidRequest, InvalidScope, Unauthenticated
from maillage.security.accounts import AccountService
from maillage.security.accounts_store import AccountStore
from maillage.security.context import RequestContext
from maillage.security.issuer import USER_SCOPES, LocalIssuer, load_or_create_key
from maillage.security.sealing import SecretSeal
from maillage.security.throttle import FailureThrottle
from maillage.security.tokens import TokenValidator, load_issuers
from maillage.settings import Settings
from maillage.storage import Database

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

CONTEXT_KEY = "maillage_context"
TOKEN_PATH = "/auth/token"
JWKS_PATH = "/auth/jwks.json"
SMART_PATH = "/.well-known/smart-configuration"
# The CapabilityStatement stays open: clients discover the server (and its sign-in) there.
OPEN_PATHS = frozenset({"/health", "/fhir/metadata", TOKEN_PATH, JWKS_PATH, SMART_PATH})
_BEARER = re.compile(r"^Bearer +([A-Za-z0-9\-._~+/]+=*)$", re.IGNORECASE)
_FORM = "application/x-www-form-urlencoded"


def authenticated_context(state: Any) -> RequestContext | None:
    """The context the middleware stored for this request (``request.state``), if any."""
    found = getattr(state, CONTEXT_KEY, None)
    return found if isinstance(found, RequestContext) else None


def _header(scope: Scope, name: bytes) -> list[str]:
    return [value.decode("latin-1") for key, value in scope.get("headers", ()) if key == name]


async def _send(
    send: Send,
    status: int,
    body: dict[str, Any],
    *,
    content_type: str = "application/json",
    headers: Iterable[tuple[str, str]] = (),
) -> None:
    payload = json.dumps(body).encode()
    raw = [
        (b"content-type", content_type.encode()),
        (b"content-length", str(len(payload)).encode()),
        (b"cache-control", b"no-store"),
        *((name.encode(), value.encode("latin-1")) for name, value in headers),
    ]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": payload})


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
            await _send(
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
        values = _header(scope, b"authorization")
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


@dataclass
class _Request:
    scope: Scope
    body: bytes

    def header(self, name: str) -> str | None:
        values = _header(self.scope, name.lower().encode())
        return values[0] if values else None


@dataclass
class _Answer:
    status: int
    body: dict[str, Any]
    headers: list[tuple[str, str]] = field(default_factory=list)


class _Endpoint:
    """An ASGI app around ``handler``: an instance, so that Starlette's ``Route`` mounts
    it as an app (it wraps plain functions as request/response endpoints)."""

    def __init__(self, handler: Callable[[_Request], Awaitable[_Answer]], max_body: int) -> None:
        self.handler = handler
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                await _send(
                    send, 413, {"error": "invalid_request", "error_description": "too large"}
                )
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        answer = await self.handler(_Request(scope, b"".join(chunks)))
        await _send(
            send, answer.status, answer.body, headers=[*answer.headers, ("pragma", "no-cache")]
        )


def _oauth_error(status: int, error: str, description: str, **headers: str) -> _Answer:
    return _Answer(
        status, {"error": error, "error_description": description}, list(headers.items())
    )


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
    ) -> None:
        self.issuer = issuer
        self.accounts = accounts
        self.public_root = public_root.rstrip("/")
        self.max_body = max_body_bytes
        self.throttle = throttle or FailureThrottle(20, 300.0)

    def routes(self) -> list[AuthRoute]:
        return [
            AuthRoute(TOKEN_PATH, ("POST",), _Endpoint(self.token, self.max_body)),
            AuthRoute(JWKS_PATH, ("GET",), _Endpoint(self.jwks, 0)),
            AuthRoute(SMART_PATH, ("GET",), _Endpoint(self.smart_configuration, 0)),
        ]

    async def jwks(self, request: _Request) -> _Answer:
        return _Answer(200, self.issuer.jwks())

    async def smart_configuration(self, request: _Request) -> _Answer:
        return _Answer(
            200,
            {
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
            },
        )

    async def token(self, request: _Request) -> _Answer:
        client = request.scope.get("client")
        address = str(client[0]) if client else "unknown"
        wait = self.throttle.retry_after(address)
        if wait is not None:
            log.warning("sign-in: too many failures from one address; refused for %d s", wait)
            return _oauth_error(
                429,
                "invalid_request",
                f"too many failed sign-ins from this address: try again in {wait} s",
                **{"retry-after": str(wait)},
            )
        answer = await self._token(request)
        if answer.body.get("error") in ("invalid_grant", "invalid_client"):
            self.throttle.failed(address)
        return answer

    async def _token(self, request: _Request) -> _Answer:
        content_type = (request.header("content-type") or "").split(";")[0].strip().lower()
        if content_type != _FORM:
            return _oauth_error(400, "invalid_request", f"send the parameters as {_FORM}")
        try:
            pairs = parse_qsl(request.body.decode("utf-8"), keep_blank_values=True)
        except (UnicodeDecodeError, ValueError):
            return _oauth_error(400, "invalid_request", "the body is not a UTF-8 form")
        form = dict(pairs)
        if len(form) != len(pairs):
            return _oauth_error(400, "invalid_request", "a parameter is repeated")
        grant = form.get("grant_type")
        try:
            if grant == "password":
                return await self._password(form)
            if grant == "client_credentials":
                return await self._client_credentials(request, form)
        except InvalidScope as error:
            return _oauth_error(400, "invalid_scope", error.message)
        except InvalidRequest as error:
            return _oauth_error(400, "invalid_request", error.message)
        return _oauth_error(
            400, "unsupported_grant_type", "grant_type: password or client_credentials"
        )

    async def _password(self, form: dict[str, str]) -> _Answer:
        login, password = form.get("username"), form.get("password")
        if not login or not password:
            return _oauth_error(400, "invalid_request", "give username and password")
        try:
            who = await self.accounts.authenticate(login, password, form.get("totp"))
        except Unauthenticated as error:
            log.info("sign-in refused for %r: %s", login, error.message)
            return _oauth_error(400, "invalid_grant", error.message)
        log.info("signed in: %s", login)
        return _Answer(200, self.issuer.issue(who, form.get("scope")).response())

    async def _client_credentials(self, request: _Request, form: dict[str, str]) -> _Answer:
        basic = request.header("authorization")
        challenge = {"www-authenticate": 'Basic realm="maillage"'} if basic else {}
        if basic and "client_secret" in form:
            return _oauth_error(400, "invalid_request", "authenticate the client one way only")
        if basic:
            credentials = _basic_credentials(basic)
            if credentials is None:
                return _oauth_error(
                    401, "invalid_client", "malformed Basic credentials", **challenge
                )
            client_id, secret = credentials
        else:
            client_id, secret = form.get("client_id", ""), form.get("client_secret", "")
        if not client_id or not secret:
            return _oauth_error(401, "invalid_client", "the client must authenticate")
        try:
            who = await self.accounts.authenticate_client(client_id, secret)
        except Unauthenticated as error:
            log.info("client refused %r: %s", client_id, error.message)
            return _oauth_error(401, "invalid_client", error.message, **challenge)
        return _Answer(200, self.issuer.issue(who, form.get("scope")).response())


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
    )
    return Authentication(issuer, accounts, validator, endpoints)
