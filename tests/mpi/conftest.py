"""The patient index's tests talk to the hub as it ships: index on."""

from __future__ import annotations

import pytest

from tests.conftest import RunningHub, _wait_for_definitions


@pytest.fixture
def fhir_base(indexed_hub: RunningHub, clean_database: str) -> str:
    _wait_for_definitions(clean_database)
    return f"{indexed_hub.base_url}/fhir"
