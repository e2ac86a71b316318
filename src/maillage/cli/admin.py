"""``maillage admin``: local accounts of the built-in issuer, service accounts, tokens.

Passwords are prompted (hidden, typed twice), never taken on the command line; a service
account's secret and a TOTP enrolment are printed once and not kept in clear.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import typer

from maillage.errors import MaillageError
from maillage.security.accounts import AccountService
from maillage.settings import Settings, load_settings

T = TypeVar("T")

admin_app = typer.Typer(
    help="Sign-in administration: users, service accounts, tokens.", no_args_is_help=True
)
user_app = typer.Typer(help="People who sign in with a password (+ TOTP).", no_args_is_help=True)
client_app = typer.Typer(help="Service accounts (OAuth2 client credentials).", no_args_is_help=True)
app_app = typer.Typer(
    help="Apps that sign their users in (OAuth2 authorization code + PKCE).", no_args_is_help=True
)
admin_app.add_typer(user_app, name="user")
admin_app.add_typer(client_app, name="client")
admin_app.add_typer(app_app, name="app")

_DataDir = typer.Option(
    None,
    "--data-dir",
    help="The hub's data folder: embedded PostgreSQL and signing keys (default ./var).",
)
_Password = typer.Option(
    ...,
    prompt=True,
    hide_input=True,
    confirmation_prompt=True,
    help="Prompted (hidden, twice); at least 12 characters.",
)


def _fail(error: MaillageError) -> None:
    typer.secho(f"error: {error.message}", err=True, fg=typer.colors.RED)
    raise typer.Exit(code=1)


def _with_accounts(
    data_dir: Path | None, work: Callable[[AccountService, Settings], Awaitable[T]]
) -> T:
    """Run ``work`` against the hub's database (started if embedded, schema brought up to
    date); a domain error is printed with what to fix, exit code 1."""
    from maillage.cli.main import running_database
    from maillage.security.http import account_service
    from maillage.storage import Database

    settings = load_settings(data_dir=data_dir)

    async def run(conninfo: str) -> T:
        database = Database(conninfo, min_size=1, max_size=2)
        await database.open()
        try:
            return await work(account_service(settings, database), settings)
        finally:
            await database.close()

    try:
        with running_database(settings) as conninfo:
            return asyncio.run(run(conninfo))
    except MaillageError as error:
        _fail(error)
        raise  # unreachable: _fail exits


@user_app.command("add")
def user_add(
    login: str = typer.Argument(..., help="Lowercase login, e.g. jdupont."),
    role: str = typer.Option(..., help="A role of the access rules, e.g. physician, nurse."),
    site: list[str] = typer.Option(
        None, "--site", help="A site the user acts for (repeatable), e.g. CHM."
    ),
    practitioner: str = typer.Option(
        None, help="The user's FHIR reference, e.g. Practitioner/123 (the token's fhirUser)."
    ),
    organisation: str = typer.Option(None, help="The user's organisation (FINESS or id)."),
    name: str = typer.Option(None, help="Display name."),
    password: str = _Password,
    data_dir: Path = _DataDir,
) -> None:
    """Create a user who signs in with a password."""

    async def work(accounts: AccountService, settings: Settings) -> None:
        await accounts.add_user(
            login,
            password,
            role=role,
            sites=site or (),
            practitioner=practitioner,
            organisation=organisation,
            display_name=name,
        )

    _with_accounts(data_dir, work)
    typer.echo(
        f"user {login} created ({role}); enrol a TOTP with `maillage admin user totp-enroll`"
    )


@user_app.command("list")
def user_list(data_dir: Path = _DataDir) -> None:
    """List users: role, sites, TOTP, state (never a hash)."""

    async def work(accounts: AccountService, settings: Settings) -> None:
        users = await accounts.users()
        if not users:
            typer.echo("no users: add one with `maillage admin user add`")
        for user in users:
            state = "enabled" if user.enabled else "disabled"
            if user.locked_until is not None:
                state += f", locked until {user.locked_until:%Y-%m-%d %H:%M}"
            typer.echo(
                f"{user.login}\t{user.role}\t{','.join(user.sites) or '-'}\t"
                f"{user.practitioner or '-'}\ttotp={'yes' if user.totp_enrolled else 'no'}\t{state}"
            )

    _with_accounts(data_dir, work)


def _set_enabled(login: str, enabled: bool, data_dir: Path | None) -> None:
    async def work(accounts: AccountService, settings: Settings) -> None:
        await accounts.set_enabled(login, enabled)

    _with_accounts(data_dir, work)
    typer.echo(f"user {login} {'enabled (and unlocked)' if enabled else 'disabled'}")


@user_app.command("disable")
def user_disable(login: str, data_dir: Path = _DataDir) -> None:
    """Stop a user from signing in (tokens already issued live until they expire)."""
    _set_enabled(login, False, data_dir)


@user_app.command("enable")
def user_enable(login: str, data_dir: Path = _DataDir) -> None:
    """Let a user sign in again; also releases a lockout."""
    _set_enabled(login, True, data_dir)


@user_app.command("passwd")
def user_passwd(login: str, password: str = _Password, data_dir: Path = _DataDir) -> None:
    """Set a user's password."""

    async def work(accounts: AccountService, settings: Settings) -> None:
        await accounts.set_password(login, password)

    _with_accounts(data_dir, work)
    typer.echo(f"password of {login} changed")


@user_app.command("totp-enroll")
def user_totp_enroll(login: str, data_dir: Path = _DataDir) -> None:
    """Give a user a new TOTP secret: prints the otpauth:// URI for their authenticator
    app, once. From then on, signing in needs the code."""

    async def work(accounts: AccountService, settings: Settings) -> str:
        return await accounts.enroll_totp(login)

    uri = _with_accounts(data_dir, work)
    typer.echo(uri)
    typer.echo("give this to the user's authenticator app now: it is not shown again", err=True)


@client_app.command("add")
def client_add(
    client_id: str = typer.Argument(..., help="Lowercase id, e.g. lab-interface."),
    scope: list[str] = typer.Option(
        ..., "--scope", help="A SMART system scope (repeatable), e.g. system/Observation.cruds."
    ),
    site: list[str] = typer.Option(None, "--site", help="A site it acts for (repeatable)."),
    description: str = typer.Option(None, help="What this account is for."),
    data_dir: Path = _DataDir,
) -> None:
    """Register a service account; prints its secret once."""

    async def work(accounts: AccountService, settings: Settings) -> str:
        return await accounts.add_client(
            client_id, scopes=scope, sites=site or (), description=description
        )

    secret = _with_accounts(data_dir, work)
    typer.echo(secret)
    typer.echo(f"the secret of {client_id}: keep it now, it is not shown again", err=True)


@client_app.command("list")
def client_list(data_dir: Path = _DataDir) -> None:
    """List service accounts and their scopes (never a secret)."""

    async def work(accounts: AccountService, settings: Settings) -> None:
        clients = await accounts.clients()
        if not clients:
            typer.echo("no service accounts: add one with `maillage admin client add`")
        for client in clients:
            state = "enabled" if client.enabled else "disabled"
            typer.echo(f"{client.client_id}\t{' '.join(client.scopes)}\t{state}")

    _with_accounts(data_dir, work)


@app_app.command("add")
def app_add(
    client_id: str = typer.Argument(..., help="Lowercase id the app sends, e.g. dossier-web."),
    name: str = typer.Option(..., help="The name the sign-in page shows."),
    redirect_uri: list[str] = typer.Option(
        ...,
        "--redirect-uri",
        help="An exact redirect URI (repeatable): https://, or http://127.0.0.1:PORT/...",
    ),
    data_dir: Path = _DataDir,
) -> None:
    """Register an app (a public client: no secret; PKCE binds its codes)."""
    from maillage.security.authorization import AuthorizationCodes

    async def work(accounts: AccountService, settings: Settings) -> None:
        await AuthorizationCodes(accounts.store.database).add_app(client_id, name, redirect_uri)

    _with_accounts(data_dir, work)
    typer.echo(f"app {client_id} registered; its users sign in at /auth/authorize")


@app_app.command("list")
def app_list(data_dir: Path = _DataDir) -> None:
    """List registered apps and their redirect URIs."""
    from maillage.security.authorization import AuthorizationCodes

    async def work(accounts: AccountService, settings: Settings) -> None:
        apps = await AuthorizationCodes(accounts.store.database).apps()
        if not apps:
            typer.echo("no apps: add one with `maillage admin app add`")
        for app in apps:
            state = "enabled" if app.enabled else "disabled"
            typer.echo(f"{app.client_id}\t{app.name}\t{' '.join(app.redirect_uris)}\t{state}")

    _with_accounts(data_dir, work)


@admin_app.command("token")
def token(
    client: str = typer.Option(..., "--client", help="The service account's client id."),
    scope: str = typer.Option(None, help="Narrower scopes than the account's (space-separated)."),
    data_dir: Path = _DataDir,
) -> None:
    """Print an access token for a service account, signed with the hub's key."""
    from maillage.security.http import local_issuer

    async def work(accounts: AccountService, settings: Settings) -> str:
        who = await accounts.client(client)
        return local_issuer(settings).issue(who, scope).access_token

    typer.echo(_with_accounts(data_dir, work))
