"""TOTP secrets sealed at rest: the database holds no usable secret, sign-in with the
second factor still works, secrets stored before sealing are sealed at the next sign-in."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import psycopg
import pyotp
import pytest

from maillage.errors import ConfigurationError, Unauthenticated
from maillage.security.accounts import AccountService
from maillage.security.sealing import PREFIX, SecretSeal, UnreadableSecret
from tests.security.conftest import totp_of, with_accounts

PASSWORD = "a synthetic passphrase 77"


async def _enrol(accounts: AccountService) -> str:
    """jdupont, with a TOTP: its provisioning URI."""
    await accounts.add_user("jdupont", PASSWORD, role="physician", sites=["CHM"])
    return await accounts.enroll_totp("jdupont")


def _stored(conninfo: str, login: str) -> tuple[str, int | None]:
    with psycopg.connect(conninfo) as conn:
        row = conn.execute(
            "SELECT totp_secret, totp_last_step FROM auth_user WHERE login = %s", (login,)
        ).fetchone()
    assert row is not None
    return row[0], row[1]


def test_the_key_is_made_once_private_and_refused_when_others_can_read_it(
    tmp_path: Path,
) -> None:
    first = SecretSeal.load_or_create(tmp_path / "keys")
    key_file = tmp_path / "keys" / "totp-seal.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    sealed = first.seal("JBSWY3DPEHPK3PXP", "jdupont")
    # another process of the hub reads the same key
    assert SecretSeal.load_or_create(tmp_path / "keys").open(sealed, "jdupont") == (
        "JBSWY3DPEHPK3PXP"
    )
    os.chmod(key_file, 0o640)
    with pytest.raises(ConfigurationError, match="chmod 600"):
        SecretSeal.load_or_create(tmp_path / "keys")


def test_a_sealed_secret_opens_only_for_its_account_and_key(tmp_path: Path) -> None:
    seal = SecretSeal.load_or_create(tmp_path)
    sealed = seal.seal("JBSWY3DPEHPK3PXP", "jdupont")
    assert sealed.startswith(PREFIX)
    assert "JBSWY3DPEHPK3PXP" not in sealed
    assert seal.seal("JBSWY3DPEHPK3PXP", "jdupont") != sealed  # a nonce each time
    with pytest.raises(UnreadableSecret):
        seal.open(sealed, "mmartin")
    with pytest.raises(UnreadableSecret):
        SecretSeal(os.urandom(32)).open(sealed, "jdupont")


def test_enrolment_stores_it_sealed_and_sign_in_reads_it(
    accounts_database: str, tmp_path: Path
) -> None:
    seal = SecretSeal.load_or_create(tmp_path)

    async def work(accounts: AccountService) -> None:
        await accounts.add_user("jdupont", PASSWORD, role="physician", sites=["CHM"])
        uri = await accounts.enroll_totp("jdupont")
        code = totp_of(uri).now()
        assert (await accounts.authenticate("jdupont", PASSWORD, code)).subject == "jdupont"
        stored, _ = _stored(accounts_database, "jdupont")
        assert stored.startswith(PREFIX)
        assert pyotp.parse_uri(uri).secret not in stored

    with_accounts(accounts_database, work, seal=seal)


def test_a_secret_stored_in_clear_is_sealed_at_the_next_sign_in(
    accounts_database: str, tmp_path: Path
) -> None:
    uri = with_accounts(accounts_database, _enrol)  # a hub from before sealing
    secret = pyotp.parse_uri(uri).secret
    assert _stored(accounts_database, "jdupont")[0] == secret
    code = totp_of(uri).now()

    async def sign_in(accounts: AccountService) -> None:
        await accounts.authenticate("jdupont", PASSWORD, code)
        sealed, last_step = _stored(accounts_database, "jdupont")
        assert sealed.startswith(PREFIX) and secret not in sealed
        assert last_step is not None
        # the code just used stays used: sealing did not forget the last step
        with pytest.raises(Unauthenticated, match="already used"):
            await accounts.authenticate("jdupont", PASSWORD, code)

    with_accounts(accounts_database, sign_in, seal=SecretSeal.load_or_create(tmp_path))


def test_a_secret_this_key_cannot_open_is_refused_without_counting_a_failure(
    accounts_database: str, tmp_path: Path
) -> None:
    uri = with_accounts(accounts_database, _enrol, seal=SecretSeal(os.urandom(32)))

    async def sign_in(accounts: AccountService) -> None:
        for _ in range(4):  # more than the lockout threshold (3)
            with pytest.raises(Unauthenticated, match="enroll its TOTP again"):
                await accounts.authenticate("jdupont", PASSWORD, totp_of(uri).now())

    with_accounts(accounts_database, sign_in, seal=SecretSeal.load_or_create(tmp_path))
    with psycopg.connect(accounts_database) as conn:
        row = conn.execute("SELECT failed_attempts FROM auth_user").fetchone()
    assert row == (0,)
