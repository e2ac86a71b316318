"""The embedded PostgreSQL (pgserver) the hub starts when no database URL is set."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from maillage.errors import ConfigurationError

log = logging.getLogger(__name__)

# PostgreSQL's unix socket path must fit in sockaddr_un (107 bytes).
_MAX_SOCKET_DIR_LENGTH = 90


class EmbeddedPostgres:
    """A PostgreSQL server living in ``data_dir``; started on demand, stopped on close."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir.resolve()
        self._server: Any = None

    def start(self) -> str:
        """Start (or join) the server and return its connection URI."""
        if len(str(self.data_dir)) > _MAX_SOCKET_DIR_LENGTH:
            raise ConfigurationError(
                f"data folder path is too long for PostgreSQL's socket ({self.data_dir}); "
                "choose a shorter --data-dir"
            )
        self.data_dir.mkdir(parents=True, exist_ok=True)
        # pgserver reads XDG_RUNTIME_DIR through platformdirs, which warns when it is
        # unset or not private (0700): give it a private folder beside the data.
        runtime_dir = self.data_dir.parent / "run"
        runtime_dir.mkdir(mode=0o700, exist_ok=True)
        runtime_dir.chmod(0o700)
        os.environ.setdefault("XDG_RUNTIME_DIR", str(runtime_dir))
        import pgserver  # imported late: it is only needed without a database URL

        _forget_dead_handles(self.data_dir)
        log.info("starting embedded PostgreSQL in %s", self.data_dir)
        self._server = pgserver.get_server(str(self.data_dir), cleanup_mode="stop")
        return str(self._server.get_uri())

    def stop(self) -> None:
        if self._server is not None:
            self._server.cleanup()
            self._server = None


def _forget_dead_handles(data_dir: Path) -> None:
    """pgserver stops the server when its last user leaves, counting users in a pid list;
    a hub killed with SIGKILL stays on that list for ever. Drop pids no longer alive."""
    handles = data_dir / ".handle_pids.json"
    if not handles.exists():
        return
    try:
        pids = json.loads(handles.read_text())
    except (OSError, ValueError):
        return
    alive = [pid for pid in pids if isinstance(pid, int) and _is_alive(pid)]
    if alive != pids:
        handles.write_text(json.dumps(alive))


def _is_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class EmbeddedPostgresForTests(EmbeddedPostgres):
    """The same server, in a throw-away folder of the test run."""
