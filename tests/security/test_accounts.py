"""Local accounts: argon2 hashes, lockout and its release, TOTP, service accounts."""

from __future__ import annotations

from datetime import UTC, datetime

import psycopg
import pytest

from maillage.errors import Conflict, InvalidRequest, NotFound, Unauthenticated
from maillage.security.accounts import AccountService, SignedIn
from tests.security.conftest import Clock, totp_of, with_accounts

PASSWORD = "correct horse battery"


async def _add(accounts: AccountService, login: str = "jdupont", **extra: object) -> None:
    await accounts.add_user(
        login,
        PASSWORD,
        role="physician",
        sites=["CHM", "CHV"],
        practitioner="Practitioner/pr-1",
        **extra,  # type: ignore[arg-type]
    )


def test_the_password_is_stored_as_an_argon2_hash_only(accounts_database: str) -> None:
    with_accounts(accounts_database, _add)
    with psycopg.connect(accounts_database) as conn:
        row = conn.execute("SELECT * FROM auth_user WHERE login = 'jdupont'").fetchone()
        stored = conn.execute("SELECT password_hash FROM auth_user").fetchone()
    assert row is not None and stored is not None
    assert stored[0].startswith("$argon2id$")
    assert not any(PASSWORD in str(value) for value in row)


def test_sign_in_with_the_right_password(accounts_database: str) -> None:
    async def work(accounts: AccountService) -> SignedIn:
        await _add(accounts)
        return await accounts.authenticate("jdupont", PASSWORD)

    who = with_accounts(accounts_database, work)
    assert who == SignedIn(
        subject="jdupont",
        role="physician",
        sites=("CHM", "CHV"),
        practitioner="Practitioner/pr-1",
    )


def test_an_unknown_login_and_a_wrong_password_say_the_same(accounts_database: str) -> None:
    async def work(accounts: AccountService) -> list[str]:
        await _add(accounts)
        messages = []
        for login, password in (("nobody", PASSWORD), ("jdupont", "wrong password!")):
            with pytest.raises(Unauthenticated) as caught:
                await accounts.authenticate(login, password)
            messages.append(caught.value.message)
        return messages

    unknown, wrong = with_accounts(accounts_database, work)
    assert unknown == wrong == "the login or the password is wrong"


def test_lockout_after_n_failures_and_release_after_the_duration(accounts_database: str) -> None:
    clock = Clock()

    async def work(accounts: AccountService) -> None:
        await _add(accounts)
        for _ in range(2):
            with pytest.raises(Unauthenticated, match=r"wrong$"):
                await accounts.authenticate("jdupont", "wrong password!")
        with pytest.raises(Unauthenticated, match="now locked until"):
            await accounts.authenticate("jdupont", "wrong password!")
        # Locked: even the right password is refused, until the duration has passed.
        with pytest.raises(Unauthenticated, match="locked until"):
            await accounts.authenticate("jdupont", PASSWORD)
        clock.advance(599)
        with pytest.raises(Unauthenticated, match="locked until"):
            await accounts.authenticate("jdupont", PASSWORD)
        clock.advance(2)
        assert (await accounts.authenticate("jdupont", PASSWORD)).subject == "jdupont"

    with_accounts(accounts_database, work, clock=clock, threshold=3, duration_s=600)


def test_a_success_resets_the_count(accounts_database: str) -> None:
    async def work(accounts: AccountService) -> None:
        await _add(accounts)
        for _ in range(2):
            with pytest.raises(Unauthenticated):
                await accounts.authenticate("jdupont", "wrong password!")
        await accounts.authenticate("jdupont", PASSWORD)
        for _ in range(2):
            with pytest.raises(Unauthenticated, match=r"wrong$"):
                await accounts.authenticate("jdupont", "wrong password!")

    with_accounts(accounts_database, work, threshold=3)


def test_enable_releases_a_lockout_and_disable_refuses(accounts_database: str) -> None:
    async def work(accounts: AccountService) -> None:
        await _add(accounts)
        for _ in range(3):
            with pytest.raises(Unauthenticated):
                await accounts.authenticate("jdupont", "wrong password!")
        await accounts.set_enabled("jdupont", True)
        await accounts.authenticate("jdupont", PASSWORD)
        await accounts.set_enabled("jdupont", False)
        with pytest.raises(Unauthenticated, match="disabled"):
            await accounts.authenticate("jdupont", PASSWORD)

    with_accounts(accounts_database, work, threshold=3)


def test_totp_required_once_enrolled(accounts_database: str) -> None:
    clock = Clock()

    async def work(accounts: AccountService) -> None:
        await _add(accounts)
        uri = await accounts.enroll_totp("jdupont")
        assert uri.startswith("otpauth://totp/Maillage:jdupont?secret=")
        totp = totp_of(uri)
        with pytest.raises(Unauthenticated, match="TOTP code is missing or wrong"):
            await accounts.authenticate("jdupont", PASSWORD)
        with pytest.raises(Unauthenticated, match="TOTP code is missing or wrong"):
            await accounts.authenticate("jdupont", PASSWORD, "000000")
        # A wrong TOTP with a wrong password: nothing says which was wrong.
        with pytest.raises(Unauthenticated, match="locked"):
            await accounts.authenticate("jdupont", "wrong password!", totp.at(clock.now))
        await accounts.set_enabled("jdupont", True)
        code = totp.at(clock.now)
        assert (await accounts.authenticate("jdupont", PASSWORD, code)).subject == "jdupont"
        # A code is good once: replayed within its 30 s, it is refused.
        with pytest.raises(Unauthenticated, match="already used"):
            await accounts.authenticate("jdupont", PASSWORD, code)
        clock.advance(30)
        await accounts.authenticate("jdupont", PASSWORD, totp.at(clock.now))

    with_accounts(accounts_database, work, clock=clock, threshold=3)


@pytest.mark.parametrize(
    ("login", "password", "role", "words"),
    [
        ("Jean Dupont", PASSWORD, "physician", "login"),
        ("jdupont", "short", "physician", "12 characters"),
        ("jdupont", PASSWORD, "wizard", "role 'wizard'"),
        ("jdupont", PASSWORD, "service", "service accounts"),
    ],
)
def test_user_checks_say_what_to_fix(
    accounts_database: str, login: str, password: str, role: str, words: str
) -> None:
    async def work(accounts: AccountService) -> None:
        await accounts.add_user(login, password, role=role)

    with pytest.raises(InvalidRequest, match=words):
        with_accounts(accounts_database, work)


def test_duplicates_and_unknown_users(accounts_database: str) -> None:
    async def work(accounts: AccountService) -> None:
        await _add(accounts)
        with pytest.raises(Conflict):
            await _add(accounts)
        with pytest.raises(NotFound):
            await accounts.set_enabled("nobody", False)
        with pytest.raises(NotFound):
            await accounts.enroll_totp("nobody")

    with_accounts(accounts_database, work)


def test_service_accounts(accounts_database: str) -> None:
    async def work(accounts: AccountService) -> None:
        secret = await accounts.add_client(
            "lab-interface", scopes=["system/Observation.cruds", "system/Patient.rs"]
        )
        assert len(secret) >= 40
        who = await accounts.authenticate_client("lab-interface", secret)
        assert who.client and who.role == "service"
        assert set(who.scopes) == {"system/Observation.cruds", "system/Patient.rs"}
        with pytest.raises(Unauthenticated, match="id or secret is wrong"):
            await accounts.authenticate_client("lab-interface", secret + "x")
        with pytest.raises(Unauthenticated, match="id or secret is wrong"):
            await accounts.authenticate_client("nobody", secret)
        with pytest.raises(InvalidRequest, match="system/ scopes only"):
            await accounts.add_client("portal", scopes=["user/*.rs"])
        with pytest.raises(InvalidRequest, match="at least one scope"):
            await accounts.add_client("portal", scopes=["openid"])
        await accounts.store.set_client_enabled("lab-interface", False)
        with pytest.raises(Unauthenticated, match="disabled"):
            await accounts.authenticate_client("lab-interface", secret)

    with_accounts(accounts_database, work)
    with psycopg.connect(accounts_database) as conn:
        row = conn.execute("SELECT secret_hash, last_used_at FROM auth_client").fetchone()
    assert row is not None and row[0].startswith("sha256:")
    assert isinstance(row[1], datetime) and row[1].tzinfo is not None
    assert row[1] <= datetime.now(UTC)
