-- The patient index's GIN index on blocking keys, written straight into its tree.
--
-- With GIN's default fast update, new keys wait in an unsorted pending list that every
-- search scans in full until a vacuum merges it. The index is written by each
-- registration and searched by the next one, so the list was scanned on every match: the
-- candidate query cost 0.42 ms with a few candidates (docs/benchmarks.md, "online
-- matching"). Without it, a write inserts its few keys directly.
ALTER INDEX mpi_source_blocking SET (fastupdate = off);
