"""`maillage admin`: users, service accounts and tokens against the test database."""

from __future__ import annotations

import asyncio
from pathlib import Path

import psycopg
import pytest
from typer.testing import CliRunner

from maillage.cli.main import app
from maillage.security.issuer import LocalIssuer, load_or_create_key
from maillage.security.sealing import PREFIX, SecretSeal
from maillage.security.tokens import TokenValidator
from tests.security.conftest import totp_of, with_accounts

PASSWORD = "correct horse battery"


@pytest.fixture
def env(accounts_database: str, tmp_path: Path) -> dict[str, str]:
    return {
        "MAILLAGE_DATABASE_URL": accounts_database,
        "MAILLAGE_DATA_DIR": str(tmp_path),
        "MAILLAGE_BASE_URL": "https://hub.ght.example/fhir",
    }


def _admin(env: dict[str, str], *args: str, given: str | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, ["admin", *args], env=env, input=given)
    return result.exit_code, result.stdout, result.stderr


def _add_user(env: dict[str, str], login: str = "jdupont") -> None:
    code, out, err = _admin(
        env,
        "user",
        "add",
        login,
        "--role",
        "physician",
        "--site",
        "CHM",
        "--practitioner",
        "Practitioner/pr-1",
        given=f"{PASSWORD}\n{PASSWORD}\n",
    )
    assert code == 0, out + err
    assert f"user {login} created" in out


def test_user_add_list_disable_enable(env: dict[str, str], accounts_database: str) -> None:
    _add_user(env)
    code, out, _ = _admin(env, "user", "list")
    assert code == 0
    assert "jdupont\tphysician\tCHM\tPractitioner/pr-1\ttotp=no\tenabled" in out
    assert "argon2" not in out
    assert _admin(env, "user", "disable", "jdupont")[0] == 0
    assert "disabled" in _admin(env, "user", "list")[1]
    assert _admin(env, "user", "enable", "jdupont")[0] == 0

    async def sign_in(accounts):  # type: ignore[no-untyped-def]
        return await accounts.authenticate("jdupont", PASSWORD)

    assert with_accounts(accounts_database, sign_in).subject == "jdupont"


def test_passwd_changes_the_password(env: dict[str, str], accounts_database: str) -> None:
    _add_user(env)
    new = "another long passphrase"
    code, out, _ = _admin(env, "user", "passwd", "jdupont", given=f"{new}\n{new}\n")
    assert code == 0 and "password of jdupont changed" in out

    async def sign_in(accounts):  # type: ignore[no-untyped-def]
        return await accounts.authenticate("jdupont", new)

    assert with_accounts(accounts_database, sign_in).subject == "jdupont"


def test_totp_enroll_prints_the_uri_once(env: dict[str, str], accounts_database: str) -> None:
    _add_user(env)
    code, out, err = _admin(env, "user", "totp-enroll", "jdupont")
    assert code == 0 and "not shown again" in err
    totp = totp_of(out.strip())
    assert "totp=yes" in _admin(env, "user", "list")[1]

    async def sign_in(accounts):  # type: ignore[no-untyped-def]
        return await accounts.authenticate("jdupont", PASSWORD, totp.now())

    # sealed under the hub's key (data_dir/keys), which the hub's processes read
    with psycopg.connect(accounts_database) as conn:
        row = conn.execute("SELECT totp_secret FROM auth_user").fetchone()
    assert row is not None and row[0].startswith(PREFIX) and totp.secret not in row[0]
    seal = SecretSeal.load_or_create(Path(env["MAILLAGE_DATA_DIR"]) / "keys")
    assert with_accounts(accounts_database, sign_in, seal=seal).subject == "jdupont"


def test_errors_say_what_to_fix_with_exit_code_1(env: dict[str, str]) -> None:
    code, _, err = _admin(
        env, "user", "add", "jdupont", "--role", "wizard", given=f"{PASSWORD}\n{PASSWORD}\n"
    )
    assert code == 1 and "role 'wizard': one of" in err
    code, _, err = _admin(env, "user", "add", "jdupont", "--role", "nurse", given="short\nshort\n")
    assert code == 1 and "at least 12 characters" in err
    code, _, err = _admin(env, "user", "disable", "nobody")
    assert code == 1 and "no user 'nobody'" in err
    _add_user(env)
    code, _, err = _admin(
        env, "user", "add", "jdupont", "--role", "nurse", given=f"{PASSWORD}\n{PASSWORD}\n"
    )
    assert code == 1 and "already exists" in err
    code, _, err = _admin(env, "client", "add", "portal", "--scope", "user/*.rs")
    assert code == 1 and "system/ scopes only" in err
    code, _, err = _admin(env, "token", "--client", "nobody")
    assert code == 1 and "admin client add" in err


def test_client_add_prints_the_secret_once_and_token(
    env: dict[str, str], accounts_database: str, tmp_path: Path
) -> None:
    code, out, err = _admin(
        env, "client", "add", "lab-interface", "--scope", "system/Observation.cruds"
    )
    assert code == 0 and "not shown again" in err
    secret = out.strip()
    with psycopg.connect(accounts_database) as conn:
        stored = conn.execute("SELECT secret_hash FROM auth_client").fetchone()
    assert stored is not None and secret not in stored[0]
    assert "lab-interface\tsystem/Observation.cruds\tenabled" in _admin(env, "client", "list")[1]

    code, out, err = _admin(env, "token", "--client", "lab-interface")
    assert code == 0, err
    token = out.strip()
    # The token verifies with the key the hub keeps in data_dir/keys.
    issuer = LocalIssuer(
        "https://hub.ght.example/auth",
        "https://hub.ght.example/fhir",
        load_or_create_key(tmp_path / "keys"),
    )
    validator = TokenValidator([issuer.trust()], audience="https://hub.ght.example/fhir")
    context = asyncio.run(validator.validate(token)).context
    assert context.who == "lab-interface" and context.roles == {"service"}
    assert context.scopes == {"system/Observation.cruds"}
