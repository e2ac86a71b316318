"""Bulk writes through PostgreSQL COPY: loading FHIR NDJSON and Bundles, and the patient
index's batch dedupe (``dedupe.py``)."""
