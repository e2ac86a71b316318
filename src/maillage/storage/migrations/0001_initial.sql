-- Resources: the current version of each resource, one row per (type, id).
-- Past versions move to resource_version on update/delete, so a create writes
-- one body only. `rid` is the internal key the index tables point to.
CREATE TABLE resource (
    rid           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    resource_type text        NOT NULL,
    id            text        NOT NULL,
    version_id    bigint      NOT NULL,
    last_updated  timestamptz NOT NULL,
    deleted       boolean     NOT NULL DEFAULT false,
    method        text        NOT NULL,
    content       jsonb,
    -- Hash of the body without meta: an unchanged re-load writes no new version.
    content_hash  bytea,
    UNIQUE (resource_type, id)
);
CREATE INDEX resource_last_updated_idx ON resource (last_updated);
CREATE INDEX resource_type_last_updated_idx ON resource (resource_type, last_updated);

CREATE TABLE resource_version (
    rid           bigint      NOT NULL,
    resource_type text        NOT NULL,
    id            text        NOT NULL,
    version_id    bigint      NOT NULL,
    last_updated  timestamptz NOT NULL,
    deleted       boolean     NOT NULL,
    method        text        NOT NULL,
    content       jsonb,
    PRIMARY KEY (resource_type, id, version_id)
);
CREATE INDEX resource_version_last_updated_idx ON resource_version (last_updated);
CREATE INDEX resource_version_type_last_updated_idx ON resource_version (resource_type, last_updated);

-- Search index tables: narrow, typed, keyed by rid; rewritten with the resource
-- in the same transaction. `param` is the search parameter code.
CREATE TABLE sp_token (
    rid              bigint NOT NULL,
    resource_type    text   NOT NULL,
    param            text   NOT NULL,
    system           text,
    code             text,
    -- 64-bit hashes of (type, param, code) and (type, param, system, code).
    code_hash        bigint NOT NULL,
    system_code_hash bigint NOT NULL
);
CREATE INDEX sp_token_rid_idx ON sp_token (rid);
CREATE INDEX sp_token_code_hash_idx ON sp_token (code_hash, rid);
CREATE INDEX sp_token_system_code_hash_idx ON sp_token (system_code_hash, rid);

CREATE TABLE sp_string (
    rid           bigint NOT NULL,
    resource_type text   NOT NULL,
    param         text   NOT NULL,
    -- lower case, accents and punctuation removed (no extension needed)
    value_norm    text   NOT NULL COLLATE "C",
    value_exact   text   NOT NULL
);
CREATE INDEX sp_string_rid_idx ON sp_string (rid);
CREATE INDEX sp_string_value_idx ON sp_string (resource_type, param, value_norm text_pattern_ops);

CREATE TABLE sp_date (
    rid           bigint      NOT NULL,
    resource_type text        NOT NULL,
    param         text        NOT NULL,
    low           timestamptz NOT NULL,
    high          timestamptz NOT NULL
);
CREATE INDEX sp_date_rid_idx ON sp_date (rid);
CREATE INDEX sp_date_value_idx ON sp_date (resource_type, param, low, high);

CREATE TABLE sp_number (
    rid           bigint  NOT NULL,
    resource_type text    NOT NULL,
    param         text    NOT NULL,
    value         numeric NOT NULL
);
CREATE INDEX sp_number_rid_idx ON sp_number (rid);
CREATE INDEX sp_number_value_idx ON sp_number (resource_type, param, value);

CREATE TABLE sp_quantity (
    rid           bigint  NOT NULL,
    resource_type text    NOT NULL,
    param         text    NOT NULL,
    system        text,
    code          text,
    value         numeric NOT NULL
);
CREATE INDEX sp_quantity_rid_idx ON sp_quantity (rid);
CREATE INDEX sp_quantity_value_idx ON sp_quantity (resource_type, param, code, value);

CREATE TABLE sp_uri (
    rid           bigint NOT NULL,
    resource_type text   NOT NULL,
    param         text   NOT NULL,
    uri           text   NOT NULL COLLATE "C"
);
CREATE INDEX sp_uri_rid_idx ON sp_uri (rid);
CREATE INDEX sp_uri_value_idx ON sp_uri (resource_type, param, uri);

-- References, resolved to (target_type, target_id) when they point inside the
-- hub: this table serves chaining, _include, _revinclude and compartments.
CREATE TABLE sp_reference (
    rid           bigint NOT NULL,
    resource_type text   NOT NULL,
    param         text   NOT NULL,
    target_type   text,
    target_id     text,
    target_url    text
);
CREATE INDEX sp_reference_rid_idx ON sp_reference (rid);
CREATE INDEX sp_reference_target_idx ON sp_reference (target_type, target_id, resource_type, param);
CREATE INDEX sp_reference_source_idx ON sp_reference (resource_type, param, target_id);
