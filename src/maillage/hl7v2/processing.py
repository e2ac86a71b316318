"""Processing from the store: handlers by message type, in order per patient, with
retries, a dead-letter state and the reason.

In order per patient means: one message of a patient at a time, in the order their rows
were committed (by id). A sender sends a message after the ACK of the previous one, so
this is its sending order; two senders sending one patient's messages at the same
instant have no order to keep. A dead message no longer holds its patient's next ones;
replaying it later processes it after them.

Each worker task claims a few messages (the oldest waiting one of each patient, locked)
in one transaction, runs each one's handler in a savepoint of that transaction, and
commits the handler's writes together with the message's new status: a message is
either processed with its effects, or still waiting without them. A failure rolls back
the savepoint, counts an attempt and schedules a retry (exponential backoff), or moves
the message to ``dead`` after ``max_attempts`` (at once on a ``PermanentFailure``).

Grouped processing: a handler may also take several messages at once (``many``: the
lab results of a batch share their lookups and writes, a few statements for the group
instead of a few per message). The batch's messages of such a handler and one site go
to it together in one savepoint; it returns the outcome of those it processed and
leaves the others (a message it cannot read, a patient it cannot find) to be processed
alone. The claimed messages are heads of distinct patients, so the order between them
is free. If the group fails as a whole, its savepoint is rolled back and each of its
messages is processed alone, as if the group had not been tried: the outcome of every
message is the one processing it alone gives.

The audit events of a batch's writes are held and staged in one statement before the
batch commits (``AuditJournal.held``); those of a message or group rolled back to its
savepoint are dropped with its writes.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import hl7
import psycopg

from maillage.audit.journal import AuditJournal
from maillage.audit.store import PendingEvent
from maillage.hl7v2 import parsing
from maillage.hl7v2.sites import SiteConfig, SiteRegistry
from maillage.hl7v2.store import ClaimedMessage, MessageStore

log = logging.getLogger(__name__)

A08_REASON = "A08 is not used in France (IHE PAM FR)"
# After the first message of a batch, a message waits at most this long for a lock (the
# patient index's blocking keys, a resource row). Its batch's transaction already holds
# the earlier messages' locks: waiting without limit could deadlock with another worker's
# batch. A message that times out is left waiting, without counting an attempt, and comes
# back in a later batch (where it may be first, and wait as long as needed).
BUSY_LOCK_TIMEOUT_MS = 200
_BUSY = (psycopg.errors.LockNotAvailable, psycopg.errors.DeadlockDetected)
_PARTIAL_BATCH_PAUSE_S = 0.05


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


class MessageContext:
    """What a handler gets: the message (parsed on first use: a handler that ignores it
    does not pay for python-hl7), its site, and the transaction its writes must use
    (committed with the message's status)."""

    def __init__(
        self,
        claimed: ClaimedMessage,
        site: SiteConfig | None,
        conn: psycopg.AsyncConnection,
    ) -> None:
        self.id = claimed.id
        self.site = site
        self.message_type = claimed.message_type or ""
        self.trigger_event = claimed.trigger_event or ""
        self.conn = conn
        self.attempts = claimed.attempts
        self.claimed = claimed

    def release(self) -> None:
        """Forget the parsed message (a tree of thousands of objects): a batch's messages
        stay listed until it commits, and live trees make each pass of the cyclic garbage
        collector longer."""
        self.__dict__.pop("message", None)

    @functools.cached_property
    def message(self) -> hl7.Message:
        """The parsed message; PermanentFailure when it cannot be (retrying will not help)."""
        claimed = self.claimed
        try:
            return parsing.parse(claimed.raw.decode(claimed.charset or "utf-8"))
        except parsing.ParseFailure as error:
            raise PermanentFailure(f"the message cannot be parsed: {error}") from error
        except (UnicodeDecodeError, LookupError) as error:
            raise PermanentFailure(
                f"the message cannot be decoded ({type(error).__name__})"
            ) from error


Handler = Callable[[MessageContext], Awaitable[Outcome]]
# Several messages of one site at once: the outcome of each message it processed, by id.
GroupHandler = Callable[[list[MessageContext]], Awaitable[dict[int, Outcome]]]


async def ignore_a08(context: MessageContext) -> Outcome:
    return ignored(A08_REASON)


async def ignore_unknown(context: MessageContext) -> Outcome:
    # IHE PAM FR (remark 1, ITI-31): an unknown trigger event is ignored on receipt.
    return ignored(
        f"{context.message_type}^{context.trigger_event} is not handled: unknown trigger "
        "events are ignored (IHE PAM FR)"
    )


@dataclass(frozen=True, slots=True)
class Registered:
    handler: Handler
    # A handler that writes runs in a savepoint, so that its failure undoes its writes
    # alone; one that only decides (ignore) needs none, and must not use the connection.
    writes: bool = True
    many: GroupHandler | None = None


class HandlerRegistry:
    """Handlers by (MSH-9.1, MSH-9.2); ``fallback`` for everything else."""

    def __init__(self, fallback: Handler = ignore_unknown, *, fallback_writes: bool = True) -> None:
        self._handlers: dict[tuple[str, str], Registered] = {}
        self.fallback = Registered(fallback, fallback_writes)

    def register(
        self,
        message_type: str,
        trigger_event: str,
        handler: Handler,
        *,
        writes: bool = True,
        many: GroupHandler | None = None,
    ) -> None:
        self._handlers[message_type, trigger_event] = Registered(handler, writes, many)

    def resolve(self, message_type: str, trigger_event: str) -> Registered:
        return self._handlers.get((message_type, trigger_event), self.fallback)


def default_handlers() -> HandlerRegistry:
    """The handlers that need nothing but the message: A08 ignored (as France requires),
    the rest unknown. Conversions that write FHIR register on top (ORU^R01:
    ``service.build_gateway`` with a FHIR store), and so do the identity feed
    (``identity_feed.py``) and the movements."""
    registry = HandlerRegistry(ignore_unknown, fallback_writes=False)
    registry.register("ADT", "A08", ignore_a08, writes=False)
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
        batch: int = 50,
        poll_interval_s: float = 1.0,
        journal: AuditJournal | None = None,
    ) -> None:
        self.store = store
        self.journal = journal
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
            contexts = [self._context(conn, message) for message in claimed]
            done: dict[int, Outcome] = {}
            events: list[PendingEvent] = []
            bounded = False
            for registered, members in self._groups(contexts):
                with self._holding() as held:
                    outcomes = await self._process_group(conn, registered, members)
                if outcomes:
                    done.update(outcomes)
                    events.extend(held)
                await self._bound_lock_waits(conn)
                bounded = True
            for context in contexts:
                if context.id in done:
                    continue
                with self._holding() as held:
                    outcome = await self._process(context)
                context.release()
                if not bounded:
                    await self._bound_lock_waits(conn)
                    bounded = True
                if outcome is not None:
                    done[context.id] = outcome
                    events.extend(held)
            if events and self.journal is not None:
                await self.journal.stage_held(conn, events)
            await self.store.finish(
                conn,
                [(c.id, done[c.id].status, done[c.id].note) for c in contexts if c.id in done],
            )
        return len(claimed)

    def _holding(self) -> contextlib.AbstractContextManager[list[PendingEvent]]:
        """The audit events of one message's (or group's) writes, held (see above)."""
        if self.journal is None:
            return contextlib.nullcontext([])
        return self.journal.held()

    @staticmethod
    async def _bound_lock_waits(conn: psycopg.AsyncConnection) -> None:
        # After the batch's first piece of work (see BUSY_LOCK_TIMEOUT_MS).
        await conn.execute(f"SET LOCAL lock_timeout = '{BUSY_LOCK_TIMEOUT_MS}ms'")

    def _context(self, conn: psycopg.AsyncConnection, claimed: ClaimedMessage) -> MessageContext:
        site = self.sites.get(claimed.site) if claimed.site else None
        return MessageContext(claimed, site, conn)

    def _groups(
        self, contexts: list[MessageContext]
    ) -> list[tuple[Registered, list[MessageContext]]]:
        """The messages a group handler takes together: two or more of one group handler
        (whatever their trigger events) and one site; a first attempt only: a message
        that failed before goes alone, so that its failure is its own."""
        groups: dict[tuple[GroupHandler, str], tuple[Registered, list[MessageContext]]] = {}
        for context in contexts:
            registered = self.handlers.resolve(context.message_type, context.trigger_event)
            if registered.many is None or context.site is None or context.attempts:
                continue
            key = (registered.many, context.site.code)
            groups.setdefault(key, (registered, []))[1].append(context)
        return [group for group in groups.values() if len(group[1]) > 1]

    async def _process_group(
        self,
        conn: psycopg.AsyncConnection,
        registered: Registered,
        members: list[MessageContext],
    ) -> dict[int, Outcome]:
        """The outcomes of the messages the group handler processed; none when the group
        failed (its writes rolled back with its savepoint: each is then processed alone)."""
        assert registered.many is not None
        try:
            async with conn.transaction():
                outcomes = await registered.many(members)
        except Exception as error:
            log.debug(
                "hl7 group of %d messages failed (%s): processed one by one",
                len(members),
                type(error).__name__,
            )
            return {}
        for context in members:
            if context.id in outcomes:
                context.release()
        return outcomes

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
            if taken >= self.batch:
                continue
            if taken:
                # A partial batch: let the next one fill a little, rather than committing
                # (a WAL flush) every few messages while the listener commits each one.
                await asyncio.sleep(_PARTIAL_BATCH_PAUSE_S)
                continue
            self._wakeup.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), self.poll_interval_s)

    async def _process(self, context: MessageContext) -> Outcome | None:
        """The outcome, or None when the message failed (its failure already recorded)."""
        conn, claimed = context.conn, context.claimed
        registered = self.handlers.resolve(context.message_type, context.trigger_event)
        try:
            if registered.writes:
                async with conn.transaction():
                    return await registered.handler(context)
            return await registered.handler(context)
        except _BUSY:
            # rolled back with its savepoint; its next batch takes it again (see above)
            log.debug("hl7 message %d waits for a lock another batch holds", claimed.id)
            return None
        except PermanentFailure as error:
            # the reason is on the row (`maillage hl7 messages`); it may quote the message
            log.warning("hl7 message %d dead-lettered (permanent failure)", claimed.id)
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
        return None
