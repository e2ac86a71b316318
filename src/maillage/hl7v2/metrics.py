"""Per-site gateway counters for ``/metrics``, read from the message store.

They come from the table, not from in-process counters: with several HTTP workers the
process that answers ``/metrics`` is not the one running the listener, and every process
sees the same rows. The snapshot is refreshed (asynchronously, at most every
``cache_s``) by the metrics endpoint before it renders; the collector only reads it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

from prometheus_client import REGISTRY
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from maillage.hl7v2.store import MessageStore, SiteCounts

log = logging.getLogger(__name__)


class GatewayMetrics:
    def __init__(self, store: MessageStore, *, cache_s: float = 1.0) -> None:
        self.store = store
        self.cache_s = cache_s
        self.snapshot: list[SiteCounts] = []
        self._taken_at = float("-inf")

    async def refresh(self) -> None:
        # The collector exports the snapshot of the endpoint that is rendering (one per
        # process in production; tests may create several apps).
        _COLLECTOR.source = self
        if time.monotonic() - self._taken_at < self.cache_s:
            return
        try:
            self.snapshot = await self.store.counts()
        except Exception:  # the database is down: /metrics still answers, with old figures
            log.warning("hl7 metrics: counting messages failed", exc_info=True)
            return
        self._taken_at = time.monotonic()


class _GatewayCollector(Collector):
    def __init__(self) -> None:
        self.source: GatewayMetrics | None = None

    def collect(self) -> Iterator[GaugeMetricFamily]:
        families = {
            "received": GaugeMetricFamily(
                "maillage_hl7_received_messages", "HL7 messages stored, by site", labels=["site"]
            ),
            "processed": GaugeMetricFamily(
                "maillage_hl7_processed_messages",
                "HL7 messages processed (converted or ignored with a reason)",
                labels=["site"],
            ),
            "errored": GaugeMetricFamily(
                "maillage_hl7_errored_messages",
                "HL7 messages rejected at receipt or dead-lettered",
                labels=["site"],
            ),
            "dead": GaugeMetricFamily(
                "maillage_hl7_dead_messages", "HL7 messages dead-lettered", labels=["site"]
            ),
            "waiting": GaugeMetricFamily(
                "maillage_hl7_waiting_messages",
                "HL7 messages stored and not processed yet",
                labels=["site"],
            ),
            "lag": GaugeMetricFamily(
                "maillage_hl7_lag_seconds",
                "Age of the oldest HL7 message waiting to be processed",
                labels=["site"],
            ),
        }
        snapshot = self.source.snapshot if self.source is not None else []
        for entry in snapshot:
            label = [entry.site or "unknown"]
            counts = entry.by_status
            values = {
                "received": sum(counts.values()),
                "processed": counts.get("processed", 0) + counts.get("ignored", 0),
                "errored": counts.get("error", 0) + counts.get("dead", 0),
                "dead": counts.get("dead", 0),
                "waiting": counts.get("received", 0),
                "lag": entry.oldest_waiting_s,
            }
            for name, family in families.items():
                family.add_metric(label, float(values[name]))
        yield from families.values()


# Registered once per process: the app may be created several times (tests).
_COLLECTOR = _GatewayCollector()
REGISTRY.register(_COLLECTOR)
