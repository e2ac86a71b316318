"""Search: parameters parsed against the official definitions, compiled to SQL."""
