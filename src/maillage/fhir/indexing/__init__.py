"""Index extraction: search values pulled from a resource at write time."""
