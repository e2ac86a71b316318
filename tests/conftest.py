"""Test harness: a real PostgreSQL, a real hub on a real port, a real FHIR client.

The database is the embedded PostgreSQL (pgserver) by default; set
``MAILLAGE_TEST_DATABASE_URL`` (e.g. ``postgresql://postgres@127.0.0.1:5432/postgres``)
to run the whole suite against a PostgreSQL server instead. Either way a fresh
database is created for the run and dropped after it.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import psycopg
import pytest
import uvicorn
from fhirpy import SyncFHIRClient

from maillage.app import create_app
from maillage.fhir.definitions import REGISTRY
from maillage.settings import Settings
from maillage.storage import EmbeddedPostgresForTests, upgrade

TABLES = (
    "resource",
    "resource_version",
    "sp_token",
    "sp_string",
    "sp_date",
    "sp_number",
    "sp_quantity",
    "sp_uri",
    "sp_reference",
    "job",
    "search_param_pending",
    "mpi_source",
    "mpi_territorial",
    "mpi_candidate",
    "mpi_event",
    "mpi_merge",
    "care_access",
    "care_objection",
    "audit_event",
    "audit_pending",
)


def _with_database(url: str, name: str) -> str:
    conninfo = psycopg.conninfo.conninfo_to_dict(url)
    conninfo["dbname"] = name
    return psycopg.conninfo.make_conninfo("", **conninfo)


@pytest.fixture(scope="session")
def server_url() -> Iterator[str]:
    """A PostgreSQL server: the one named by MAILLAGE_TEST_DATABASE_URL, or an embedded one."""
    external = os.environ.get("MAILLAGE_TEST_DATABASE_URL")
    if external:
        yield external
        return
    folder = Path(tempfile.mkdtemp(prefix="mt-", dir="/tmp"))
    embedded = EmbeddedPostgresForTests(folder / "pg")
    try:
        yield embedded.start()
    finally:
        embedded.stop()


@contextmanager
def fresh_database(server_url: str, prefix: str = "maillage_test") -> Iterator[str]:
    """A new database on the server with the schema applied, dropped afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = _with_database(server_url, name)
    upgrade(url)
    try:
        yield url
    finally:
        with psycopg.connect(server_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def database_url(server_url: str) -> Iterator[str]:
    """The run's database, dropped after the run."""
    with fresh_database(server_url) as url:
        yield url


@pytest.fixture
def clean_database(database_url: str) -> str:
    """The test database, emptied of resources (schema kept)."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        # Custom SearchParameter resources go with the truncation: processes must drop them.
        conn.execute(
            "UPDATE search_definitions SET generation = generation + 1 WHERE EXISTS"
            " (SELECT 1 FROM resource WHERE resource_type = 'SearchParameter')"
        )
        empty_tables(conn)
    return database_url


def emptied(conninfo: str) -> str:
    """``conninfo``, its tables emptied (a module's own database, before each test)."""
    with psycopg.connect(conninfo, autocommit=True) as conn:
        empty_tables(conn)
    return conninfo


def empty_tables(conn: psycopg.Connection, tables: tuple[str, ...] = TABLES) -> None:
    """Empty the tables (autocommit connection), trying again when a running hub's
    background transaction (a job claim, an audit record) took its locks in another
    order: TRUNCATE locks every table at once, and PostgreSQL cancels one side."""
    for attempt in range(5):
        try:
            conn.execute(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY")
            return
        except psycopg.errors.DeadlockDetected:
            if attempt == 4:
                raise
            time.sleep(0.1)


def definitions_generation(database_url: str) -> int:
    with psycopg.connect(database_url, autocommit=True) as conn:
        row = conn.execute("SELECT generation FROM search_definitions").fetchone()
        assert row is not None
        return int(row[0])


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class RunningHub:
    def __init__(self, settings: Settings, conninfo: str) -> None:
        # bound here and handed to the server: a port only probed could be taken by
        # another process before the server binds it
        self.socket = socket.socket()
        self.socket.bind(("127.0.0.1", 0))
        self.port = int(self.socket.getsockname()[1])
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.app = create_app(settings, conninfo)
        config = uvicorn.Config(
            self.app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.socket]}, daemon=True
        )

    def start(self) -> None:
        self.thread.start()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.base_url}/health", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise RuntimeError("the hub did not become healthy within 30 s")

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.socket.close()


def _running_hub(
    database_url: str,
    *,
    identity_index: bool,
    access_policy: str = "allow-all",
    auth_enabled: bool = False,
    jobs: bool = False,
) -> Iterator[RunningHub]:
    settings = Settings(
        database_url=database_url,
        max_body_bytes=1024 * 1024,
        data_dir=Path(tempfile.mkdtemp(prefix="mh-", dir="/tmp")),
        # jobs: quick polls, and a worker taken for dead after 2 s without a heartbeat
        job_poll_interval_s=0.1,
        job_heartbeat_s=0.5,
        job_stale_after_s=2.0,
        search_definitions_refresh_s=0.2,
        identity_index_enabled=identity_index,
        access_policy=access_policy,
        auth_enabled=auth_enabled,
        # one hub of the session runs the background jobs: the others, sharing its
        # database, would claim its tests' jobs under their own access rules
        jobs_enabled=jobs,
    )
    running = RunningHub(settings, database_url)
    running.start()
    try:
        yield running
    finally:
        running.stop()
        shutil.rmtree(settings.exports_path.parent, ignore_errors=True)


@pytest.fixture(scope="session")
def hub(database_url: str) -> Iterator[RunningHub]:
    """The hub as the FHIR store's tests need it: the patient index off, so that a test
    sees exactly the resources it wrote (no golden-record Patients beside them)."""
    yield from _running_hub(database_url, identity_index=False, jobs=True)


@pytest.fixture(scope="session")
def indexed_hub(database_url: str) -> Iterator[RunningHub]:
    """The hub as it ships: every Patient write matched by the patient index."""
    yield from _running_hub(database_url, identity_index=True)


@pytest.fixture(scope="session")
def care_hub(database_url: str) -> Iterator[RunningHub]:
    """The hub with the access rules on (role matrix, care relationships) and its index."""
    yield from _running_hub(database_url, identity_index=True, access_policy="care")


@pytest.fixture(scope="session")
def signed_in_hub(database_url: str) -> Iterator[RunningHub]:
    """The hub with sign-in on (and so the access rules: MAILLAGE_ACCESS_POLICY=auto)."""
    yield from _running_hub(
        database_url, identity_index=True, access_policy="auto", auth_enabled=True
    )


def _wait_for_definitions(database_url: str) -> None:
    # The hub runs in this process: wait until it has dropped a previous test's custom
    # search parameters (it polls their generation).
    wanted = definitions_generation(database_url)
    deadline = time.monotonic() + 10
    while REGISTRY.generation != wanted and time.monotonic() < deadline:
        time.sleep(0.02)


@pytest.fixture
def indexed_base(indexed_hub: RunningHub, clean_database: str) -> str:
    _wait_for_definitions(clean_database)
    return f"{indexed_hub.base_url}/fhir"


@pytest.fixture
def indexed_http(indexed_base: str) -> Iterator[httpx.Client]:
    """Plain HTTP to the hub with its patient index on."""
    with httpx.Client(base_url=indexed_base, timeout=30) as client:
        yield client


@pytest.fixture
def fhir_base(hub: RunningHub, clean_database: str) -> str:
    _wait_for_definitions(clean_database)
    return f"{hub.base_url}/fhir"


@pytest.fixture
def fhir(fhir_base: str) -> SyncFHIRClient:
    """A real FHIR client (fhirpy) talking to the running hub."""
    return SyncFHIRClient(fhir_base)


@pytest.fixture
def http(fhir_base: str) -> Iterator[httpx.Client]:
    """Plain HTTP for the statuses and headers a FHIR client hides."""
    with httpx.Client(base_url=fhir_base, timeout=30) as client:
        yield client
