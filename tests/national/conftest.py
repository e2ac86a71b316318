"""A synthetic register and a real HTTP server carrying only the INSi routes."""

from __future__ import annotations

import datetime as dt
import socket
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from maillage.identity.ins import OID_NIA, OID_NIR_TEST, with_key
from maillage.mpi.insi_http import insi_routes
from maillage.national.insi import InsiIdentity
from maillage.national.insi_simulator import InsiSimulator

# Synthetic people; every matricule is built here with its key (test NIR system).
MARIE = InsiIdentity(
    matricule=with_key("2850375056123"),
    oid=OID_NIR_TEST,
    birth_name="DE LA FONTAINE",
    first_names=("MARIE-HÉLÈNE", "JEANNE"),
    sex="F",
    birth_date=dt.date(1985, 3, 14),
    birthplace="75056",
)
# Twins' elder brother and a homonym born elsewhere: same four search traits.
PAUL_LYON = InsiIdentity(
    matricule=with_key("1920169123045"),
    oid=OID_NIR_TEST,
    birth_name="MARTIN",
    first_names=("PAUL", "ANDRÉ"),
    sex="M",
    birth_date=dt.date(1992, 1, 5),
    birthplace="69123",
)
PAUL_NANTES = InsiIdentity(
    matricule=with_key("1920144109077"),
    oid=OID_NIR_TEST,
    birth_name="MARTIN",
    first_names=("PAUL", "LUCIEN"),
    sex="M",
    birth_date=dt.date(1992, 1, 5),
    birthplace="44109",
)
AMINA = InsiIdentity(
    matricule=with_key("2990399350011"),
    oid=OID_NIA,
    birth_name="BENALI",
    first_names=("AMINA",),
    sex="F",
    birth_date=dt.date(1999, 3, 2),
    birthplace="99350",
)
REGISTER = (MARIE, PAUL_LYON, PAUL_NANTES, AMINA)


def traits_of(identity: InsiIdentity, **changes: object) -> dict[str, object]:
    """The identity's traits as a site would type them, with changes."""
    return {**identity.traits(), **changes}


@pytest.fixture
def simulator() -> InsiSimulator:
    return InsiSimulator(REGISTER)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def _health(_request: object) -> PlainTextResponse:
    return PlainTextResponse("ok")


@pytest.fixture(scope="module")
def served_simulator() -> Iterator[tuple[str, InsiSimulator]]:
    """A real uvicorn server on a free port with the INSi routes over ``REGISTER``."""
    simulator = InsiSimulator(REGISTER)
    app = Starlette(routes=[*insi_routes(simulator), Route("/health", _health)])
    port = _free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            time.sleep(0.05)
    else:
        raise RuntimeError("the INSi test server did not start")
    try:
        yield f"{base}/fhir", simulator
    finally:
        server.should_exit = True
        thread.join(timeout=10)
