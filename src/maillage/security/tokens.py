"""Access tokens as a resource server sees them: JWTs checked, their claims a RequestContext.

Each trusted issuer (the built-in one, the GHT's IdP, Pro Santé Connect) is an
``IssuerConfig``: its ``iss``, where its keys are (a ``jwks_uri``, the ``jwks_uri`` of its
OpenID configuration, or a JWKS given inline), the algorithms it signs with, the audiences
accepted, and which claims say who, where and what. A token is accepted when its header
names an algorithm allowed for the key its ``kid`` designates (never ``none``, never a
symmetric one), its signature verifies, and its ``iss``, ``aud``, ``exp``, ``nbf`` and
``iat`` hold (with a small leeway). Keys are cached; an unknown ``kid`` refetches them
(at most once per ``min_refresh_s``), then is refused. Every refusal is ``Unauthenticated``.

An issuer whose tokens do not speak the hub's roles and sites (Pro Santé Connect: a
profession code, the FINESS of each place of practice) maps them with ``role_map`` and
``site_map``, read from the claims ``mapped_roles`` and ``mapped_sites`` name; an entry
may start from a shipped ``preset`` (``security/claims.py``, ``data/psc_issuer.json``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import urllib.request
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import jwt
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from maillage.errors import ConfigurationError, Forbidden, Unauthenticated
from maillage.security.claims import first, known_roles, mapped, strings, with_preset
from maillage.security.context import RequestContext
from maillage.security.scopes import ScopeSet

log = logging.getLogger(__name__)

# Asymmetric algorithms only: a JWKS holds public keys, so an HS* header would be the
# algorithm-confusion attack (RFC 8725 §2.1).
_ALGORITHMS_BY_KEY = {
    ("RSA", None): ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512"),
    ("EC", "P-256"): ("ES256",),
    ("EC", "P-384"): ("ES384",),
    ("EC", "P-521"): ("ES512",),
    ("OKP", "Ed25519"): ("EdDSA",),
}
ASYMMETRIC = frozenset(alg for algs in _ALGORITHMS_BY_KEY.values() for alg in algs)
RESERVED_ROLES = frozenset({"system"})
# The national identifier of health professionals (IdNat_PS: RPPS/ADELI-based).
IDNAT_PS_SYSTEM = "urn:oid:1.2.250.1.71.4.2.1"

# How long, and how many, accepted tokens are remembered (TokenValidator.validate).
ACCEPTED_MAX_AGE_S = 60.0
ACCEPTED_MAX_ENTRIES = 10_000

FetchJson = Callable[[str], Awaitable[dict[str, Any]]]


class ClaimNames(BaseModel):
    """Where each part of the context is read: the first claim present wins; a dotted
    name reads inside an object (Keycloak's ``realm_access.roles``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    who: tuple[str, ...] = ("fhirUser", "practitioner", "sub")
    sites: tuple[str, ...] = ("sites", "site")
    roles: tuple[str, ...] = ("roles", "realm_access.roles")
    scopes: tuple[str, ...] = ("scope", "scp")
    organisation: tuple[str, ...] = ("organization", "organisation")
    purpose: tuple[str, ...] = ("purpose_of_use",)
    # Every value at these paths (through lists) is looked up in the issuer's role_map /
    # site_map, and what they give is added to the roles / sites above.
    mapped_roles: tuple[str, ...] = ()
    mapped_sites: tuple[str, ...] = ()


class IssuerConfig(BaseModel):
    """One trusted issuer, as written in ``MAILLAGE_AUTH_ISSUERS_FILE`` (a JSON list)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # A shipped preset the entry starts from ("psc"): see security/claims.py.
    preset: str | None = None
    name: str
    issuer: str
    jwks_uri: str | None = None
    jwks: dict[str, Any] | None = None  # inline {"keys": [...]}
    # None: the hub's own audience (Settings.auth_audience_url).
    audiences: tuple[str, ...] | None = None
    algorithms: tuple[str, ...] = ("RS256", "PS256", "ES256")
    claims: ClaimNames = Field(default_factory=ClaimNames)
    # A ``who`` that is not a FHIR reference is an identifier of this system
    # (``system|value``): Pro Santé Connect's subject is an IdNat_PS.
    who_system: str | None = None
    # Roles given to every user of this issuer when its tokens carry or map none.
    default_roles: tuple[str, ...] = ()
    # A value of the ``mapped_roles`` claims → hub roles (a profession code → physician).
    role_map: dict[str, tuple[str, ...]] = Field(default_factory=dict)
    # A value of the ``mapped_sites`` claims → a hub site (a FINESS number → "CHM").
    site_map: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _apply_preset(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and data.get("preset") is not None:
            return with_preset(data)
        return data

    @model_validator(mode="after")
    def _check(self) -> IssuerConfig:
        bad = [alg for alg in self.algorithms if alg not in ASYMMETRIC]
        if bad:
            raise ValueError(f"algorithms {bad} refused: only {sorted(ASYMMETRIC)}")
        for url in (self.issuer, self.jwks_uri):
            if url is not None and not _secure(url):
                raise ValueError(f"{url} must be https (plain http only on localhost)")
        _check_maps(self)
        return self


def _check_maps(config: IssuerConfig) -> None:
    """Every role an issuer may give is one the access policy knows, and never a reserved
    one; a map has claims to read its keys from: a slip would otherwise give the issuer's
    users nothing, silently."""
    where = f"issuer {config.name!r}"
    given = [
        (f"role_map[{key!r}]", role) for key, roles in config.role_map.items() for role in roles
    ]
    given += [("default_roles", role) for role in config.default_roles]
    for field_name, role in given:
        if role in RESERVED_ROLES:
            raise ValueError(f"{where}: {field_name}: the role {role!r} is reserved to the hub")
        if role not in known_roles():
            raise ValueError(
                f"{where}: {field_name}: unknown role {role!r}; the access policy knows "
                f"{', '.join(sorted(known_roles()))}"
            )
    if config.role_map and not config.claims.mapped_roles:
        raise ValueError(f"{where}: role_map needs claims.mapped_roles (where to read its keys)")
    if config.site_map and not config.claims.mapped_sites:
        raise ValueError(f"{where}: site_map needs claims.mapped_sites (where to read its keys)")
    empty = sorted(key for key, site in config.site_map.items() if not site.strip())
    if empty:
        raise ValueError(f"{where}: site_map gives no site for {empty}")


def _secure(url: str) -> bool:
    parsed = urlparse(url)
    return parsed.scheme == "https" or (
        parsed.scheme == "http" and parsed.hostname in ("localhost", "127.0.0.1", "::1")
    )


def load_issuers(
    path: Path | None, known_sites: Collection[str] | None = None
) -> list[IssuerConfig]:
    """The issuers of the file, or none when unset; a bad file says what to fix, and so
    does a ``site_map`` naming a site the hub does not have (``known_sites``, when given):
    its users would otherwise see nothing of that site, silently."""
    if path is None:
        return []
    issuers = _read_issuers(path)
    if known_sites is not None:
        for config in issuers:
            unknown = sorted(
                (key, site) for key, site in config.site_map.items() if site not in known_sites
            )
            if unknown:
                key, site = unknown[0]
                raise ConfigurationError(
                    f"the issuers file {path}: issuer {config.name!r}: site_map[{key!r}] gives "
                    f"{site!r}, not one of the hub's sites ({', '.join(sorted(known_sites))})"
                )
    return issuers


def _read_issuers(path: Path) -> list[IssuerConfig]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise ConfigurationError(f"cannot read the issuers file {path}: {error}") from error
    except ValueError as error:
        raise ConfigurationError(f"the issuers file {path} is not JSON: {error}") from error
    if not isinstance(data, list):
        raise ConfigurationError(f"the issuers file {path} must hold a JSON list of issuers")
    try:
        return [IssuerConfig.model_validate(item) for item in data]
    except ValidationError as error:
        raise ConfigurationError(f"the issuers file {path}: {error}") from error


async def fetch_json(url: str) -> dict[str, Any]:
    """GET a JSON document (keys, OpenID configuration) off the event loop."""

    def get() -> dict[str, Any]:
        request = urllib.request.Request(url, headers={"Accept": "application/json"})
        with urllib.request.urlopen(request, timeout=5) as response:
            document = json.loads(response.read(1_000_000))
        if not isinstance(document, dict):
            raise ValueError(f"{url} did not answer a JSON object")
        return document

    return await asyncio.to_thread(get)


def allowed_algorithms(jwk: Mapping[str, Any]) -> tuple[str, ...]:
    """The algorithms a JWK may verify: its ``alg`` when it names one, else those of its
    key type and curve; none for a symmetric or encryption key."""
    if jwk.get("use") not in (None, "sig"):
        return ()
    kty = jwk.get("kty")
    curve = None if kty == "RSA" else jwk.get("crv")
    by_type = _ALGORITHMS_BY_KEY.get((str(kty), curve if curve is None else str(curve)), ())
    if "alg" in jwk:
        return (jwk["alg"],) if jwk["alg"] in by_type else ()
    return by_type


@dataclass
class _Key:
    key: Any
    algorithms: tuple[str, ...]


@dataclass
class KeySet:
    """One issuer's verification keys by ``kid``, fetched and refreshed as needed."""

    config: IssuerConfig
    fetch: FetchJson
    max_age_s: float = 3600.0
    min_refresh_s: float = 30.0
    clock: Callable[[], float] = time.monotonic
    _keys: dict[str | None, _Key] = field(default_factory=dict)
    _fetched_at: float | None = None
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def _load(self, document: Mapping[str, Any]) -> None:
        keys: dict[str | None, _Key] = {}
        for jwk in document.get("keys") or ():
            algorithms = tuple(a for a in allowed_algorithms(jwk) if a in self.config.algorithms)
            if not algorithms:
                continue
            try:
                parsed = jwt.PyJWK(dict(jwk), algorithms[0])
            except jwt.PyJWTError as error:
                log.warning(
                    "issuer %s: key %s skipped: %s", self.config.name, jwk.get("kid"), error
                )
                continue
            keys[jwk.get("kid")] = _Key(parsed.key, algorithms)
        self._keys = keys

    async def _refresh(self) -> None:
        if self.config.jwks is not None:
            self._load(self.config.jwks)
            self._fetched_at = self.clock()
            return
        url = self.config.jwks_uri
        try:
            if url is None:
                discovery = await self.fetch(
                    self.config.issuer.rstrip("/") + "/.well-known/openid-configuration"
                )
                url = str(discovery.get("jwks_uri") or "")
                if not _secure(url):
                    raise ValueError(f"its OpenID configuration names no usable jwks_uri ({url!r})")
            self._load(await self.fetch(url))
        except Exception as error:  # a network or format problem: keep the keys we had
            log.warning("issuer %s: keys not refreshed: %s", self.config.name, error)
        self._fetched_at = self.clock()

    async def key_for(self, kid: str | None) -> _Key:
        now = self.clock()
        stale = self._fetched_at is None or now - self._fetched_at > self.max_age_s
        if stale or kid not in self._keys:
            async with self._lock:
                recent = (
                    self._fetched_at is not None
                    and self.clock() - self._fetched_at < self.min_refresh_s
                )
                if stale or (kid not in self._keys and not recent):
                    await self._refresh()
        if kid is None and len(self._keys) == 1:
            return next(iter(self._keys.values()))
        found = self._keys.get(kid)
        if found is None:
            raise Unauthenticated(
                f"the token's key id {_shown(kid)} is not a key of {self.config.name}"
            )
        return found


@dataclass(frozen=True)
class Validated:
    """A token accepted: its claims, and the context they give."""

    claims: dict[str, Any]
    context: RequestContext
    issuer: IssuerConfig


class TokenValidator:
    """Checks bearer tokens against the trusted issuers; ``validate`` is the entry point."""

    def __init__(
        self,
        issuers: Sequence[IssuerConfig],
        *,
        audience: str,
        leeway_s: float = 30.0,
        cache_s: float = 3600.0,
        min_refresh_s: float = 30.0,
        fetch: FetchJson = fetch_json,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.audience = audience
        self.leeway_s = leeway_s
        self._sets = {
            config.issuer: KeySet(
                config, fetch, max_age_s=cache_s, min_refresh_s=min_refresh_s, clock=clock
            )
            for config in issuers
        }
        if len(self._sets) != len(issuers):
            raise ConfigurationError("two trusted issuers share one issuer identifier")
        self._clock = clock
        # Tokens accepted lately: a client sends the same token with each request, and
        # checking its signature again costs more than the read it carries. An entry
        # serves at most ACCEPTED_MAX_AGE_S (a key withdrawn by its issuer stops being
        # trusted soon) and never past the token's expiry.
        self._accepted: OrderedDict[str, tuple[float, Validated]] = OrderedDict()

    @property
    def issuers(self) -> list[IssuerConfig]:
        return [key_set.config for key_set in self._sets.values()]

    async def validate(self, token: str) -> Validated:
        cached = self._accepted.get(token)
        if cached is not None:
            accepted_at, validated = cached
            expiry = validated.claims.get("exp")
            if (
                self._clock() - accepted_at < ACCEPTED_MAX_AGE_S
                and isinstance(expiry, int | float)
                and time.time() < expiry + self.leeway_s
            ):
                return validated
            del self._accepted[token]
        validated = await self._validate(token)
        self._accepted[token] = (self._clock(), validated)
        if len(self._accepted) > ACCEPTED_MAX_ENTRIES:
            self._accepted.popitem(last=False)
        return validated

    async def _validate(self, token: str) -> Validated:
        try:
            header = jwt.get_unverified_header(token)
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError as error:
            raise Unauthenticated("the access token is not a well-formed JWT") from error
        alg = header.get("alg")
        if not isinstance(alg, str) or alg.lower() == "none" or alg not in ASYMMETRIC:
            raise Unauthenticated(f"the token's algorithm {_shown(alg)} is not accepted")
        key_set = self._sets.get(str(unverified.get("iss")))
        if key_set is None:
            raise Unauthenticated(
                f"tokens of issuer {_shown(unverified.get('iss'))} are not accepted"
            )
        config = key_set.config
        kid = header.get("kid")
        key = await key_set.key_for(kid if isinstance(kid, str) else None)
        if alg not in key.algorithms:
            raise Unauthenticated(f"the algorithm {alg} is not allowed for key {_shown(kid)}")
        try:
            claims = jwt.decode(
                token,
                key.key,
                algorithms=[alg],
                audience=list(config.audiences or (self.audience,)),
                issuer=config.issuer,
                leeway=self.leeway_s,
                options={"require": ["exp", "iss", "sub", "aud"]},
            )
        except jwt.ExpiredSignatureError as error:
            raise Unauthenticated("the access token has expired") from error
        except jwt.ImmatureSignatureError as error:
            raise Unauthenticated("the access token is not valid yet (nbf/iat)") from error
        except jwt.InvalidAudienceError as error:
            raise Unauthenticated("the access token is for another audience") from error
        except jwt.InvalidIssuerError as error:
            raise Unauthenticated("the access token's issuer does not match") from error
        except jwt.InvalidSignatureError as error:
            raise Unauthenticated("the access token's signature does not verify") from error
        except jwt.MissingRequiredClaimError as error:
            raise Unauthenticated(f"the access token lacks the {error.claim} claim") from error
        except jwt.PyJWTError as error:
            raise Unauthenticated(f"the access token is refused: {error}") from error
        return Validated(claims, context_from_claims(claims, config), config)


def _shown(value: Any) -> str:
    """A value from the token as an answer or a log line may quote it: short."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _who(value: Any, config: IssuerConfig) -> str:
    text = str(value)
    # A fhirUser is an absolute or relative reference: keep "Practitioner/123".
    for resource_type in ("Practitioner", "PractitionerRole", "Patient", "RelatedPerson"):
        marker = f"{resource_type}/"
        if text.startswith(marker) or f"/{marker}" in text:
            return marker + text.rsplit(marker, 1)[1].strip("/")
    return f"{config.who_system}|{text}" if config.who_system else text


def context_from_claims(claims: Mapping[str, Any], config: IssuerConfig) -> RequestContext:
    """The request context a token's claims give (who, sites, roles, scopes...).

    Roles are those the token names plus those its mapped claims give (``role_map``),
    else the issuer's ``default_roles``; sites are those it names plus those ``site_map``
    gives. A value a map does not list gives nothing."""
    names = config.claims
    who = first(claims, names.who)
    if who is None:
        raise Unauthenticated("the access token names no subject")
    issuer = config.name
    sites = strings(first(claims, names.sites)) | frozenset(
        mapped(claims, names.mapped_sites, config.site_map, what="site value", issuer=issuer)
    )
    given = mapped(claims, names.mapped_roles, config.role_map, what="role value", issuer=issuer)
    roles = strings(first(claims, names.roles)).union(*given) or frozenset(config.default_roles)
    # "system" is the hub's own jobs (RequestContext.system), allowed everything: no
    # token may claim it, nor a map give it (refused at load too).
    roles -= RESERVED_ROLES
    scopes = ScopeSet.parse(strings(first(claims, names.scopes), separator=" "), strict=False)
    organisation = first(claims, names.organisation)
    purpose = first(claims, names.purpose)
    return RequestContext(
        who=_who(who, config),
        site=next(iter(sites)) if len(sites) == 1 else None,
        purpose=str(purpose) if purpose else "TREAT",
        roles=roles,
        sites=sites,
        scopes=scopes.texts,
        organisation=str(organisation) if organisation is not None else None,
        issuer=config.issuer,
    )


def for_site(context: RequestContext, site: str | None) -> RequestContext:
    """The context acting for one of its sites (``X-Maillage-Site``); a site the token
    does not carry is refused (Forbidden), none keeps the context as it is."""
    if site is None or site == context.site:
        return context
    if site not in context.sites:
        raise Forbidden(f"{context.who} may not act for site {site!r}")
    return replace(context, site=site)
