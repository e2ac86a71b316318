-- Custom search parameters (docs/decisions/0004-custom-search-parameters.md).
-- The SearchParameter resources themselves live in `resource`; this is the bookkeeping
-- that lets every hub process follow them.

-- One row: bumped in the transaction that creates, changes or deletes an active
-- SearchParameter. Each process polls it (about once a second) and reloads the custom
-- definitions when it moved.
CREATE TABLE search_definitions (
    singleton  boolean     PRIMARY KEY DEFAULT true CHECK (singleton),
    generation bigint      NOT NULL DEFAULT 0,
    changed_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO search_definitions DEFAULT VALUES;

-- Parameters whose index rows are not complete yet: written with the definition change,
-- removed by the reindex job that covers them. A search on one answers 409 instead of
-- partial results.
CREATE TABLE search_param_pending (
    resource_type text   NOT NULL,
    code          text   NOT NULL,
    generation    bigint NOT NULL,
    job_id        text   NOT NULL,
    PRIMARY KEY (resource_type, code)
);
