"""Bulk loading of FHIR NDJSON and Bundles through PostgreSQL COPY."""
