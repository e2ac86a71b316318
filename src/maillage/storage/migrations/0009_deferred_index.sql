-- Secondary indexes set aside by a large bulk load, built again when it ends. A row
-- outlives an interrupted load: the next hub start or load builds the index.
CREATE TABLE deferred_index (
    name text PRIMARY KEY,
    table_name text NOT NULL,
    definition text NOT NULL,
    deferred_at timestamptz NOT NULL DEFAULT now()
);
