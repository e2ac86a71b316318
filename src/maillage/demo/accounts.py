"""Demo accounts: sign-in is on by default, so the demo comes with people to sign in as.

Created once, on the first start of a demo hub whose accounts table is empty, with random
passwords written to ``<data dir>/demo-accounts.json`` (readable by its owner only): a
physician and a nurse of the support hospital (CHM), the identitovigilance cell, the
territorial DIM, an administrator, and a service account for feeds and scripts. Nothing
here is a real person.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
from pathlib import Path
from typing import Any

from maillage.demo.resources import DEMO_NURSE, DEMO_PHYSICIAN
from maillage.security.http import account_service
from maillage.settings import Settings
from maillage.storage import Database

log = logging.getLogger(__name__)

DEMO_USERS: tuple[dict[str, Any], ...] = (
    {
        "login": "dr-demo",
        "role": "physician",
        "sites": ["CHM"],
        "practitioner": DEMO_PHYSICIAN,
    },
    {
        "login": "nurse-demo",
        "role": "nurse",
        "sites": ["CHM"],
        "practitioner": DEMO_NURSE,
    },
    {"login": "iv-demo", "role": "identitovigilance", "sites": ["CHM"], "practitioner": None},
    {"login": "dim-demo", "role": "dim", "sites": ["CHM"], "practitioner": None},
    {"login": "admin-demo", "role": "administrator", "sites": ["CHM"], "practitioner": None},
)
DEMO_CLIENT = "demo-feed"


def provision_demo_accounts(conninfo: str, settings: Settings) -> Path | None:
    """Create the demo accounts if there is no account yet; returns the credentials file
    when it wrote one."""
    return asyncio.run(_provision(conninfo, settings))


async def _provision(conninfo: str, settings: Settings) -> Path | None:
    database = Database(conninfo, min_size=1, max_size=2)
    await database.open()
    try:
        accounts = account_service(settings, database)
        if await accounts.users() or await accounts.clients():
            return None
        credentials: dict[str, Any] = {"users": [], "clients": []}
        for user in DEMO_USERS:
            password = secrets.token_urlsafe(12)
            await accounts.add_user(
                user["login"],
                password,
                role=user["role"],
                sites=user["sites"],
                practitioner=user["practitioner"],
            )
            credentials["users"].append({**user, "password": password})
        secret = await accounts.add_client(
            DEMO_CLIENT, scopes=["system/*.cruds"], description="demo feeds and scripts"
        )
        credentials["clients"].append({"client_id": DEMO_CLIENT, "client_secret": secret})
    finally:
        await database.close()
    path = settings.data_dir / "demo-accounts.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as out:
        json.dump(credentials, out, indent=2)
    log.warning("demo accounts created: their passwords are in %s", path)
    return path
