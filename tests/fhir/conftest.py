"""Fixtures of the FHIR REST tests: the hub's store, SQL counts on the test database."""

from __future__ import annotations

from collections.abc import Callable

import psycopg
import pytest

from maillage.fhir.repository import FhirStore
from tests.conftest import RunningHub


@pytest.fixture
def store(hub: RunningHub, clean_database: str) -> FhirStore:
    """The running hub's FhirStore (to swap its access policy in a test)."""
    found = hub.app.state.store
    assert isinstance(found, FhirStore)
    return found


@pytest.fixture
def stored_rows(clean_database: str) -> Callable[[str], int]:
    """Rows in a table of the test database (``resource``, ``resource_version``...)."""

    def count(table: str = "resource") -> int:
        with psycopg.connect(clean_database) as conn:
            row = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
            assert row is not None
            return int(row[0])

    return count
