"""A turn of work every few seconds in the hub's event loop (the search definitions'
refresh, the audit's sealer and anchor publisher): started and stopped with the app, a
failed turn logged and tried again at the next one (the database may be away a while).
The first turn comes after one interval: callers do the first one themselves if needed."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)


class Periodic:
    def __init__(self, name: str, interval_s: float, turn: Callable[[], Awaitable[object]]) -> None:
        self.name = name
        self.interval_s = interval_s
        self.turn = turn
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name=self.name)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                await self.turn()
            except Exception:
                log.warning(
                    "%s: this turn failed, the next one tries again", self.name, exc_info=True
                )
