"""The demo territory loaded by ``maillage serve --demo`` (``make run``) into an empty hub.

Five fictitious hospitals of one GHT, their sites and units, and the Synthea
sample spread across the sites (``maillage.demo.resources``); the territory
itself is data (``maillage.demo.sites``), documented in ``docs/demo-territory.md``.
"""

from __future__ import annotations

import logging
import time
from typing import Final

import psycopg

from maillage.demo.resources import SiteIpp, demo_patient_sites, demo_resources
from maillage.demo.sites import GHT, SITES, Ght, Site, Unit
from maillage.loading.service import BulkLoader

__all__ = [
    "GHT",
    "SITES",
    "Ght",
    "Site",
    "SiteIpp",
    "Unit",
    "demo_patient_sites",
    "demo_resources",
    "load_demo_if_empty",
]

log = logging.getLogger(__name__)

# Session advisory lock held while checking and loading, so that two hubs started
# together on one empty database do not both load the demo.
_LOCK_KEY: Final = 0x4D41494C4C444D4F  # "MAILLDMO"


def load_demo_if_empty(conninfo: str, *, audit: bool = True) -> bool:
    """Load the demo territory when the database holds no resource at all (audited as
    any bulk load unless ``audit`` is off).

    A database that holds anything (even deleted resources) is left untouched, so
    the demo never mixes with real or user data and a restart never loads twice.
    Returns whether it loaded.
    """
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK_KEY,))
        try:
            row = conn.execute("SELECT EXISTS (SELECT 1 FROM resource)").fetchone()
            if row is not None and row[0]:
                log.info("the database already holds resources: demo territory not loaded")
                return False
            _load(conninfo, audit)
            return True
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_KEY,))


def _load(conninfo: str, audit: bool) -> None:
    log.info(
        "empty database: loading the demo territory (%s, %d sites, Synthea sample)",
        GHT.name,
        len(SITES),
    )
    started = time.perf_counter()
    report = BulkLoader(conninfo, audit=audit).load_resources(demo_resources(), source="demo")
    elapsed = time.perf_counter() - started
    log.info(
        "demo territory loaded in %.1f s: %d resources written, %d unchanged",
        elapsed,
        report.loaded,
        report.unchanged,
    )
    if report.rejected:
        # The messages locate problems in the demo data; they can quote values: debug only.
        log.warning("%d demo resources were rejected", len(report.rejected))
        for rejected in report.rejected:
            log.debug("demo resource rejected: %s: %s", rejected.location, rejected.message)
