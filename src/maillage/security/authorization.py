"""The OAuth2 authorization code flow with PKCE (RFC 6749 §4.1, RFC 7636), for the apps
that sign their users in through the built-in issuer (SMART standalone launch).

An app is a public client registered with its exact redirect URIs (``maillage admin app
add``); it holds no secret, so PKCE (S256 only: ``plain`` would hand the verifier to
whoever reads the request) binds the code to the app instance that asked for it.

- ``check``: the authorization request. A client or redirect URI that is not registered
  is answered on the hub's own page, never by a redirect (an open redirector would send
  the code anywhere); once the redirect URI is trusted, other errors go back to it
  (``AuthorizationRefused.redirect``).
- ``grant``: after the user signed in (password, TOTP), a random code; its SHA-256 is
  stored with who signed in, the scope, the challenge, the redirect URI and an expiry of
  ``CODE_LIFETIME_S``.
- ``redeem``: at the token endpoint, the code is taken (DELETE ... RETURNING: used once,
  even by two concurrent exchanges) and checked: same client, same redirect URI, not
  expired, SHA-256(verifier) = challenge. Any mismatch is ``invalid_grant``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final
from urllib.parse import urlencode, urlsplit

import orjson

from maillage.errors import AuthorizationRefused, Conflict, InvalidGrant, InvalidRequest
from maillage.security.accounts import SignedIn, check_login
from maillage.security.scopes import ScopeSet
from maillage.storage import Database

CODE_LIFETIME_S: Final = 60
_VERIFIER = re.compile(r"^[A-Za-z0-9\-._~]{43,128}$")  # RFC 7636 §4.1
_CHALLENGE = re.compile(r"^[A-Za-z0-9\-_]{43}$")  # base64url of a SHA-256, no padding


@dataclass(frozen=True)
class App:
    client_id: str
    name: str
    redirect_uris: tuple[str, ...]
    enabled: bool = True


@dataclass(frozen=True)
class AuthorizationRequest:
    """A checked request: what the sign-in page carries until the user signs in."""

    client_id: str
    app_name: str
    redirect_uri: str
    code_challenge: str
    scope: str | None
    state: str | None

    def fields(self) -> dict[str, str]:
        """The request's parameters, for the form's hidden fields."""
        found = {
            "response_type": "code",
            "client_id": self.client_id,
            "redirect_uri": self.redirect_uri,
            "code_challenge": self.code_challenge,
            "code_challenge_method": "S256",
        }
        if self.scope:
            found["scope"] = self.scope
        if self.state is not None:
            found["state"] = self.state
        return found

    def redirect(self, **parameters: str) -> str:
        """The redirect URI with ``parameters`` and the app's ``state``."""
        if self.state is not None:
            parameters["state"] = self.state
        separator = "&" if urlsplit(self.redirect_uri).query else "?"
        return f"{self.redirect_uri}{separator}{urlencode(parameters)}"


def challenge_of(verifier: str) -> str:
    """The S256 challenge of a verifier (RFC 7636 §4.2)."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def check_redirect_uri(uri: str) -> str:
    """A redirect URI an app may register: absolute, https, or http on this machine (a
    desktop app's loopback, RFC 8252 §7.3), no fragment."""
    parts = urlsplit(uri)
    local = parts.scheme == "http" and parts.hostname in ("127.0.0.1", "localhost", "::1")
    if not (parts.scheme == "https" or local) or not parts.netloc or parts.fragment:
        raise InvalidRequest(
            f"redirect URI {uri!r}: an absolute https:// URI (http:// only on 127.0.0.1 or"
            " localhost), without a #fragment"
        )
    return uri


class AuthorizationCodes:
    def __init__(self, database: Database, *, clock: Callable[[], float] = time.time) -> None:
        self.database = database
        self.clock = clock

    # -- apps ---------------------------------------------------------------------------
    async def add_app(self, client_id: str, name: str, redirect_uris: list[str]) -> App:
        check_login(client_id)
        if not redirect_uris:
            raise InvalidRequest("give at least one --redirect-uri")
        app = App(client_id, name, tuple(check_redirect_uri(uri) for uri in redirect_uris))
        async with self.database.connection() as conn:
            cursor = await conn.execute(
                "INSERT INTO auth_app (client_id, name, redirect_uris) VALUES (%s, %s, %s)"
                " ON CONFLICT (client_id) DO NOTHING",
                (app.client_id, app.name, list(app.redirect_uris)),
            )
        if cursor.rowcount == 0:
            raise Conflict(f"an app {client_id!r} already exists")
        return app

    async def apps(self) -> list[App]:
        async with self.database.connection() as conn:
            cursor = await conn.execute(
                "SELECT client_id, name, redirect_uris, enabled FROM auth_app ORDER BY client_id"
            )
            return [App(row[0], row[1], tuple(row[2]), row[3]) for row in await cursor.fetchall()]

    async def _app(self, client_id: str) -> App | None:
        async with self.database.connection() as conn:
            cursor = await conn.execute(
                "SELECT client_id, name, redirect_uris, enabled FROM auth_app WHERE client_id = %s",
                (client_id,),
            )
            row = await cursor.fetchone()
        return None if row is None else App(row[0], row[1], tuple(row[2]), row[3])

    # -- the flow -------------------------------------------------------------------------
    async def check(self, params: Mapping[str, str]) -> AuthorizationRequest:
        """The authorization request's parameters, checked (``AuthorizationRefused``)."""
        client_id = params.get("client_id", "")
        app = await self._app(client_id) if client_id else None
        if app is None or not app.enabled:
            raise AuthorizationRefused(
                f"the application {client_id!r} is not registered with this hub"
                " (maillage admin app add)",
                "unauthorized_client",
            )
        redirect_uri = params.get("redirect_uri", "")
        if redirect_uri not in app.redirect_uris:
            raise AuthorizationRefused(
                f"the redirect URI {redirect_uri!r} is not one {app.name!r} registered"
            )
        request = AuthorizationRequest(
            client_id=app.client_id,
            app_name=app.name,
            redirect_uri=redirect_uri,
            code_challenge=params.get("code_challenge", ""),
            scope=params.get("scope") or None,
            state=params.get("state"),
        )
        if params.get("response_type") != "code":
            raise self._back(request, "unsupported_response_type", "response_type: code")
        if params.get("code_challenge_method") != "S256" or not _CHALLENGE.match(
            request.code_challenge
        ):
            raise self._back(
                request,
                "invalid_request",
                "PKCE is required: code_challenge (43 characters) and code_challenge_method=S256",
            )
        if request.scope:
            try:
                ScopeSet.parse(request.scope)
            except InvalidRequest as error:
                raise self._back(request, "invalid_scope", error.message) from None
        return request

    @staticmethod
    def _back(request: AuthorizationRequest, error: str, description: str) -> AuthorizationRefused:
        redirect = request.redirect(error=error, error_description=description)
        return AuthorizationRefused(description, error, redirect)

    async def grant(self, request: AuthorizationRequest, who: SignedIn) -> str:
        """A code for ``who`` (already signed in), to send back to the app."""
        code = secrets.token_urlsafe(32)
        expires = datetime.fromtimestamp(self.clock(), UTC) + timedelta(seconds=CODE_LIFETIME_S)
        async with self.database.connection() as conn:
            await conn.execute("DELETE FROM auth_code WHERE expires_at < now()")
            await conn.execute(
                "INSERT INTO auth_code (code_hash, client_id, redirect_uri, code_challenge,"
                " scope, signed_in, expires_at) VALUES (%s, %s, %s, %s, %s, %s, %s)",
                (
                    hashlib.sha256(code.encode()).digest(),
                    request.client_id,
                    request.redirect_uri,
                    request.code_challenge,
                    request.scope,
                    orjson.dumps(asdict(who)).decode(),
                    expires,
                ),
            )
        return code

    async def redeem(
        self, code: str, *, client_id: str, redirect_uri: str, verifier: str
    ) -> tuple[SignedIn, str | None]:
        """Who signed in and the scope asked, for a valid code (used once)."""
        if not code or not client_id or not redirect_uri or not verifier:
            raise InvalidRequest("give code, client_id, redirect_uri and code_verifier")
        if not _VERIFIER.match(verifier):
            raise InvalidRequest("code_verifier: 43 to 128 characters of A-Z a-z 0-9 - . _ ~")
        async with self.database.connection() as conn:
            cursor = await conn.execute(
                "DELETE FROM auth_code WHERE code_hash = %s RETURNING client_id, redirect_uri,"
                " code_challenge, scope, signed_in, expires_at",
                (hashlib.sha256(code.encode()).digest(),),
            )
            row = await cursor.fetchone()
        if row is None:
            raise InvalidGrant("the code is unknown, already used or expired")
        owner, bound_uri, challenge, scope, signed_in, expires = row
        if owner != client_id or bound_uri != redirect_uri:
            raise InvalidGrant("the code was issued to another client or redirect URI")
        if expires.timestamp() <= self.clock():
            raise InvalidGrant("the code expired: sign in again")
        if not hmac.compare_digest(challenge_of(verifier), challenge):
            raise InvalidGrant("the code_verifier does not match the code_challenge")
        return _signed_in(signed_in), scope


def _signed_in(value: Any) -> SignedIn:
    fields = orjson.loads(value) if isinstance(value, str | bytes) else dict(value)
    fields["sites"] = tuple(fields.get("sites", ()))
    fields["scopes"] = tuple(fields.get("scopes", ()))
    return SignedIn(**fields)
