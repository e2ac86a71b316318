"""The SQL of local accounts: the ``auth_user`` and ``auth_client`` tables (migration 0007).

Counting a failure and locking is one UPDATE, so that two concurrent wrong passwords are
both counted; the clock comes from the caller (``AccountService``), so that tests can move it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from psycopg.rows import class_row

from maillage.errors import Conflict, NotFound
from maillage.storage import Database

_USER_COLUMNS = (
    "login, display_name, password_hash, role, sites, practitioner, organisation,"
    " totp_secret, totp_last_step, enabled, failed_attempts, locked_until, last_login_at"
)
_CLIENT_COLUMNS = "client_id, secret_hash, role, scopes, sites, description, enabled, last_used_at"


@dataclass(frozen=True, slots=True)
class UserRow:
    login: str
    display_name: str | None
    password_hash: str
    role: str
    sites: list[str]
    practitioner: str | None
    organisation: str | None
    totp_secret: str | None
    totp_last_step: int | None
    enabled: bool
    failed_attempts: int
    locked_until: datetime | None
    last_login_at: datetime | None

    @property
    def totp_enrolled(self) -> bool:
        return self.totp_secret is not None


@dataclass(frozen=True, slots=True)
class ClientRow:
    client_id: str
    secret_hash: str
    role: str
    scopes: list[str]
    sites: list[str]
    description: str | None
    enabled: bool
    last_used_at: datetime | None


class AccountStore:
    def __init__(self, database: Database) -> None:
        self.database = database

    async def insert_user(self, user: UserRow) -> None:
        async with self.database.connection() as conn:
            cursor = await conn.execute(
                "INSERT INTO auth_user (login, display_name, password_hash, role, sites,"
                " practitioner, organisation) VALUES (%s, %s, %s, %s, %s, %s, %s)"
                " ON CONFLICT (login) DO NOTHING",
                (
                    user.login,
                    user.display_name,
                    user.password_hash,
                    user.role,
                    user.sites,
                    user.practitioner,
                    user.organisation,
                ),
            )
            if cursor.rowcount == 0:
                raise Conflict(f"a user {user.login!r} already exists")

    async def user(self, login: str) -> UserRow | None:
        async with self.database.connection() as conn:
            cursor = conn.cursor(row_factory=class_row(UserRow))
            await cursor.execute(
                f"SELECT {_USER_COLUMNS} FROM auth_user WHERE login = %s", (login,)
            )
            return await cursor.fetchone()

    async def users(self) -> list[UserRow]:
        async with self.database.connection() as conn:
            cursor = conn.cursor(row_factory=class_row(UserRow))
            await cursor.execute(f"SELECT {_USER_COLUMNS} FROM auth_user ORDER BY login")
            return await cursor.fetchall()

    async def _update_user(self, login: str, assignments: str, values: tuple[object, ...]) -> None:
        async with self.database.connection() as conn:
            cursor = await conn.execute(
                f"UPDATE auth_user SET {assignments}, updated_at = now() WHERE login = %s",
                (*values, login),
            )
            if cursor.rowcount == 0:
                raise NotFound(f"no user {login!r}")

    async def set_enabled(self, login: str, enabled: bool) -> None:
        # Enabling again also clears a lockout.
        await self._update_user(
            login,
            "enabled = %s, failed_attempts = 0, locked_until = NULL",
            (enabled,),
        )

    async def set_password(self, login: str, password_hash: str) -> None:
        await self._update_user(login, "password_hash = %s", (password_hash,))

    async def set_totp(self, login: str, secret: str | None) -> None:
        await self._update_user(login, "totp_secret = %s, totp_last_step = NULL", (secret,))

    async def reseal_totp(self, login: str, sealed: str) -> None:
        """The same secret, sealed: its last used step stays (no code is usable twice)."""
        await self._update_user(login, "totp_secret = %s", (sealed,))

    async def record_failure(
        self, login: str, *, now: datetime, threshold: int, duration: timedelta
    ) -> datetime | None:
        """Count a failed sign-in; at ``threshold`` in a row, lock until ``now + duration``
        and start counting again. Returns the lock's end when this failure locked."""
        async with self.database.connection() as conn:
            cursor = await conn.execute(
                "UPDATE auth_user SET"
                " locked_until = CASE WHEN failed_attempts + 1 >= %(threshold)s"
                "   THEN %(until)s ELSE locked_until END,"
                " failed_attempts = CASE WHEN failed_attempts + 1 >= %(threshold)s"
                "   THEN 0 ELSE failed_attempts + 1 END"
                " WHERE login = %(login)s"
                " RETURNING failed_attempts = 0 AND locked_until = %(until)s",
                {"threshold": threshold, "until": now + duration, "login": login},
            )
            row = await cursor.fetchone()
        return now + duration if row is not None and row[0] else None

    async def record_success(self, login: str, *, now: datetime, totp_step: int | None) -> bool:
        """Reset the failure count; with a TOTP step, accept it only if it is later than
        the last one accepted (False: that code was already used)."""
        async with self.database.connection() as conn:
            cursor = await conn.execute(
                "UPDATE auth_user SET failed_attempts = 0, locked_until = NULL,"
                " last_login_at = %(now)s,"
                " totp_last_step = coalesce(%(step)s, totp_last_step)"
                " WHERE login = %(login)s AND (%(step)s::bigint IS NULL"
                "   OR totp_last_step IS NULL OR totp_last_step < %(step)s)",
                {"now": now, "step": totp_step, "login": login},
            )
            return cursor.rowcount == 1

    async def insert_client(self, client: ClientRow) -> None:
        async with self.database.connection() as conn:
            cursor = await conn.execute(
                "INSERT INTO auth_client (client_id, secret_hash, role, scopes, sites,"
                " description) VALUES (%s, %s, %s, %s, %s, %s)"
                " ON CONFLICT (client_id) DO NOTHING",
                (
                    client.client_id,
                    client.secret_hash,
                    client.role,
                    client.scopes,
                    client.sites,
                    client.description,
                ),
            )
            if cursor.rowcount == 0:
                raise Conflict(f"a client {client.client_id!r} already exists")

    async def client(self, client_id: str) -> ClientRow | None:
        async with self.database.connection() as conn:
            cursor = conn.cursor(row_factory=class_row(ClientRow))
            await cursor.execute(
                f"SELECT {_CLIENT_COLUMNS} FROM auth_client WHERE client_id = %s", (client_id,)
            )
            return await cursor.fetchone()

    async def clients(self) -> list[ClientRow]:
        async with self.database.connection() as conn:
            cursor = conn.cursor(row_factory=class_row(ClientRow))
            await cursor.execute(f"SELECT {_CLIENT_COLUMNS} FROM auth_client ORDER BY client_id")
            return await cursor.fetchall()

    async def set_client_enabled(self, client_id: str, enabled: bool) -> None:
        async with self.database.connection() as conn:
            cursor = await conn.execute(
                "UPDATE auth_client SET enabled = %s WHERE client_id = %s", (enabled, client_id)
            )
            if cursor.rowcount == 0:
                raise NotFound(f"no client {client_id!r}")

    async def record_client_use(self, client_id: str, *, now: datetime) -> None:
        async with self.database.connection() as conn:
            await conn.execute(
                "UPDATE auth_client SET last_used_at = %s WHERE client_id = %s", (now, client_id)
            )
