"""The built-in issuer: short-lived access tokens (JWT, RFC 9068) for local accounts.

Its private key is generated once into ``data_dir/keys/`` (``signing-es256.pem``, mode
0600 in a 0700 folder) and read by every process of the hub, so that they all sign and
publish the same key; its key id is the key's RFC 7638 thumbprint. The tokens are
checked like any issuer's, by ``security.tokens`` (``LocalIssuer.trust``).
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from maillage.errors import ConfigurationError, InvalidRequest, InvalidScope
from maillage.security.accounts import SignedIn
from maillage.security.keyfiles import private_file
from maillage.security.scopes import ScopeSet
from maillage.security.tokens import IssuerConfig

ALGORITHMS = ("ES256", "RS256")
# What a person's token may carry: their access is decided by the access policy.
USER_SCOPES = ("user/*.cruds", "openid", "fhirUser")


@dataclass(frozen=True)
class SigningKey:
    algorithm: str
    private_key: Any
    kid: str
    public_jwk: dict[str, Any]


def _thumbprint(jwk: dict[str, Any]) -> str:
    """RFC 7638: SHA-256 of the required members, sorted, without whitespace."""
    required = {"EC": ("crv", "kty", "x", "y"), "RSA": ("e", "kty", "n")}[jwk["kty"]]
    canonical = json.dumps({name: jwk[name] for name in required}, separators=(",", ":"))
    digest = hashlib.sha256(canonical.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def _generate(algorithm: str) -> Any:
    if algorithm == "ES256":
        return ec.generate_private_key(ec.SECP256R1())
    return rsa.generate_private_key(public_exponent=65537, key_size=3072)


def load_or_create_key(folder: Path, algorithm: str = "ES256") -> SigningKey:
    """The signing key of ``folder``, generated on first use. A key file others can read
    is refused (it would let anyone who reads it sign tokens)."""
    if algorithm not in ALGORITHMS:
        raise ConfigurationError(f"signing algorithm {algorithm!r}: use one of {ALGORITHMS}")
    path = folder / f"signing-{algorithm.lower()}.pem"
    pem = private_file(
        path,
        lambda: _generate(algorithm).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
        "the signing key",
    )
    try:
        private_key = serialization.load_pem_private_key(pem, password=None)
    except ValueError as error:
        raise ConfigurationError(f"the signing key {path} cannot be read: {error}") from error
    algorithm_class = jwt.algorithms.get_default_algorithms()[algorithm]
    public = algorithm_class.to_jwk(private_key.public_key(), as_dict=True)
    public.pop("key_ops", None)
    kid = _thumbprint(public)
    public.update({"kid": kid, "alg": algorithm, "use": "sig"})
    return SigningKey(algorithm, private_key, kid, public)


@dataclass(frozen=True)
class IssuedToken:
    access_token: str
    expires_in: int
    scope: str

    def response(self) -> dict[str, Any]:
        """The token endpoint's answer (RFC 6749 §5.1)."""
        return {
            "access_token": self.access_token,
            "token_type": "Bearer",
            "expires_in": self.expires_in,
            "scope": self.scope,
        }


class LocalIssuer:
    def __init__(
        self,
        issuer: str,
        audience: str,
        key: SigningKey,
        *,
        lifetime_s: int = 600,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.issuer = issuer
        self.audience = audience
        self.key = key
        self.lifetime_s = lifetime_s
        self.clock = clock

    def jwks(self) -> dict[str, Any]:
        return {"keys": [self.key.public_jwk]}

    def trust(self) -> IssuerConfig:
        """This issuer as ``security.tokens`` trusts it: its public key inline."""
        return IssuerConfig(
            name="maillage",
            issuer=self.issuer,
            jwks=self.jwks(),
            audiences=(self.audience,),
            algorithms=(self.key.algorithm,),
        )

    def issue(self, who: SignedIn, requested_scope: str | None = None) -> IssuedToken:
        """A token for a signed-in person or service account. A requested scope narrows
        what the account may have; one it may not have is refused (``invalid_scope``)."""
        granted = ScopeSet.parse(who.scopes if who.client else USER_SCOPES)
        if requested_scope:
            try:
                requested = ScopeSet.parse(requested_scope)
            except InvalidRequest as error:
                raise InvalidScope(error.message) from error
            if not granted.covers(requested) or not requested.other <= granted.other:
                raise InvalidScope(f"the scope {requested_scope!r} is more than granted")
            granted = granted.narrowed_to(requested)
        now = int(self.clock())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "sub": who.subject,
            "aud": self.audience,
            "iat": now,
            "nbf": now,
            "exp": now + self.lifetime_s,
            "jti": secrets.token_urlsafe(16),
            "scope": str(granted),
            "roles": [who.role],
            "sites": list(who.sites),
        }
        if who.client:
            claims["client_id"] = who.subject
        if who.practitioner:
            claims["fhirUser"] = who.practitioner
        if who.organisation:
            claims["organization"] = who.organisation
        token = jwt.encode(
            claims,
            self.key.private_key,
            algorithm=self.key.algorithm,
            headers={"kid": self.key.kid, "typ": "at+jwt"},
        )
        return IssuedToken(token, self.lifetime_s, claims["scope"])
