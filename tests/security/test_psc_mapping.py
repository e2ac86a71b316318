"""Pro Santé Connect tokens mapped to the hub's roles and sites: the shipped ``psc`` preset
(profession codes → roles), a GHT's FINESS → site map, the errors a bad map gets at
load, and one physician signed in through PSC reading her site's patient over HTTP.

The claims are PSC-shaped (userinfo names: SubjectNameID, SubjectRole, SubjectRefPro) and
synthetic: IdNat_PS ``8100000000xx``, FINESS of the demo territory (99xxxxxxx)."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

from maillage.demo.sites import SITES
from maillage.errors import ConfigurationError, Forbidden
from maillage.security.accounts import AccountService
from maillage.security.claims import values_at
from maillage.security.tokens import (
    IDNAT_PS_SYSTEM,
    IssuerConfig,
    TokenValidator,
    context_from_claims,
    for_site,
    load_issuers,
)
from maillage.settings import Settings
from tests import factories
from tests.conftest import RunningHub, _wait_for_definitions
from tests.factories import source_identity
from tests.security.conftest import SigningKeys, with_accounts

PSC_ISSUER = "https://auth.psc.example/auth/realms/esante-wallet"
PSC_AUDIENCE = "maillage-ght-val-de-maille"
G15 = "1.2.250.1.213.1.1.5.5"  # the OID SubjectRole's profession codes carry
FINESS_CHM = SITES[0].finess_et
FINESS_CHA = SITES[1].finess_et
FINESS_ELSEWHERE = "990999999"  # a place of practice outside the GHT
SITE_MAP = {FINESS_CHM: "CHM", FINESS_CHA: "CHA"}


def psc_claims(
    idnat: str = "810000000001",
    *,
    practices: tuple[tuple[str, tuple[str, ...]], ...] = (("10", (FINESS_CHM,)),),
    subject_role: bool = True,
    **extra: Any,
) -> dict[str, Any]:
    """A PSC user's claims: one practice per (profession code, FINESS of its activities),
    their codes in SubjectRole too (unless ``subject_role`` is false)."""
    exercices = [
        {
            "codeProfession": code,
            "codeCategorieProfessionnelle": "C",
            "nomDexercice": "SYNTHETIQUE",
            "prenomDexercice": "CAMILLE",
            "activities": [
                {
                    "codeModeExercice": "S",
                    "numeroFinessSite": finess,
                    "numeroFinessetablissementJuridique": "",
                    "raisonSocialeSite": "SITE DE TEST",
                }
                for finess in places
            ],
        }
        for code, places in practices
    ]
    claims: dict[str, Any] = {
        "sub": f"f:00000000-0000-0000-0000-000000000000:{idnat}",
        "preferred_username": idnat,
        "SubjectNameID": idnat,
        "SubjectRefPro": {"codeCivilite": "M", "exercices": exercices},
        "scope": "openid scope_all",
        **extra,
    }
    if subject_role:
        claims["SubjectRole"] = [f"{code}^{G15}" for code, _ in practices]
    return claims


def psc_entry(**changes: Any) -> dict[str, Any]:
    """An issuers-file entry as a GHT writes it: the preset, its issuer, keys, map."""
    return {
        "preset": "psc",
        "name": "psc",
        "issuer": PSC_ISSUER,
        "jwks_uri": f"{PSC_ISSUER}/protocol/openid-connect/certs",
        "audiences": [PSC_AUDIENCE],
        "site_map": SITE_MAP,
        **changes,
    }


def _psc(**changes: Any) -> IssuerConfig:
    return IssuerConfig.model_validate(psc_entry(**changes))


# -- context_from_claims ---------------------------------------------------------------


def test_a_physician_at_a_mapped_finess_gets_the_role_and_the_site() -> None:
    context = context_from_claims(psc_claims(), _psc())
    assert context.who == f"{IDNAT_PS_SYSTEM}|810000000001"
    assert context.roles == {"physician"}
    assert context.site == "CHM" and context.sites == {"CHM"}
    # PSC's own scopes are not SMART scopes: they neither grant nor narrow anything here
    assert context.scopes == frozenset()
    assert context.issuer == PSC_ISSUER


def test_each_profession_of_the_preset_maps_to_its_role() -> None:
    config = _psc()
    for code, role in (("10", "physician"), ("21", "pharmacist"), ("50", "midwife")):
        for subject_role in (True, False):
            claims = psc_claims(practices=((code, (FINESS_CHM,)),), subject_role=subject_role)
            assert context_from_claims(claims, config).roles == {role}
    # SubjectRole alone (a token with no SubjectRefPro) is enough
    nurse = {"SubjectNameID": "810000000002", "SubjectRole": [f"60^{G15}"]}
    assert context_from_claims(nurse, config).roles == {"nurse"}


def test_roles_and_sites_are_the_union_of_what_maps() -> None:
    claims = psc_claims(practices=(("10", (FINESS_CHM,)), ("21", (FINESS_CHA, FINESS_CHM))))
    context = context_from_claims(claims, _psc())
    assert context.roles == {"physician", "pharmacist"}
    assert context.sites == {"CHM", "CHA"} and context.site is None
    assert for_site(context, "CHA").site == "CHA"
    with pytest.raises(Forbidden):
        for_site(context, "CHL")


def test_the_legal_entity_finess_maps_too() -> None:
    claims = psc_claims(practices=(("10", ()),))
    claims["SubjectRefPro"]["exercices"][0]["activities"] = [
        {"numeroFinessSite": "", "numeroFinessetablissementJuridique": SITES[2].finess_ej}
    ]
    config = _psc(site_map={SITES[2].finess_ej: "CHL"})
    assert context_from_claims(claims, config).sites == {"CHL"}


def test_unmapped_values_give_nothing_and_are_logged_at_debug_only(
    caplog: pytest.LogCaptureFixture,
) -> None:
    claims = psc_claims(practices=(("70", (FINESS_ELSEWHERE,)),))  # a physiotherapist
    with caplog.at_level(logging.DEBUG, logger="maillage.security.claims"):
        context = context_from_claims(claims, _psc())
    assert context.roles == frozenset()
    assert context.site is None and context.sites == frozenset()
    unmapped = [record for record in caplog.records if "not mapped" in record.getMessage()]
    assert {record.levelno for record in unmapped} == {logging.DEBUG}
    assert any(FINESS_ELSEWHERE in record.getMessage() for record in unmapped)
    # who the user is never reaches the log, at any level
    assert not any("810000000001" in record.getMessage() for record in caplog.records)


def test_default_roles_apply_only_when_nothing_maps() -> None:
    config = _psc(default_roles=["secretary"])
    physio = psc_claims(practices=(("70", (FINESS_CHM,)),))
    assert context_from_claims(physio, config).roles == {"secretary"}
    assert context_from_claims(psc_claims(), config).roles == {"physician"}


def test_an_entry_extends_or_narrows_the_presets_role_map() -> None:
    config = _psc(role_map={"70": ["nurse"], "10": []})
    physio = psc_claims(practices=(("70", (FINESS_CHM,)),), subject_role=False)
    assert context_from_claims(physio, config).roles == {"nurse"}
    # a profession is keyed twice (codeProfession, and SubjectRole's code^OID): taking it
    # away takes both keys
    assert context_from_claims(psc_claims(), config).roles == {"physician"}
    config = _psc(role_map={"10": [], f"10^{G15}": []})
    assert context_from_claims(psc_claims(), config).roles == frozenset()
    assert config.role_map["21"] == ("pharmacist",)  # the rest of the preset is kept


def test_the_preset_reads_no_hub_roles_sites_or_scopes_from_the_token() -> None:
    claims = psc_claims(roles=["dim"], sites=["CHL"], realm_access={"roles": ["administrator"]})
    context = context_from_claims(claims, _psc())
    assert context.roles == {"physician"} and context.sites == {"CHM"}


def test_the_system_role_never_comes_from_a_map() -> None:
    # A map that slipped past the load checks (built without validation) still gives no
    # "system": the context drops it.
    valid = _psc()
    forged = IssuerConfig.model_construct(
        **{**dict(valid), "role_map": {"10": ("system", "physician")}}
    )
    assert context_from_claims(psc_claims(), forged).roles == {"physician"}


def test_values_at_walks_objects_and_lists() -> None:
    claims = psc_claims(practices=(("10", (FINESS_CHM, "")), ("21", (FINESS_CHA,))))
    path = "SubjectRefPro.exercices.activities.numeroFinessSite"
    assert values_at(claims, path) == [FINESS_CHM, FINESS_CHA]
    assert values_at(claims, "SubjectRefPro.exercices.codeProfession") == ["10", "21"]
    assert values_at(claims, "SubjectRefPro.missing.codeProfession") == []
    assert values_at({"a": [True, None, 7, {"b": "x"}]}, "a") == ["7"]


# -- configuration --------------------------------------------------------------------


def test_an_issuers_file_entry_with_the_preset(tmp_path: Path) -> None:
    path = tmp_path / "issuers.json"
    path.write_text(json.dumps([psc_entry()]))
    (config,) = load_issuers(path)
    assert config.preset == "psc"
    assert config.who_system == IDNAT_PS_SYSTEM
    assert config.claims.who == ("SubjectNameID", "preferred_username")
    assert config.role_map["10"] == ("physician",)
    assert config.role_map[f"10^{G15}"] == ("physician",)
    assert config.site_map == SITE_MAP


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"role_map": {"10": ["surgeon"]}}, r"unknown role 'surgeon'.*physician"),
        ({"role_map": {"10": ["system"]}}, r"'system' is reserved"),
        ({"default_roles": ["chief"]}, r"default_roles: unknown role 'chief'"),
        ({"preset": "franceconnect"}, r"unknown preset 'franceconnect'"),
        ({"site_map": {FINESS_CHM: " "}}, r"site_map gives no site"),
        ({"claims": {"mapped_sites": []}}, r"site_map needs claims.mapped_sites"),
        ({"preset": None, "role_map": {"10": ["nurse"]}}, r"role_map needs claims.mapped_roles"),
    ],
)
def test_a_bad_map_is_refused_at_load(tmp_path: Path, changes: dict[str, Any], words: str) -> None:
    path = tmp_path / "issuers.json"
    path.write_text(json.dumps([psc_entry(**changes)]))
    with pytest.raises(ConfigurationError, match=words):
        load_issuers(path)


# -- through the token validator and the hub -------------------------------------------


def psc_token(keys: SigningKeys, claims: dict[str, Any]) -> str:
    now = int(time.time())
    payload = {"iss": PSC_ISSUER, "aud": PSC_AUDIENCE, "iat": now, "exp": now + 300, **claims}
    return jwt.encode(payload, keys.ec, algorithm="ES256", headers={"kid": "ec-1"})


def test_a_signed_psc_token_gives_the_mapped_context(idp_keys: SigningKeys) -> None:
    config = _psc(jwks_uri=None, jwks=idp_keys.jwks())
    validator = TokenValidator([config], audience="https://hub.example/fhir")
    validated = asyncio.run(validator.validate(psc_token(idp_keys, psc_claims())))
    assert validated.context.roles == {"physician"}
    assert validated.context.site == "CHM"


@pytest.fixture(scope="module")
def psc_hub(
    database_url: str, tmp_path_factory: pytest.TempPathFactory, idp_keys: SigningKeys
) -> Iterator[RunningHub]:
    """The hub with sign-in on (so the access rules too), trusting a PSC issuer whose keys
    are given inline."""
    folder = tmp_path_factory.mktemp("psc")
    issuers = folder / "issuers.json"
    issuers.write_text(json.dumps([psc_entry(jwks_uri=None, jwks=idp_keys.jwks())]))
    settings = Settings(
        database_url=database_url,
        data_dir=folder,
        search_definitions_refresh_s=0.2,
        identity_index_enabled=False,
        access_policy="auto",
        auth_enabled=True,
        auth_issuers_file=issuers,
        jobs_enabled=False,
    )
    running = RunningHub(settings, database_url)
    running.start()
    try:
        yield running
    finally:
        running.stop()


def test_a_psc_physician_reads_the_patient_of_her_site_only(
    psc_hub: RunningHub, clean_database: str, accounts_database: str, idp_keys: SigningKeys
) -> None:
    _wait_for_definitions(clean_database)

    async def register(accounts: AccountService) -> str:
        return await accounts.add_client("psc-feed", scopes=["system/*.cruds"])

    secret = with_accounts(accounts_database, register)
    base = psc_hub.base_url
    answer = httpx.post(
        f"{base}/auth/token",
        data={"grant_type": "client_credentials", "client_id": "psc-feed", "client_secret": secret},
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    feed_headers = {"Authorization": f"Bearer {answer.json()['access_token']}"}

    def token_client(claims: dict[str, Any]) -> httpx.Client:
        headers = {"Authorization": f"Bearer {psc_token(idp_keys, claims)}"}
        return httpx.Client(base_url=f"{base}/fhir", timeout=30, headers=headers)

    with httpx.Client(base_url=f"{base}/fhir", timeout=30, headers=feed_headers) as feed:
        made = [
            feed.post("/Patient", json=source_identity(site=site, birth_name=name))
            for site, name in ((0, "Connectée"), (2, "Ailleurs"))
        ]
        assert [answer.status_code for answer in made] == [201, 201], made[-1].text
        in_care, elsewhere = (answer.json()["id"] for answer in made)
        stay = factories.encounter(
            subject=f"Patient/{in_care}",
            status="in-progress",
            serviceProvider={"reference": f"Organization/{SITES[0].organization_id}"},
        )
        assert feed.post("/Encounter", json=stay).status_code == 201

    with token_client(psc_claims()) as physician:
        assert physician.get(f"/Patient/{in_care}").status_code == 200
        assert physician.get(f"/Patient/{elsewhere}").status_code == 404
    # the same physician practising only outside the GHT has no site: no care relationship
    outside = psc_claims(practices=(("10", (FINESS_ELSEWHERE,)),))
    with token_client(outside) as stranger:
        assert stranger.get(f"/Patient/{in_care}").status_code == 404
    # a profession the preset does not map gets no role at all
    physio = psc_claims("810000000003", practices=(("70", (FINESS_CHM,)),))
    with token_client(physio) as unmapped:
        assert unmapped.get(f"/Patient/{in_care}").status_code == 403


def test_a_site_map_naming_a_site_the_hub_does_not_have_is_refused_at_load(
    tmp_path: Path,
) -> None:
    path = tmp_path / "issuers.json"
    path.write_text(json.dumps([psc_entry(site_map={FINESS_CHM: "CHX"})]))
    hub_sites = [site.code for site in SITES]
    with pytest.raises(ConfigurationError, match=r"site_map\[.*\] gives 'CHX', not one of"):
        load_issuers(path, hub_sites)
    path.write_text(json.dumps([psc_entry(site_map={FINESS_CHM: "CHM"})]))
    (loaded,) = load_issuers(path, hub_sites)
    assert loaded.site_map == {FINESS_CHM: "CHM"}
