"""The gateway facade the surfaces call: receive (store, then ACK), start and stop the
listener and the processor, list and replay messages.

Store, then ACK: ``receive`` answers AA only after the message's row is committed. A
message already stored (same sender and MSH-10) is answered AA again and not stored
twice. When the store fails (database down, pool exhausted past ``store_timeout_s``),
the answer is AR with HL7 error 207: never AA. Anything rejected is kept as an
``error`` row with the reason, when there are bytes to keep.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from maillage.audit.journal import AuditJournal
from maillage.fhir.repository import FhirStore
from maillage.hl7v2.acks import AckContext, ErrorDetail, ErrorLocation, build_ack
from maillage.hl7v2.framing import Event, Stray
from maillage.hl7v2.group_commit import GroupCommit
from maillage.hl7v2.identity_feed import register_identity
from maillage.hl7v2.intake import Accepted, Rejected, analyze
from maillage.hl7v2.metrics import GatewayMetrics
from maillage.hl7v2.movements import register_movements
from maillage.hl7v2.processing import HandlerRegistry, Processor, RetryPolicy, default_handlers
from maillage.hl7v2.results import register_results
from maillage.hl7v2.server import MllpServer, tls_context
from maillage.hl7v2.sites import SiteRegistry
from maillage.hl7v2.store import MessageStore, MessageSummary, NewMessage
from maillage.settings import Settings
from maillage.storage import Database

log = logging.getLogger(__name__)

STATUSES = ("received", "processed", "ignored", "error", "dead")
NOT_STORED = "the message could not be stored; send it again later"


@dataclass
class ReplayReport:
    requeued: int = 0
    still_rejected: list[int] = field(default_factory=list)
    duplicates: list[int] = field(default_factory=list)


class Gateway:
    def __init__(
        self,
        database: Database,
        sites: SiteRegistry,
        *,
        settings: Settings,
        handlers: HandlerRegistry | None = None,
        journal: AuditJournal | None = None,
    ) -> None:
        self.sites = sites
        self.settings = settings
        self.store = MessageStore(database, timeout_s=settings.hl7_store_timeout_s)
        self.receipts = GroupCommit(self.store)  # the accepted messages' inserts
        self.processor = Processor(
            self.store,
            handlers or default_handlers(),
            sites,
            retry=RetryPolicy(
                max_attempts=settings.hl7_max_attempts,
                base_s=settings.hl7_retry_base_s,
                max_s=settings.hl7_retry_max_s,
            ),
            concurrency=settings.hl7_workers,
            poll_interval_s=settings.hl7_poll_interval_s,
            journal=journal,
        )
        self.metrics = GatewayMetrics(self.store)
        self.server: MllpServer | None = None

    # -- receipt --------------------------------------------------------------------------
    async def receive(self, event: Event, port_site: str | None = None) -> bytes:
        """Store one framed event; the ACK to send back (encoded)."""
        if isinstance(event, Stray):
            rejected = Rejected(
                "AR", ErrorDetail(ErrorLocation("MSH"), 100, event.reason), AckContext()
            )
            await self._keep(event.data, rejected)
            return build_ack("AR", rejected.ack, rejected.error).encode("ascii")
        raw = event.payload
        try:
            intake = analyze(raw, self.sites, port_site=port_site)
        except Exception:  # a bug must not drop the message silently: keep it, answer AR
            log.exception("hl7 receipt: analysing a message failed")
            intake = Rejected(
                "AR", ErrorDetail(ErrorLocation("MSH"), 207, "internal error"), AckContext()
            )
        if isinstance(intake, Rejected):
            await self._keep(raw, intake)
            return _encode(build_ack(intake.ack_code, intake.ack, intake.error), intake.codec)
        return await self._store(raw, intake)

    async def _store(self, raw: bytes, intake: Accepted) -> bytes:
        try:
            stored = await self.receipts.insert(
                NewMessage(
                    raw=raw,
                    status="received",
                    site=intake.site.code,
                    sender=intake.sender,
                    control_id=intake.control_id,
                    idempotency_key=intake.idempotency_key,
                    message_type=intake.message_type,
                    trigger_event=intake.trigger_event,
                    patient_key=intake.patient_key,
                    charset=intake.codec,
                )
            )
        except Exception as error:
            log.error(
                "hl7 message %r from %s not stored (%s): answered AR",
                intake.control_id,
                intake.sender,
                type(error).__name__,
            )
            detail = ErrorDetail(ErrorLocation("MSH", 10), 207, NOT_STORED)
            return _encode(build_ack("AR", intake.ack, detail), intake.codec)
        if stored is None:
            log.info(
                "hl7 message %r from %s already stored: AA again", intake.control_id, intake.sender
            )
        else:
            log.debug(
                "hl7 message %d stored (%s^%s)", stored, intake.message_type, intake.trigger_event
            )
            self.processor.wake()
        return _encode(build_ack("AA", intake.ack), intake.codec)

    async def _keep(self, raw: bytes, rejected: Rejected) -> None:
        """The rejected bytes as an ``error`` row; a failure to keep them is logged (the
        answer is AR/AE either way)."""
        if not raw:
            return
        try:
            stored = await self.store.insert(
                NewMessage(
                    raw=raw,
                    status="error",
                    site=rejected.site,
                    sender=rejected.sender,
                    control_id=rejected.control_id,
                    message_type=rejected.message_type,
                    trigger_event=rejected.trigger_event,
                    charset=rejected.codec,
                    error=str(rejected.error),
                )
            )
            log.info(
                "hl7 message %s rejected (%s): %s",
                stored,
                rejected.ack_code,
                rejected.error.location,
            )
        except Exception as error:
            log.error("a rejected hl7 message could not be kept (%s)", type(error).__name__)

    # -- lifecycle ------------------------------------------------------------------------
    async def start(self, *, listen: bool | None = None) -> None:
        """Start the processor (``hl7_workers`` tasks, maybe none), then the listener unless
        ``listen`` (default: ``hl7_listen``) is False. The listener may fail: port taken."""
        self.processor.start()
        if self.processor.concurrency:
            log.info(
                "hl7 processor: %d tasks converting stored messages", self.processor.concurrency
            )
        if not (self.settings.hl7_listen if listen is None else listen):
            return
        settings = self.settings
        self.server = MllpServer(
            self.receive,
            host=settings.hl7_host,
            port=settings.hl7_port,
            site_ports=self.sites.site_ports(),
            ssl_context=tls_context(
                settings.hl7_tls_cert, settings.hl7_tls_key, settings.hl7_tls_client_ca
            ),
            max_message_bytes=settings.hl7_max_message_bytes,
            partial_timeout_s=settings.hl7_partial_timeout_s,
        )
        try:
            await self.server.start()
        except Exception:
            await self.processor.stop()
            raise

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.stop()
        await self.processor.stop()

    # -- operations -----------------------------------------------------------------------
    async def messages(
        self, *, site: str | None = None, status: str | None = None, limit: int = 50
    ) -> list[MessageSummary]:
        return await self.store.list_messages(site=site, status=status, limit=limit)

    async def replay(
        self,
        *,
        message_id: int | None = None,
        site: str | None = None,
        statuses: tuple[str, ...] = ("error", "dead"),
    ) -> ReplayReport:
        """Back to the processor: the message ``message_id`` (any status), or the ``site``'s
        messages in ``statuses``. A message rejected at receipt is analysed again (the site
        configuration may have been fixed): accepted, it is queued; rejected, its reason is
        updated; if its sender meanwhile resent it and the resend was stored, it is marked
        ignored as a duplicate."""
        report = ReplayReport()
        candidates = await self.store.replay_candidates(
            message_id=message_id, site=site, statuses=statuses
        )
        report.requeued = await self.store.requeue(
            [mid for mid, accepted in candidates if accepted]
        )
        for mid, accepted in candidates:
            if accepted:
                continue
            raw = await self.store.raw_of(mid)
            intake = analyze(raw or b"", self.sites)
            if isinstance(intake, Rejected):
                await self.store.mark(mid, "error", error=str(intake.error), note=None)
                report.still_rejected.append(mid)
                continue
            fields = {
                "site": intake.site.code,
                "sender": intake.sender,
                "control_id": intake.control_id,
                "idempotency_key": intake.idempotency_key,
                "message_type": intake.message_type,
                "trigger_event": intake.trigger_event,
                "patient_key": intake.patient_key,
                "charset": intake.codec,
            }
            if await self.store.reaccept(mid, fields):
                report.requeued += 1
            else:
                await self.store.mark(
                    mid, "ignored", error=None, note="duplicate: the sender's resend was stored"
                )
                report.duplicates.append(mid)
        self.processor.wake()
        return report


def _encode(ack: str, codec: str | None) -> bytes:
    return ack.encode(codec or "ascii", errors="replace")


def build_gateway(
    settings: Settings,
    database: Database,
    sites: SiteRegistry,
    handlers: HandlerRegistry | None = None,
    *,
    fhir: FhirStore | None = None,
) -> Gateway:
    """The gateway; without ``handlers``, the default ones, plus the conversions that
    write FHIR (ORU^R01; the identity feed A28, A31, A47, A40) when given the ``fhir``
    store."""
    if handlers is None:
        handlers = default_handlers()
        if fhir is not None:
            register_results(handlers, fhir)
            register_identity(handlers, fhir)
            register_movements(handlers, fhir)
    # the audit events of the conversions' writes: held per batch, staged before it commits
    journal = fhir.journal if fhir is not None else None
    return Gateway(database, sites, settings=settings, handlers=handlers, journal=journal)
