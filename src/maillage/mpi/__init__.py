"""The territorial patient index: one patient across the GHT's sites.

A service over the pure matching engine (``maillage.identity``) and the FHIR store:
source identities (a site's Patient, one per IPP) are matched online as they are written
(``PatientIndex``, the store's write hook for Patient) and grouped into territorial
identities (golden-record Patients); the pairs the machine cannot decide wait in a
review queue for the identitovigilance cell. Decision: docs/decisions/0005-patient-index.md
"""

from maillage.mpi.index import PatientIndex, internal_writes
from maillage.mpi.setup import build_patient_index, load_model

__all__ = ["PatientIndex", "build_patient_index", "internal_writes", "load_model"]
