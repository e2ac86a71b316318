"""Access tokens checked as a resource server: signature through the issuer's keys, issuer,
audience, times, algorithms; claims turned into a RequestContext."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from maillage.errors import ConfigurationError, Forbidden, Unauthenticated
from maillage.security.context import RequestContext
from maillage.security.tokens import (
    IDNAT_PS_SYSTEM,
    ClaimNames,
    IssuerConfig,
    TokenValidator,
    allowed_algorithms,
    for_site,
    load_issuers,
)
from tests.security.conftest import AUDIENCE, ISSUER, SigningKeys


class Monotonic:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _validator(
    keys: SigningKeys,
    fetched: list[str] | None = None,
    documents: list[Any] | None = None,
    clock: Monotonic | None = None,
) -> TokenValidator:
    """A validator trusting ``ISSUER``, whose keys come from a fake ``jwks_uri``."""
    served = documents if documents is not None else [keys.jwks()]

    async def fetch(url: str) -> dict[str, Any]:
        if fetched is not None:
            fetched.append(url)
        return served[0] if len(served) == 1 else served.pop(0)

    config = IssuerConfig(name="ght", issuer=ISSUER, jwks_uri=f"{ISSUER}/certs")
    return TokenValidator(
        [config], audience=AUDIENCE, leeway_s=30, fetch=fetch, clock=clock or Monotonic()
    )


def _validate(validator: TokenValidator, token: str) -> RequestContext:
    return asyncio.run(validator.validate(token)).context


def _refused(validator: TokenValidator, token: str) -> Unauthenticated:
    with pytest.raises(Unauthenticated) as caught:
        _validate(validator, token)
    assert caught.value.error == "invalid_token"
    return caught.value


def test_a_valid_token_gives_the_context(idp_keys: SigningKeys) -> None:
    context = _validate(_validator(idp_keys), idp_keys.token(organization="FINESS:750000001"))
    assert context.who == "Practitioner/pr-1"
    assert context.site == "CHM" and context.sites == {"CHM"}
    assert context.roles == {"physician"}
    assert context.scopes == {"openid", "fhirUser", "user/*.rs"}
    assert context.organisation == "FINESS:750000001"
    assert context.issuer == ISSUER
    assert context.purpose == "TREAT"


def test_an_rsa_key_verifies_rs256(idp_keys: SigningKeys) -> None:
    token = idp_keys.token(kid="rsa-1", algorithm="RS256")
    assert _validate(_validator(idp_keys), token).who == "Practitioner/pr-1"


def test_expired(idp_keys: SigningKeys) -> None:
    now = int(time.time())
    error = _refused(_validator(idp_keys), idp_keys.token(iat=now - 900, exp=now - 60))
    assert "expired" in error.message


def test_expiry_within_the_leeway_is_accepted(idp_keys: SigningKeys) -> None:
    now = int(time.time())
    assert _validate(_validator(idp_keys), idp_keys.token(iat=now - 600, exp=now - 10))


def test_not_before_in_the_future(idp_keys: SigningKeys) -> None:
    error = _refused(_validator(idp_keys), idp_keys.token(nbf=int(time.time()) + 600))
    assert "not valid yet" in error.message


def test_wrong_issuer(idp_keys: SigningKeys) -> None:
    error = _refused(_validator(idp_keys), idp_keys.token(iss="https://evil.example"))
    assert "issuer" in error.message


def test_wrong_audience(idp_keys: SigningKeys) -> None:
    error = _refused(_validator(idp_keys), idp_keys.token(aud="https://other.example/fhir"))
    assert "audience" in error.message


def test_missing_audience_or_expiry(idp_keys: SigningKeys) -> None:
    _refused(_validator(idp_keys), idp_keys.token(drop=("aud",)))
    _refused(_validator(idp_keys), idp_keys.token(drop=("exp",)))


def test_bad_signature(idp_keys: SigningKeys) -> None:
    forger = SigningKeys()
    error = _refused(_validator(idp_keys), forger.token(kid="ec-1"))
    assert "signature" in error.message


def test_tampered_payload(idp_keys: SigningKeys) -> None:
    header, payload, signature = idp_keys.token().split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["realm_access"] = {"roles": ["administrator"]}
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    _refused(_validator(idp_keys), f"{header}.{forged}.{signature}")


def _unsigned(claims: dict[str, Any], header: dict[str, Any]) -> str:
    def part(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    return f"{part(header)}.{part(claims)}."


def test_alg_none_is_refused(idp_keys: SigningKeys) -> None:
    valid = jwt.decode(idp_keys.token(), options={"verify_signature": False})
    for alg in ("none", "None", "NONE"):
        error = _refused(_validator(idp_keys), _unsigned(valid, {"alg": alg, "kid": "ec-1"}))
        assert "algorithm" in error.message


def test_hmac_with_the_public_key_is_refused(idp_keys: SigningKeys) -> None:
    """The algorithm-confusion attack: HS256 keyed with the published public key."""
    claims = jwt.decode(idp_keys.token(), options={"verify_signature": False})
    public_pem = idp_keys.jwks()["keys"][1]["n"].encode()
    token = jwt.encode(claims, public_pem, algorithm="HS256", headers={"kid": "rsa-1"})
    _refused(_validator(idp_keys), token)


def test_an_algorithm_not_allowed_for_the_key(idp_keys: SigningKeys) -> None:
    # RS256 signed by the RSA key but naming the EC key; PS256 on a key pinned to RS256.
    _refused(_validator(idp_keys), idp_keys.token(kid="ec-1", algorithm="RS256"))
    error = _refused(_validator(idp_keys), idp_keys.token(kid="rsa-1", algorithm="PS256"))
    assert "not allowed for key" in error.message


def test_unknown_key_id_refetches_once_then_refuses(idp_keys: SigningKeys) -> None:
    fetched: list[str] = []
    clock = Monotonic()
    validator = _validator(idp_keys, fetched, clock=clock)
    assert _validate(validator, idp_keys.token())
    assert fetched == [f"{ISSUER}/certs"]
    clock.now += 31
    error = _refused(validator, idp_keys.token(kid="rotated-away"))
    assert "key id" in error.message
    assert len(fetched) == 2
    # Refetched at most once per min_refresh_s (30 s), whatever the kids thrown at it.
    clock.now += 10
    _refused(validator, idp_keys.token(kid="another"))
    assert len(fetched) == 2
    # Past the cache's age, the keys are fetched again anyway.
    clock.now += 3600
    assert _validate(validator, idp_keys.token())
    assert len(fetched) == 3


def test_a_rotated_key_is_found_by_refreshing(idp_keys: SigningKeys) -> None:
    rotated = SigningKeys()
    new_jwks = rotated.jwks()
    new_jwks["keys"][0]["kid"] = "ec-2"
    fetched: list[str] = []
    clock = Monotonic()
    validator = _validator(idp_keys, fetched, [idp_keys.jwks(), new_jwks], clock)
    assert _validate(validator, idp_keys.token())
    clock.now += 60
    assert _validate(validator, rotated.token(kid="ec-2"))
    assert len(fetched) == 2


def test_keys_from_the_openid_configuration(idp_keys: SigningKeys) -> None:
    async def fetch(url: str) -> dict[str, Any]:
        if url.endswith("/.well-known/openid-configuration"):
            return {"issuer": ISSUER, "jwks_uri": f"{ISSUER}/protocol/openid-connect/certs"}
        assert url == f"{ISSUER}/protocol/openid-connect/certs"
        return idp_keys.jwks()

    validator = TokenValidator(
        [IssuerConfig(name="ght", issuer=ISSUER)], audience=AUDIENCE, fetch=fetch
    )
    assert _validate(validator, idp_keys.token()).who == "Practitioner/pr-1"


def test_not_a_jwt() -> None:
    validator = TokenValidator([], audience=AUDIENCE)
    error = _refused(validator, "not-a-token")
    assert "well-formed" in error.message


def test_the_system_role_cannot_be_claimed(idp_keys: SigningKeys) -> None:
    token = idp_keys.token(realm_access={"roles": ["system", "physician"]})
    assert _validate(_validator(idp_keys), token).roles == {"physician"}


def test_pro_sante_connect_mapping(idp_keys: SigningKeys) -> None:
    """An issuer whose subject is a national health-professional identifier, with no
    roles or sites in its tokens (Pro Santé Connect authenticates, it does not authorise)."""
    config = IssuerConfig(
        name="psc",
        issuer=ISSUER,
        jwks=idp_keys.jwks(),
        claims=ClaimNames(who=("preferred_username",), roles=("roles",)),
        who_system=IDNAT_PS_SYSTEM,
        default_roles=("physician",),
    )
    validator = TokenValidator([config], audience=AUDIENCE)
    token = idp_keys.token(
        preferred_username="810002779435", drop=("fhirUser", "sites", "realm_access")
    )
    context = _validate(validator, token)
    assert context.who == f"{IDNAT_PS_SYSTEM}|810002779435"
    assert context.roles == {"physician"}
    assert context.site is None and context.sites == frozenset()


def test_several_sites_leave_the_site_to_choose(idp_keys: SigningKeys) -> None:
    context = _validate(_validator(idp_keys), idp_keys.token(sites=["CHM", "CHV"]))
    assert context.site is None and context.sites == {"CHM", "CHV"}
    assert for_site(context, "CHV").site == "CHV"
    assert for_site(context, None) is context
    with pytest.raises(Forbidden):
        for_site(context, "CHX")


def test_allowed_algorithms_by_key() -> None:
    public = ec.generate_private_key(ec.SECP384R1()).public_key()
    jwk = jwt.algorithms.ECAlgorithm.to_jwk(public, as_dict=True)
    assert allowed_algorithms(jwk) == ("ES384",)
    assert allowed_algorithms({**jwk, "alg": "ES256"}) == ()  # alg disagrees with the curve
    assert allowed_algorithms({"kty": "oct", "k": "c2VjcmV0"}) == ()
    assert allowed_algorithms({**jwk, "use": "enc"}) == ()


def test_issuers_file(tmp_path: Path, idp_keys: SigningKeys) -> None:
    path = tmp_path / "issuers.json"
    path.write_text(
        json.dumps(
            [
                {"name": "ght", "issuer": ISSUER, "jwks_uri": f"{ISSUER}/certs"},
                {"name": "local", "issuer": "http://127.0.0.1:9/idp", "jwks": idp_keys.jwks()},
            ]
        )
    )
    assert [config.name for config in load_issuers(path)] == ["ght", "local"]
    assert load_issuers(None) == []


@pytest.mark.parametrize(
    ("content", "words"),
    [
        ("{not json", "not JSON"),
        ('{"name": "x"}', "JSON list"),
        ('[{"name": "x", "issuer": "http://idp.example"}]', "https"),
        ('[{"name": "x", "issuer": "https://idp.example", "algorithms": ["HS256"]}]', "refused"),
        ('[{"name": "x", "issuer": "https://idp.example", "colour": "blue"}]', "colour"),
    ],
)
def test_a_bad_issuers_file_says_what_to_fix(tmp_path: Path, content: str, words: str) -> None:
    path = tmp_path / "issuers.json"
    path.write_text(content)
    with pytest.raises(ConfigurationError, match=words):
        load_issuers(path)


def test_the_challenge_header() -> None:
    missing = Unauthenticated("sign in", error=None)
    assert missing.www_authenticate() == 'Bearer realm="maillage"'
    expired = Unauthenticated('the "token" expired — now')
    assert expired.www_authenticate() == (
        'Bearer realm="maillage", error="invalid_token", '
        "error_description=\"the 'token' expired ' now\""
    )


def test_a_token_accepted_earlier_is_refused_once_it_expires(idp_keys: SigningKeys) -> None:
    """Accepted tokens are remembered (a client sends one with every request), never past
    their expiry."""
    config = IssuerConfig(name="ght", issuer=ISSUER, jwks=idp_keys.jwks())
    validator = TokenValidator([config], audience=AUDIENCE, leeway_s=0)
    expires = int(time.time()) + 5
    token = idp_keys.token(exp=expires)
    assert _validate(validator, token).who == "Practitioner/pr-1"
    assert _validate(validator, token).who == "Practitioner/pr-1"
    time.sleep(max(0.0, expires - time.time()) + 0.5)
    assert "expired" in _refused(validator, token).message


def test_a_remembered_token_is_checked_again_against_a_withdrawn_key(
    idp_keys: SigningKeys,
) -> None:
    clock = Monotonic()
    without_ec = {"keys": [k for k in idp_keys.jwks()["keys"] if k["kid"] != "ec-1"]}
    validator = _validator(idp_keys, documents=[idp_keys.jwks(), without_ec], clock=clock)
    token = idp_keys.token(kid="ec-1")
    assert _validate(validator, token).who == "Practitioner/pr-1"
    clock.now += 3601  # the issuer's keys are fetched again: ec-1 is gone
    assert "key id" in _refused(validator, token).message
