"""Placeholder replaced by the demo territory loader."""

from __future__ import annotations


def load_demo_if_empty(conninfo: str) -> None:
    return None
