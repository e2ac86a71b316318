"""Sign-in test helpers: cheap password hashing, keys, tokens, the accounts tables emptied."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import jwt
import psycopg
import pyotp
import pytest
from argon2 import PasswordHasher
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from maillage.security.accounts import AccountService
from maillage.security.accounts_store import AccountStore
from maillage.security.sealing import SecretSeal
from maillage.storage import Database

T = TypeVar("T")
ISSUER = "https://idp.ght.example/realms/ght"
AUDIENCE = "https://hub.ght.example/fhir"


def cheap_hasher() -> PasswordHasher:
    """argon2id with tiny costs: the hashes stay argon2 hashes, the tests stay quick."""
    return PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)


class Clock:
    """A clock the tests move (lockout durations)."""

    def __init__(self) -> None:
        from datetime import UTC, datetime

        self.now = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)

    def __call__(self) -> Any:
        return self.now

    def advance(self, seconds: float) -> None:
        from datetime import timedelta

        self.now += timedelta(seconds=seconds)


def totp_of(uri: str) -> pyotp.TOTP:
    """The TOTP of an ``otpauth://totp/`` provisioning URI (``pyotp.parse_uri`` is typed
    as returning the OTP base class, which has no ``now`` nor ``at``)."""
    totp = pyotp.parse_uri(uri)
    assert isinstance(totp, pyotp.TOTP)
    return totp


@pytest.fixture
def accounts_database(database_url: str) -> str:
    """The test database with the accounts tables emptied."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("TRUNCATE auth_user, auth_client, auth_code, auth_app")
    return database_url


def with_accounts(
    database_url: str,
    work: Callable[[AccountService], Awaitable[T]],
    *,
    clock: Clock | None = None,
    threshold: int = 3,
    duration_s: float = 600,
    seal: SecretSeal | None = None,
) -> T:
    """Run ``work`` with an AccountService over the test database."""
    from datetime import timedelta

    async def main() -> T:
        database = Database(database_url, min_size=1, max_size=2)
        await database.open()
        try:
            service = AccountService(
                AccountStore(database),
                lockout_threshold=threshold,
                lockout_duration=timedelta(seconds=duration_s),
                hasher=cheap_hasher(),
                seal=seal,
                **({"clock": clock} if clock is not None else {}),
            )
            return await work(service)
        finally:
            await database.close()

    return asyncio.run(main())


class SigningKeys:
    """An IdP's keys: an EC P-256 and an RSA key, with their public JWKS."""

    def __init__(self) -> None:
        self.ec = ec.generate_private_key(ec.SECP256R1())
        self.rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def jwks(self) -> dict[str, Any]:
        ec_jwk = jwt.algorithms.ECAlgorithm.to_jwk(self.ec.public_key(), as_dict=True)
        rsa_jwk = jwt.algorithms.RSAAlgorithm.to_jwk(self.rsa.public_key(), as_dict=True)
        return {
            "keys": [
                {**ec_jwk, "kid": "ec-1", "use": "sig"},
                {**rsa_jwk, "kid": "rsa-1", "alg": "RS256", "use": "sig"},
            ]
        }

    def token(
        self,
        claims: dict[str, Any] | None = None,
        *,
        kid: str = "ec-1",
        algorithm: str = "ES256",
        drop: tuple[str, ...] = (),
        **changes: Any,
    ) -> str:
        now = int(time.time())
        payload: dict[str, Any] = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": "f:1234:jdupont",
            "iat": now,
            "exp": now + 300,
            "fhirUser": "https://hub.ght.example/fhir/Practitioner/pr-1",
            "sites": ["CHM"],
            "realm_access": {"roles": ["physician"]},
            "scope": "openid fhirUser user/*.rs",
            **(claims or {}),
            **changes,
        }
        for name in drop:
            payload.pop(name, None)
        key = self.ec if algorithm.startswith("ES") else self.rsa
        return jwt.encode(payload, key, algorithm=algorithm, headers={"kid": kid})


@pytest.fixture(scope="session")
def idp_keys() -> SigningKeys:
    return SigningKeys()
