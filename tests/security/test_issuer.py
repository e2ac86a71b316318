"""The built-in issuer: its key on disk, and tokens that security.tokens accepts."""

from __future__ import annotations

import asyncio
import os
import stat
from pathlib import Path

import jwt
import pytest

from maillage.errors import ConfigurationError, InvalidScope, Unauthenticated
from maillage.security.accounts import SignedIn
from maillage.security.issuer import LocalIssuer, load_or_create_key
from maillage.security.tokens import TokenValidator

ISSUER = "http://127.0.0.1:8080/auth"
AUDIENCE = "http://127.0.0.1:8080/fhir"
PERSON = SignedIn(
    subject="jdupont",
    role="physician",
    sites=("CHM",),
    practitioner="Practitioner/pr-1",
    organisation="Organization/chm",
)
SERVICE = SignedIn(
    subject="lab-interface",
    role="service",
    sites=(),
    scopes=("system/Observation.cruds", "system/Patient.rs"),
    client=True,
)


@pytest.fixture
def issuer(tmp_path: Path) -> LocalIssuer:
    return LocalIssuer(ISSUER, AUDIENCE, load_or_create_key(tmp_path / "keys"), lifetime_s=300)


def test_the_key_is_created_once_with_owner_only_permissions(tmp_path: Path) -> None:
    folder = tmp_path / "keys"
    first = load_or_create_key(folder)
    path = folder / "signing-es256.pem"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert list(folder.iterdir()) == [path]
    again = load_or_create_key(folder)
    assert again.kid == first.kid and again.public_jwk == first.public_jwk
    assert "d" not in first.public_jwk  # the published key has no private part
    assert first.public_jwk["alg"] == "ES256" and first.public_jwk["use"] == "sig"


def test_a_key_others_can_read_is_refused(tmp_path: Path) -> None:
    load_or_create_key(tmp_path)
    os.chmod(tmp_path / "signing-es256.pem", 0o644)
    with pytest.raises(ConfigurationError, match="chmod 600"):
        load_or_create_key(tmp_path)


def test_rs256_and_unknown_algorithms(tmp_path: Path) -> None:
    key = load_or_create_key(tmp_path, "RS256")
    assert key.public_jwk["kty"] == "RSA" and key.public_jwk["alg"] == "RS256"
    with pytest.raises(ConfigurationError, match="ES256"):
        load_or_create_key(tmp_path, "HS256")


def _validate(issuer: LocalIssuer, token: str) -> object:
    validator = TokenValidator([issuer.trust()], audience=AUDIENCE)
    return asyncio.run(validator.validate(token))


def test_a_person_s_token_is_accepted_by_the_validator(issuer: LocalIssuer) -> None:
    issued = issuer.issue(PERSON)
    assert issued.expires_in == 300
    header = jwt.get_unverified_header(issued.access_token)
    assert header == {"alg": "ES256", "kid": issuer.key.kid, "typ": "at+jwt"}
    validator = TokenValidator([issuer.trust()], audience=AUDIENCE)
    validated = asyncio.run(validator.validate(issued.access_token))
    context = validated.context
    assert context.who == "Practitioner/pr-1"
    assert context.roles == {"physician"} and context.site == "CHM"
    assert context.scopes == {"user/*.cruds", "openid", "fhirUser"}
    assert context.organisation == "Organization/chm"
    assert validated.claims["sub"] == "jdupont"
    assert validated.claims["exp"] - validated.claims["iat"] == 300


def test_a_service_token_carries_its_scopes_narrowed_on_request(issuer: LocalIssuer) -> None:
    full = issuer.issue(SERVICE)
    assert set(full.scope.split()) == {"system/Observation.cruds", "system/Patient.rs"}
    narrowed = issuer.issue(SERVICE, "system/Observation.rs")
    assert narrowed.scope == "system/Observation.rs"
    validated = TokenValidator([issuer.trust()], audience=AUDIENCE)
    context = asyncio.run(validated.validate(narrowed.access_token)).context
    assert context.who == "lab-interface" and context.roles == {"service"}
    assert context.scopes == {"system/Observation.rs"}


def test_more_scope_than_granted_is_refused(issuer: LocalIssuer) -> None:
    with pytest.raises(InvalidScope, match="more than granted"):
        issuer.issue(SERVICE, "system/Encounter.rs")
    with pytest.raises(InvalidScope, match="more than granted"):
        issuer.issue(PERSON, "system/*.cruds")
    with pytest.raises(InvalidScope):
        issuer.issue(SERVICE, "system/Observation.sr")


def test_an_expired_local_token(tmp_path: Path) -> None:
    key = load_or_create_key(tmp_path)
    past = LocalIssuer(ISSUER, AUDIENCE, key, lifetime_s=60, clock=lambda: 1_000_000.0)
    with pytest.raises(Unauthenticated, match="expired"):
        _validate(past, past.issue(PERSON).access_token)


def test_another_hub_s_key_is_not_trusted(issuer: LocalIssuer, tmp_path: Path) -> None:
    other = LocalIssuer(ISSUER, AUDIENCE, load_or_create_key(tmp_path / "other"))
    with pytest.raises(Unauthenticated, match="key id"):
        _validate(issuer, other.issue(PERSON).access_token)
