"""The FHIR R4 domain: definitions, validation, indexing, the store, search, bundles, HTTP."""
