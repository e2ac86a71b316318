"""The INSi simulator over the demo territory's register (no national service here)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from maillage.demo.resources import demo_resources
from maillage.national.demo_register import demo_register
from maillage.national.insi import InsiSearchResult, InsiVerification
from maillage.national.insi_simulator import InsiSimulator


class DemoRegisterInsi:
    """The simulator over the demo territory's register, built on first use (reading the
    demo's Patients takes ~0.35 s: not at each worker's start)."""

    def __init__(self) -> None:
        self._simulator: InsiSimulator | None = None

    def _get(self) -> InsiSimulator:
        if self._simulator is None:
            patients = (r for r in demo_resources() if r["resourceType"] == "Patient")
            self._simulator = InsiSimulator(demo_register(patients))
        return self._simulator

    async def search(self, traits: Mapping[str, Any]) -> InsiSearchResult:
        return await self._get().search(traits)

    async def verify(self, matricule: str, oid: str, traits: Mapping[str, Any]) -> InsiVerification:
        return await self._get().verify(matricule, oid, traits)
