"""``/auth/authorize``: the built-in issuer's sign-in page of the authorization code flow
(``authorization.py``).

``GET`` checks the app's request and shows the page (login, password, TOTP code when
enrolled); ``POST`` signs the user in with the same rules as the token endpoint (argon2,
TOTP, lockout, the per-address throttle) and sends the browser back to the app's
registered redirect URI with a code, or with ``error=access_denied`` when the user
cancels. A request whose client or redirect URI is not registered is answered here, never
redirected. The page is plain HTML (no script), not to be framed, sent with ``no-store``.
"""

from __future__ import annotations

import logging
from html import escape
from typing import Final
from urllib.parse import parse_qsl

from maillage.errors import AuthorizationRefused, Unauthenticated
from maillage.security.accounts import AccountService
from maillage.security.asgi import FORM, Answer, Request
from maillage.security.authorization import AuthorizationCodes, AuthorizationRequest
from maillage.security.throttle import FailureThrottle

log = logging.getLogger(__name__)

AUTHORIZE_PATH: Final = "/auth/authorize"
_PAGE_HEADERS: Final = [
    ("x-frame-options", "DENY"),
    (
        "content-security-policy",
        "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'",
    ),
    ("referrer-policy", "no-referrer"),
]
_STYLE: Final = (
    "body{font-family:sans-serif;max-width:26rem;margin:3rem auto;padding:0 1rem}"
    "label{display:block;margin-top:.8rem}input{width:100%;padding:.4rem}"
    ".error{color:#a00}button{margin-top:1rem;padding:.5rem 1rem}"
)


class AuthorizePage:
    def __init__(
        self, codes: AuthorizationCodes, accounts: AccountService, throttle: FailureThrottle
    ) -> None:
        self.codes = codes
        self.accounts = accounts
        self.throttle = throttle

    async def handle(self, request: Request) -> Answer:
        if request.scope.get("method") == "POST":
            return await self._submit(request)
        query = request.scope.get("query_string", b"").decode("latin-1")
        params = _single_values(parse_qsl(query, keep_blank_values=True))
        if params is None:
            return _page(400, "Sign-in refused", "<p class=error>A parameter is repeated.</p>")
        try:
            checked = await self.codes.check(params)
        except AuthorizationRefused as refused:
            return _refused(refused)
        return _form(checked)

    async def _submit(self, request: Request) -> Answer:
        client = request.scope.get("client")
        address = str(client[0]) if client else "unknown"
        wait = self.throttle.retry_after(address)
        if wait is not None:
            message = f"Too many failed sign-ins from this address: try again in {wait} s."
            answer = _page(429, "Sign-in refused", f"<p class=error>{escape(message)}</p>")
            answer.headers.append(("retry-after", str(wait)))
            return answer
        content_type = (request.header("content-type") or "").split(";")[0].strip().lower()
        try:
            pairs = parse_qsl(request.body.decode("utf-8"), keep_blank_values=True)
        except (UnicodeDecodeError, ValueError):
            pairs = []
        form = _single_values(pairs) if content_type == FORM else None
        if form is None:
            return _page(400, "Sign-in refused", "<p class=error>The form is malformed.</p>")
        try:
            checked = await self.codes.check(form)
        except AuthorizationRefused as refused:
            return _refused(refused)
        if form.get("action") == "cancel":
            return _redirect(checked.redirect(error="access_denied"))
        login = form.get("username", "")
        try:
            who = await self.accounts.authenticate(
                login, form.get("password", ""), form.get("totp")
            )
        except Unauthenticated as error:
            self.throttle.failed(address)
            log.info("sign-in refused on the authorization page: %s", error.message)
            return _form(checked, error=error.message, status=401)
        code = await self.codes.grant(checked, who)
        log.info("signed in for the app %s", checked.client_id)
        return _redirect(checked.redirect(code=code))


def _single_values(pairs: list[tuple[str, str]]) -> dict[str, str] | None:
    found = dict(pairs)
    return found if len(found) == len(pairs) else None


def _redirect(location: str) -> Answer:
    return Answer(302, {}, [("location", location)], page=b"", content_type="text/plain")


def _refused(refused: AuthorizationRefused) -> Answer:
    if refused.redirect is not None:
        return _redirect(refused.redirect)
    return _page(400, "Sign-in refused", f"<p class=error>{escape(refused.message)}</p>")


def _form(checked: AuthorizationRequest, *, error: str | None = None, status: int = 200) -> Answer:
    hidden = "".join(
        f'<input type=hidden name="{escape(name)}" value="{escape(value)}">'
        for name, value in checked.fields().items()
    )
    problem = f"<p class=error>{escape(error)}</p>" if error else ""
    scope = f"<p>It asks for: <code>{escape(checked.scope)}</code></p>" if checked.scope else ""
    body = (
        f"<p><strong>{escape(checked.app_name)}</strong> asks you to sign in to the hub.</p>"
        f'{scope}{problem}<form method=post action="/auth/authorize">{hidden}'
        "<label>Login <input name=username autocomplete=username required></label>"
        "<label>Password <input name=password type=password"
        " autocomplete=current-password required></label>"
        "<label>Code of your authenticator app (if enrolled) <input name=totp"
        " inputmode=numeric autocomplete=one-time-code></label>"
        "<button name=action value=sign-in>Sign in</button> "
        "<button name=action value=cancel formnovalidate>Cancel</button></form>"
    )
    return _page(status, "Sign in", body)


def _page(status: int, title: str, body: str) -> Answer:
    html = (
        f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{escape(title)}"
        f" - Maillage</title><style>{_STYLE}</style></head><body><h1>{escape(title)}</h1>"
        f"{body}</body></html>"
    )
    return Answer(
        status,
        {},
        list(_PAGE_HEADERS),
        page=html.encode("utf-8"),
        content_type="text/html; charset=utf-8",
    )
