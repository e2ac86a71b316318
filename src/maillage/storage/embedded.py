"""The embedded PostgreSQL (pgserver) the hub starts when no database URL is set."""

from __future__ import annotations

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
        # pgserver reads XDG_RUNTIME_DIR through platformdirs and warns when unset.
        os.environ.setdefault("XDG_RUNTIME_DIR", str(self.data_dir.parent))
        import pgserver  # imported late: it is only needed without a database URL

        log.info("starting embedded PostgreSQL in %s", self.data_dir)
        self._server = pgserver.get_server(str(self.data_dir), cleanup_mode="stop")
        return str(self._server.get_uri())

    def stop(self) -> None:
        if self._server is not None:
            self._server.cleanup()
            self._server = None


class EmbeddedPostgresForTests(EmbeddedPostgres):
    """The same server, in a throw-away folder of the test run."""
