"""Group commit of the accepted messages: one INSERT and one commit for those that
arrive together.

Store-then-ACK makes every sender wait for its row's commit. A message that finds no
commit in flight is stored at once, alone (no added wait); those that arrive while a
commit is in flight are stored together by the next one, in one statement. Each caller
gets its own row's outcome (its id, or None for a duplicate) only once that statement
has committed, or the error that made it fail (then nothing is stored, and the caller
answers AR, never AA).
"""

from __future__ import annotations

import asyncio

from maillage.hl7v2.store import MessageStore, NewMessage


class GroupCommit:
    def __init__(self, store: MessageStore) -> None:
        self.store = store
        self._waiting: list[tuple[NewMessage, asyncio.Future[int | None]]] = []
        self._committer: asyncio.Task[None] | None = None

    async def insert(self, message: NewMessage) -> int | None:
        """Store one accepted message (with its idempotency key): its id, or None when
        the key was already stored."""
        future: asyncio.Future[int | None] = asyncio.get_running_loop().create_future()
        self._waiting.append((message, future))
        if self._committer is None or self._committer.done():
            self._committer = asyncio.create_task(self._commit_while_waiting())
        return await future

    async def _commit_while_waiting(self) -> None:
        while self._waiting:
            group, self._waiting = self._waiting, []
            try:
                if len(group) == 1:
                    outcomes = [await self.store.insert(group[0][0])]
                else:
                    outcomes = await self.store.insert_many([message for message, _ in group])
            except Exception as error:  # each caller answers AR with it
                for _, future in group:
                    if not future.done():
                        future.set_exception(error)
                continue
            for (_, future), outcome in zip(group, outcomes, strict=True):
                if not future.done():  # a caller gone (its connection closed) takes nothing
                    future.set_result(outcome)
