"""The FHIR REST surface (Starlette): routing, negotiation, outcome translation."""
