"""Local accounts of the built-in issuer: people and service accounts.

A person signs in with a login and a password, checked against an argon2id hash (the
password itself is never stored nor logged), plus a TOTP code (RFC 6238) once enrolled;
``lockout_threshold`` failures in a row lock the account for ``lockout_duration`` (an
administrator's ``enable`` releases it earlier). A service account (OAuth2 client
credentials) has a random 256-bit secret, stored as a SHA-256 hash (a slow hash adds
nothing to a secret that long), the role ``service`` and SMART ``system/`` scopes.
Every refusal is ``Unauthenticated`` with the same message whether the login exists or
not; only a locked or disabled account says so once the password was right.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import re
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from importlib import resources

import pyotp
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from maillage.errors import InvalidRequest, NotFound, Unauthenticated
from maillage.security.accounts_store import AccountStore, ClientRow, UserRow
from maillage.security.scopes import ScopeSet
from maillage.security.sealing import SecretSeal, UnreadableSecret, is_sealed

SERVICE_ROLE = "service"
MIN_PASSWORD_LENGTH = 12
_LOGIN = re.compile(r"^[a-z0-9][a-z0-9._@-]{0,99}$")
_REFERENCE = re.compile(r"^(Practitioner|PractitionerRole)/[A-Za-z0-9\-.]{1,64}$")
log = logging.getLogger(__name__)

_WRONG = "the login or the password is wrong"
_TOTP_PERIOD = 30


@dataclass(frozen=True)
class SignedIn:
    """Who signed in, as the issuer puts it in a token."""

    subject: str
    role: str
    sites: tuple[str, ...]
    practitioner: str | None = None
    organisation: str | None = None
    scopes: tuple[str, ...] = ()
    client: bool = False


def hash_client_secret(secret: str) -> str:
    return "sha256:" + hashlib.sha256(secret.encode()).hexdigest()


def check_login(login: str) -> str:
    if not _LOGIN.match(login):
        raise InvalidRequest(
            f"login {login!r}: lowercase letters, digits and . _ @ -, starting with a letter "
            "or digit, at most 100 characters"
        )
    return login


def known_roles() -> list[str]:
    """The roles of the access rules (``security/data/policy.json``)."""
    data = json.loads((resources.files("maillage.security") / "data" / "policy.json").read_text())
    return sorted(data["roles"])


def check_role(role: str) -> str:
    roles = [known for known in known_roles() if known != SERVICE_ROLE]
    if role == SERVICE_ROLE:
        raise InvalidRequest("the role 'service' is for service accounts (admin client add)")
    if role not in roles:
        raise InvalidRequest(f"role {role!r}: one of {', '.join(roles)}")
    return role


def check_password(password: str) -> str:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise InvalidRequest(f"the password must have at least {MIN_PASSWORD_LENGTH} characters")
    return password


def check_sites(sites: Iterable[str]) -> list[str]:
    cleaned = sorted({site.strip() for site in sites if site.strip()})
    for site in cleaned:
        if not re.fullmatch(r"[A-Za-z0-9_-]{1,32}", site):
            raise InvalidRequest(f"site {site!r}: a site code like CHM (letters, digits, - _)")
    return cleaned


class AccountService:
    def __init__(
        self,
        store: AccountStore,
        *,
        lockout_threshold: int = 5,
        lockout_duration: timedelta = timedelta(minutes=15),
        hasher: PasswordHasher | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        seal: SecretSeal | None = None,
    ) -> None:
        self.store = store
        # TOTP secrets sealed at rest (``sealing.py``); None keeps them in clear (tests).
        self.seal = seal
        self.lockout_threshold = lockout_threshold
        self.lockout_duration = lockout_duration
        self.hasher = hasher or PasswordHasher()
        self.clock = clock
        # Checked when the login is unknown, so that the answer takes as long (made on
        # first need: a hash costs about as much as a sign-in).
        self._decoy: str | None = None

    # -- people ------------------------------------------------------------------------

    async def add_user(
        self,
        login: str,
        password: str,
        *,
        role: str,
        sites: Iterable[str] = (),
        practitioner: str | None = None,
        organisation: str | None = None,
        display_name: str | None = None,
    ) -> None:
        check_role(role)
        if practitioner is not None and not _REFERENCE.match(practitioner):
            raise InvalidRequest(
                f"practitioner {practitioner!r}: a reference like Practitioner/123"
            )
        row = UserRow(
            login=check_login(login),
            display_name=display_name,
            password_hash=await self._hash(check_password(password)),
            role=role,
            sites=check_sites(sites),
            practitioner=practitioner,
            organisation=organisation,
            totp_secret=None,
            totp_last_step=None,
            enabled=True,
            failed_attempts=0,
            locked_until=None,
            last_login_at=None,
        )
        await self.store.insert_user(row)

    async def users(self) -> list[UserRow]:
        return await self.store.users()

    async def set_enabled(self, login: str, enabled: bool) -> None:
        await self.store.set_enabled(login, enabled)

    async def set_password(self, login: str, password: str) -> None:
        await self.store.set_password(login, await self._hash(check_password(password)))

    async def enroll_totp(self, login: str) -> str:
        """A new TOTP secret for the user (replacing any earlier one); returns the
        provisioning URI an authenticator app reads (otpauth://...)."""
        if await self.store.user(login) is None:
            raise NotFound(f"no user {login!r}")
        secret = pyotp.random_base32()
        await self.store.set_totp(login, self.seal.seal(secret, login) if self.seal else secret)
        return pyotp.TOTP(secret, interval=_TOTP_PERIOD).provisioning_uri(
            name=login, issuer_name="Maillage"
        )

    async def authenticate(self, login: str, password: str, totp: str | None = None) -> SignedIn:
        """The user, if the password (and the TOTP code once enrolled) are right."""
        now = self.clock()
        user = await self.store.user(login)
        if user is None:
            if self._decoy is None:
                self._decoy = await self._hash(secrets.token_hex(16))
            await self._verify(self._decoy, password)
            raise Unauthenticated(_WRONG, error=None)
        if user.locked_until is not None and user.locked_until > now:
            raise Unauthenticated(
                f"the account is locked until {user.locked_until:%Y-%m-%d %H:%M} UTC after "
                "repeated failures; wait, or ask an administrator to enable it again",
                error=None,
            )
        if not await self._verify(user.password_hash, password):
            await self._failed(login, now)
        step = None
        if user.totp_secret is not None:
            step = self._totp_step(self._totp_secret(user), totp, now)
            if step is None:
                await self._failed(login, now, "the TOTP code is missing or wrong")
        if not user.enabled:
            raise Unauthenticated("the account is disabled; ask an administrator", error=None)
        if not await self.store.record_success(login, now=now, totp_step=step):
            raise Unauthenticated(
                "this TOTP code was already used; wait for the next one", error=None
            )
        if self.hasher.check_needs_rehash(user.password_hash):
            await self.store.set_password(login, await self._hash(password))
        if self.seal is not None and user.totp_secret and not is_sealed(user.totp_secret):
            await self.store.reseal_totp(login, self.seal.seal(user.totp_secret, login))
        return SignedIn(
            subject=user.login,
            role=user.role,
            sites=tuple(user.sites),
            practitioner=user.practitioner,
            organisation=user.organisation,
        )

    # argon2 is slow on purpose (tens of milliseconds, 64 MiB): off the event loop, in a
    # thread (the C code releases the GIL), so that other requests go on meanwhile.
    async def _hash(self, password: str) -> str:
        return await asyncio.to_thread(self.hasher.hash, password)

    async def _verify(self, password_hash: str, password: str) -> bool:
        def verify() -> bool:
            try:
                return self.hasher.verify(password_hash, password)
            except (VerificationError, InvalidHashError):
                return False

        return await asyncio.to_thread(verify)

    def _totp_secret(self, user: UserRow) -> str:
        assert user.totp_secret is not None
        if self.seal is None:
            return user.totp_secret
        try:
            return self.seal.open(user.totp_secret, user.login)
        except UnreadableSecret:
            # Not the user's doing: no failure counted; an administrator enrolls again.
            log.error("sign-in: the TOTP secret of an account cannot be opened with this key")
            raise Unauthenticated(
                "the account's second factor cannot be checked; ask an administrator to "
                "enroll its TOTP again",
                error=None,
            ) from None

    @staticmethod
    def _totp_step(secret: str, code: str | None, now: datetime) -> int | None:
        """The time step the code belongs to (now, or one step either side), or None."""
        if not code or not code.isdigit():
            return None
        totp = pyotp.TOTP(secret, interval=_TOTP_PERIOD)
        current = int(now.timestamp()) // _TOTP_PERIOD
        for step in (current, current - 1, current + 1):
            if hmac.compare_digest(totp.at(step * _TOTP_PERIOD), code):
                return step
        return None

    async def _failed(self, login: str, now: datetime, message: str = _WRONG) -> None:
        locked = await self.store.record_failure(
            login, now=now, threshold=self.lockout_threshold, duration=self.lockout_duration
        )
        if locked is not None:
            message += f"; the account is now locked until {locked:%Y-%m-%d %H:%M} UTC"
        raise Unauthenticated(message, error=None)

    # -- service accounts --------------------------------------------------------------

    async def add_client(
        self,
        client_id: str,
        *,
        scopes: Iterable[str],
        sites: Iterable[str] = (),
        description: str | None = None,
    ) -> str:
        """Register a service account; returns its secret, which is not kept."""
        if not re.fullmatch(r"[a-z0-9][a-z0-9._-]{0,99}", client_id):
            raise InvalidRequest(
                f"client id {client_id!r}: lowercase letters, digits and . _ -, at most 100"
            )
        parsed = ScopeSet.parse(list(scopes))
        if not parsed.resource:
            raise InvalidRequest("give at least one scope like system/*.rs or system/Patient.read")
        wrong = [scope.text for scope in parsed.resource if scope.context != "system"]
        if wrong or parsed.other:
            raise InvalidRequest(
                f"service accounts take system/ scopes only, not {sorted([*wrong, *parsed.other])}"
            )
        secret = secrets.token_urlsafe(32)
        await self.store.insert_client(
            ClientRow(
                client_id=client_id,
                secret_hash=hash_client_secret(secret),
                role=SERVICE_ROLE,
                scopes=sorted(parsed.texts),
                sites=check_sites(sites),
                description=description,
                enabled=True,
                last_used_at=None,
            )
        )
        return secret

    async def clients(self) -> list[ClientRow]:
        return await self.store.clients()

    async def client(self, client_id: str) -> SignedIn:
        """A service account by id, without its secret (the administrator's ``admin token``)."""
        row = await self.store.client(client_id)
        if row is None:
            raise NotFound(f"no client {client_id!r}: see `maillage admin client add`")
        if not row.enabled:
            raise Unauthenticated(f"the client {client_id!r} is disabled", error=None)
        return self._signed_in(row)

    async def authenticate_client(self, client_id: str, secret: str) -> SignedIn:
        row = await self.store.client(client_id)
        expected = row.secret_hash if row is not None else hash_client_secret(secrets.token_hex())
        if row is None or not hmac.compare_digest(expected, hash_client_secret(secret)):
            raise Unauthenticated("the client id or secret is wrong", error=None)
        if not row.enabled:
            raise Unauthenticated(f"the client {client_id!r} is disabled", error=None)
        await self.store.record_client_use(client_id, now=self.clock())
        return self._signed_in(row)

    @staticmethod
    def _signed_in(row: ClientRow) -> SignedIn:
        return SignedIn(
            subject=row.client_id,
            role=row.role,
            sites=tuple(row.sites),
            scopes=tuple(row.scopes),
            client=True,
        )
