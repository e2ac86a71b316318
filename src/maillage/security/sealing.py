"""TOTP secrets sealed at rest.

A TOTP secret is the second factor itself: whoever reads it from a database dump makes
valid codes. It is stored sealed with AES-256-GCM under a key of the hub's own
(``data_dir/keys/totp-seal.key``, 32 random bytes, made once, 0600: a dump of the
database alone does not open them), the login as associated data (a sealed secret copied
onto another account does not open). A value stored before sealing existed (no
``sealed1:`` prefix) is read as it is, and sealed at its account's next sign-in.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from maillage.errors import ConfigurationError
from maillage.security.keyfiles import private_file

PREFIX = "sealed1:"
_NONCE = 12


class UnreadableSecret(Exception):
    """A sealed value this key cannot open (another hub's key, or another account's)."""


class SecretSeal:
    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise ConfigurationError("a TOTP seal key is 32 bytes")
        self._aead = AESGCM(key)

    @classmethod
    def load_or_create(cls, folder: Path) -> SecretSeal:
        return cls(
            private_file(folder / "totp-seal.key", lambda: os.urandom(32), "the TOTP seal key")
        )

    def seal(self, secret: str, login: str) -> str:
        nonce = os.urandom(_NONCE)
        sealed = self._aead.encrypt(nonce, secret.encode(), login.encode())
        return PREFIX + base64.b64encode(nonce + sealed).decode()

    def open(self, stored: str, login: str) -> str:
        """The secret; a value stored in clear (before sealing) as it is."""
        if not is_sealed(stored):
            return stored
        try:
            raw = base64.b64decode(stored[len(PREFIX) :], validate=True)
            return self._aead.decrypt(raw[:_NONCE], raw[_NONCE:], login.encode()).decode()
        except (InvalidTag, ValueError) as error:
            raise UnreadableSecret(
                "the TOTP secret cannot be opened with this hub's key"
            ) from error


def is_sealed(stored: str) -> bool:
    return stored.startswith(PREFIX)
