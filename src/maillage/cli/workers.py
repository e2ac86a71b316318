"""HTTP worker processes for ``maillage serve --workers N``: one listening socket each.

uvicorn's own multi-worker mode shares one listening socket between its workers: the
worker that wakes first accepts every pending connection, so a burst of keep-alive
connections (a reverse proxy's pool, a load test) can land on one worker while the others
idle (measured: 50 of 50 on one of two workers). Here each worker binds its own socket to
the same address with SO_REUSEPORT, and the kernel spreads new connections across them.

The parent only supervises: it stops every worker on SIGINT/SIGTERM, and stops them all
(exit code 1) when one dies, rather than serving on at reduced capacity unnoticed.
"""

from __future__ import annotations

import logging
import multiprocessing
import signal
import socket
import threading
from types import FrameType

log = logging.getLogger(__name__)

_STOP_TIMEOUT_S = 30.0


def reuse_port_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    return sock


def _worker(host: str, port: int, log_level: str, index: int = 0, count: int = 1) -> None:
    """One worker (a spawned process): the app from the environment, its own socket.

    The HL7 v2 gateway listens in one worker only (one MLLP listener per hub); with two
    workers or more, the other workers convert the stored messages, so that converting
    (Python-bound: one process uses one core) does not take the listener's event loop from
    the ACKs (docs/benchmarks.md) and grows with the workers.
    """
    import os

    import uvicorn

    if count > 1 and index == 0:
        os.environ["MAILLAGE_HL7_WORKERS"] = "0"
    elif index >= 1:
        os.environ["MAILLAGE_HL7_LISTEN"] = "false"

    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    config = uvicorn.Config(
        "maillage.app:create_app_from_env",
        factory=True,
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
    )
    uvicorn.Server(config).run(sockets=[reuse_port_socket(host, port)])


def run_workers(host: str, port: int, count: int, log_level: str) -> int:
    """Run ``count`` workers until a signal or a worker's death; returns an exit code.

    The workers read MAILLAGE_DATABASE_URL from the environment (set by the caller).
    """
    if not hasattr(socket, "SO_REUSEPORT"):
        raise OSError("SO_REUSEPORT is not available on this system; use --workers 1")
    # Bind once here first, so that a port already taken fails now, with a clear error.
    reuse_port_socket(host, port).close()
    context = multiprocessing.get_context("spawn")
    workers = [
        context.Process(
            target=_worker, args=(host, port, log_level, n, count), name=f"maillage-worker-{n}"
        )
        for n in range(count)
    ]
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    code = 0
    try:
        for worker in workers:
            worker.start()
        log.warning("serving on http://%s:%d with %d workers", host, port, count)
        while not stop.is_set():
            dead = [worker for worker in workers if not worker.is_alive()]
            if dead:
                log.error("%s exited with code %s; stopping", dead[0].name, dead[0].exitcode)
                code = 1
                break
            stop.wait(0.5)
    finally:
        for worker in workers:
            if worker.is_alive():
                worker.terminate()  # SIGTERM: uvicorn shuts down gracefully
        for worker in workers:
            worker.join(timeout=_STOP_TIMEOUT_S)
            if worker.is_alive():
                worker.kill()
                worker.join(timeout=5)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return code
