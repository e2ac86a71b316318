-- Reference lookups through an index led by the target's id.
--
-- Every query on sp_reference names the target's id (searches, chains, _revinclude,
-- _has, compartments, the care rules) or the source's rid (_include, sorting, :missing,
-- rewriting a resource's rows). The two indexes led by (target_type, ...) and
-- (resource_type, param, ...) began with columns of a few distinct values, so building
-- them compared whole rows of text: 27 s of the 47 s that a 1,000,000-resource load spent
-- building indexes (docs/benchmarks.md). Led by the id, one index serves both kinds of
-- lookup.
--
-- References kept without an id (a URL that names no Type/id, a canonical, an identifier
-- for :identifier, a conditional reference a source left unresolved: a third of Synthea's)
-- are looked up by (resource_type, param) and their URL compared row by row; they are
-- left out of the id index and have a small partial index of their own.
DROP INDEX IF EXISTS sp_reference_target_idx;
DROP INDEX IF EXISTS sp_reference_source_idx;
-- An interrupted bulk load may have recorded them to be built again: not any more.
DELETE FROM deferred_index WHERE name IN ('sp_reference_target_idx', 'sp_reference_source_idx');
CREATE INDEX sp_reference_target_id_idx ON sp_reference (target_id, resource_type, param, target_type)
    WHERE target_id IS NOT NULL;
CREATE INDEX sp_reference_untargeted_idx ON sp_reference (resource_type, param)
    WHERE target_id IS NULL;
