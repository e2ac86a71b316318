"""Sign-in is on by default: the demo provisions accounts once, with random passwords in a
file only its owner can read."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import psycopg

from maillage.demo.accounts import DEMO_CLIENT, DEMO_USERS, provision_demo_accounts
from maillage.settings import Settings


def test_demo_accounts_are_created_once_with_private_random_passwords(
    clean_database: str, tmp_path: Path
) -> None:
    with psycopg.connect(clean_database, autocommit=True) as conn:
        conn.execute("TRUNCATE auth_user, auth_client, auth_code, auth_app")
    settings = Settings(database_url=clean_database, data_dir=tmp_path)
    written = provision_demo_accounts(clean_database, settings)
    assert written is not None
    assert stat.S_IMODE(written.stat().st_mode) == 0o600
    credentials = json.loads(written.read_text())
    assert [u["login"] for u in credentials["users"]] == [u["login"] for u in DEMO_USERS]
    assert credentials["clients"][0]["client_id"] == DEMO_CLIENT
    passwords = {u["password"] for u in credentials["users"]}
    assert len(passwords) == len(DEMO_USERS)  # random, one each
    with psycopg.connect(clean_database) as conn:
        stored = conn.execute("SELECT password_hash FROM auth_user").fetchall()
    assert all(row[0].startswith("$argon2") for row in stored)
    assert not passwords & {row[0] for row in stored}
    # a second start leaves the accounts (and the file) alone
    assert provision_demo_accounts(clean_database, settings) is None
