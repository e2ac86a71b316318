"""The hub's own secret files in ``data_dir/keys/`` (mode 0600 in a 0700 folder): made
once, by whichever process needs one first, and read by every process after."""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from collections.abc import Callable
from pathlib import Path

from maillage.errors import ConfigurationError


def private_file(path: Path, make: Callable[[], bytes], what: str) -> bytes:
    """The bytes of ``path``, written from ``make()`` when it does not exist yet. A file
    others can read is refused (``what`` names it in the message)."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        # Written aside, then linked into place: a process starting at the same moment
        # either sees no file or a whole one, and the first link wins.
        temporary = path.parent / f".{path.name}.{secrets.token_hex(4)}"
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(descriptor, "wb") as handle:
                handle.write(make())
            with contextlib.suppress(FileExistsError):  # another process was first
                os.link(temporary, path)
        finally:
            temporary.unlink(missing_ok=True)
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise ConfigurationError(
            f"{what} {path} can be read by others (mode {mode:o}): chmod 600 it"
        )
    return path.read_bytes()
