-- The territorial patient index (src/maillage/mpi/): which source identities (a site's
-- Patient, one per IPP) are the same person. Decision: docs/decisions/0005-patient-index.md
--
-- A territorial identity is itself a FHIR Patient (the golden record, tagged
-- `territorial`); these tables hold what the matcher needs and what people decided.

-- One row per source identity: its territorial identity and how it got there.
CREATE TABLE mpi_source (
    patient_id      text        PRIMARY KEY,
    territorial_id  text        NOT NULL,
    -- the IPP system and value of the identity, when it carries one (type PI)
    ipp_system      text,
    ipp             text,
    -- the prepared record (identity.normalize.prepare) the matcher compares
    traits          jsonb       NOT NULL,
    -- blocking keys (identity.compare.blocking_keys): two identities are compared when
    -- they share one
    blocking        text[]      NOT NULL,
    -- RNIV status (PROV, RECUP, VALI, QUAL): a QUAL source's traits win in the golden record
    reliability     text,
    -- auto: placed by its score; verified: placed by a person (the machine never moves it)
    link_kind       text        NOT NULL CHECK (link_kind IN ('auto', 'verified')),
    -- the pair score that placed it (against matched_patient_id), with its explanation
    score           double precision,
    matched_patient_id text,
    explanation     jsonb,
    -- false once merged into another source identity (an A40 merge): kept for unmerge
    active          boolean     NOT NULL DEFAULT true,
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX mpi_source_blocking ON mpi_source USING gin (blocking) WHERE active;
CREATE INDEX mpi_source_territorial ON mpi_source (territorial_id);
CREATE INDEX mpi_source_ipp ON mpi_source (ipp_system, ipp);

CREATE TABLE mpi_territorial (
    territorial_id  text        PRIMARY KEY,
    created_at      timestamptz NOT NULL DEFAULT now(),
    -- which source each trait of the golden record was taken from
    trait_sources   jsonb       NOT NULL DEFAULT '{}'::jsonb,
    -- false once it has no source left (its Patient stays, inactive, for the links
    -- pointing at it)
    active          boolean     NOT NULL DEFAULT true
);

-- Pairs the machine could not decide (the review queue) and what people decided.
--   open      waiting for the identitovigilance cell
--   linked    a person linked the source to the territorial identity
--   never     a person said they are not the same person: never linked by the machine
--   closed    no longer relevant (the source moved or changed), kept as history
CREATE TABLE mpi_candidate (
    id              bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    patient_id      text        NOT NULL,
    territorial_id  text        NOT NULL,
    matched_patient_id text     NOT NULL,
    score           double precision NOT NULL,
    probability     double precision NOT NULL,
    explanation     jsonb       NOT NULL,
    -- homonym, ins_collision, birthplace_conflict: alerts the cell must see
    flags           text[]      NOT NULL DEFAULT '{}',
    status          text        NOT NULL DEFAULT 'open'
                    CHECK (status IN ('open', 'linked', 'never', 'closed')),
    created_at      timestamptz NOT NULL DEFAULT now(),
    decided_by      text,
    decided_at      timestamptz,
    reason          text,
    UNIQUE (patient_id, territorial_id)
);
CREATE INDEX mpi_candidate_open ON mpi_candidate (created_at) WHERE status = 'open';

-- Every change of the index, by the machine or a person: who, when, why (the history).
CREATE TABLE mpi_event (
    id              bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at              timestamptz NOT NULL DEFAULT now(),
    who             text        NOT NULL,
    action          text        NOT NULL,
    patient_id      text,
    territorial_id  text,
    reason          text,
    detail          jsonb       NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX mpi_event_patient ON mpi_event (patient_id, id);
CREATE INDEX mpi_event_territorial ON mpi_event (territorial_id, id);

-- Merges of two source identities (a duplicate IPP): what moved, so that an unmerge
-- puts every reference back where it was.
CREATE TABLE mpi_merge (
    id              bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    survivor_id     text        NOT NULL,
    merged_id       text        NOT NULL,
    at              timestamptz NOT NULL DEFAULT now(),
    who             text        NOT NULL,
    reason          text,
    -- [{"type": ..., "id": ..., "paths": [[...json path...], ...]}, ...]
    moved           jsonb       NOT NULL,
    -- the merged source's index row and Patient version before the merge
    before          jsonb       NOT NULL,
    unmerged_at     timestamptz,
    unmerged_by     text,
    unmerge_reason  text
);
CREATE INDEX mpi_merge_merged ON mpi_merge (merged_id);
