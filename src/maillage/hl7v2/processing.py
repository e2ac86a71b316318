"""Processing from the store: handlers by message type, in order per patient, with
retries, a dead-letter state and the reason.

Each worker task claims a few messages (the oldest waiting one of each patient, locked)
in one transaction, runs each one's handler in a savepoint of that transaction, and
commits the handler's writes together with the message's new status: a message is
either processed with its effects, or still waiting without them. A failure rolls back
the savepoint, counts an attempt and schedules a retry (exponential backoff), or moves
the message to ``dead`` after ``max_attempts`` (at once on a ``PermanentFailure``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import hl7
import psycopg

from maillage.hl7v2 import parsing
from maillage.hl7v2.sites import SiteConfig, SiteRegistry
from maillage.hl7v2.store import ClaimedMessage, MessageStore

log = logging.getLogger(__name__)

A08_REASON = "A08 is not used in France (IHE PAM FR)"


@dataclass(frozen=True, slots=True)
class Outcome:
    """``processed``, or ``ignored`` with the reason recorded on the message."""

    status: str
    note: str | None = None


PROCESSED = Outcome("processed")


def ignored(reason: str) -> Outcome:
    return Outcome("ignored", reason)


class PermanentFailure(Exception):
    """The message can never be processed as it is: dead-lettered without retries."""


@dataclass(frozen=True, slots=True)
class MessageContext:
    """What a handler gets: the parsed message, its site, and the transaction its writes
    must use (committed with the message's status)."""

    id: int
    site: SiteConfig | None
    message_type: str
    trigger_event: str
    message: hl7.Message
    conn: psycopg.AsyncConnection


Handler = Callable[[MessageContext], Awaitable[Outcome]]


async def ignore_a08(context: MessageContext) -> Outcome:
    return ignored(A08_REASON)


async def ignore_unknown(context: MessageContext) -> Outcome:
    # IHE PAM FR (remark 1, ITI-31): an unknown trigger event is ignored on receipt.
    return ignored(
        f"{context.message_type}^{context.trigger_event} is not handled: unknown trigger "
        "events are ignored (IHE PAM FR)"
    )


class HandlerRegistry:
    """Handlers by (MSH-9.1, MSH-9.2); ``fallback`` for everything else."""

    def __init__(self, fallback: Handler = ignore_unknown) -> None:
        self._handlers: dict[tuple[str, str], Handler] = {}
        self.fallback = fallback

    def register(self, message_type: str, trigger_event: str, handler: Handler) -> None:
        self._handlers[message_type, trigger_event] = handler

    def resolve(self, message_type: str, trigger_event: str) -> Handler:
        return self._handlers.get((message_type, trigger_event), self.fallback)


def default_handlers() -> HandlerRegistry:
    """What the gateway does today: A08 ignored (as France requires), the rest unknown.
    The identity (A28, A31, A40...), movement and ORU handlers register here later."""
    registry = HandlerRegistry()
    registry.register("ADT", "A08", ignore_a08)
    return registry


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_attempts: int = 5
    base_s: float = 2.0
    max_s: float = 300.0

    def delay(self, attempts_done: int) -> float:
        return float(min(self.max_s, self.base_s * 2 ** max(0, attempts_done - 1)))


class Processor:
    def __init__(
        self,
        store: MessageStore,
        handlers: HandlerRegistry,
        sites: SiteRegistry,
        *,
        retry: RetryPolicy,
        concurrency: int = 2,
        batch: int = 16,
        poll_interval_s: float = 1.0,
    ) -> None:
        self.store = store
        self.handlers = handlers
        self.sites = sites
        self.retry = retry
        self.concurrency = concurrency
        self.batch = batch
        self.poll_interval_s = poll_interval_s
        self._wakeup = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False

    def wake(self) -> None:
        self._wakeup.set()

    def start(self) -> None:
        self._stopping = False
        self._tasks = [
            asyncio.create_task(self._loop(), name=f"hl7-processor-{n}")
            for n in range(self.concurrency)
        ]

    async def stop(self) -> None:
        """Stop the tasks; a batch in flight rolls back and stays waiting."""
        self._stopping = True
        self._wakeup.set()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []

    async def run_once(self) -> int:
        """Claim and process one batch; how many messages it held."""
        async with self.store.database.transaction() as conn:
            claimed = await self.store.claim(conn, self.batch)
            for message in claimed:
                await self._process(conn, message)
        return len(claimed)

    async def run_until_idle(self, max_batches: int = 10_000) -> int:
        """Process until nothing is due (tests, the CLI); how many messages were taken."""
        total = 0
        for _ in range(max_batches):
            taken = await self.run_once()
            if not taken:
                break
            total += taken
        return total

    async def _loop(self) -> None:
        while not self._stopping:
            try:
                taken = await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception:  # the database went away: try again at the next poll
                log.warning("hl7 processor: claiming messages failed", exc_info=True)
                taken = 0
            if taken:
                continue
            self._wakeup.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), self.poll_interval_s)

    async def _process(self, conn: psycopg.AsyncConnection, claimed: ClaimedMessage) -> None:
        try:
            async with conn.transaction():
                outcome = await self._handle(conn, claimed)
        except PermanentFailure as error:
            log.warning("hl7 message %d dead-lettered: %s", claimed.id, error)
            await self.store.fail(conn, claimed.id, str(error), dead=True, retry_in_s=0)
        except Exception as error:
            attempts = claimed.attempts + 1
            dead = attempts >= self.retry.max_attempts
            reason = f"{type(error).__name__}: {error}"
            if dead:
                reason = f"dead after {attempts} attempts; last error: {reason}"
                log.warning("hl7 message %d dead-lettered after %d attempts", claimed.id, attempts)
            else:
                log.info("hl7 message %d attempt %d failed; retrying", claimed.id, attempts)
            await self.store.fail(
                conn, claimed.id, reason, dead=dead, retry_in_s=self.retry.delay(attempts)
            )
        else:
            await self.store.finish(conn, claimed.id, outcome.status, outcome.note)

    async def _handle(self, conn: psycopg.AsyncConnection, claimed: ClaimedMessage) -> Outcome:
        try:
            text = claimed.raw.decode(claimed.charset or "utf-8")
            message = parsing.parse(text)
        except parsing.ParseFailure as error:
            raise PermanentFailure(f"the message cannot be parsed: {error}") from error
        except (UnicodeDecodeError, LookupError) as error:
            raise PermanentFailure(
                f"the message cannot be decoded ({type(error).__name__})"
            ) from error
        message_type = claimed.message_type or ""
        trigger_event = claimed.trigger_event or ""
        site = self.sites.get(claimed.site) if claimed.site else None
        handler = self.handlers.resolve(message_type, trigger_event)
        context = MessageContext(claimed.id, site, message_type, trigger_event, message, conn)
        return await handler(context)
