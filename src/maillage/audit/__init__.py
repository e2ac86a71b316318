"""The audit trail: FHIR AuditEvents (IHE BALP) in a hash chain (``service.AuditTrail``).

``http`` (the ``AuditEvent`` search route) is the only module importing the web
framework; it is not imported here.
"""

from maillage.audit.chain import Break, Problem
from maillage.audit.events import Interaction, Outcome
from maillage.audit.service import (
    AUDIT_READERS,
    AuditEvents,
    AuditTrail,
    PatientAccess,
    VerifyReport,
    pending_events,
)

__all__ = [
    "AUDIT_READERS",
    "AuditEvents",
    "AuditTrail",
    "Break",
    "Interaction",
    "Outcome",
    "PatientAccess",
    "Problem",
    "VerifyReport",
    "pending_events",
]
