-- The blocking rules the stored keys of mpi_source were made with.
--
-- The patient index compares an identity with the filed ones that share a blocking key
-- (maillage.identity.blocking). When the rules change (session 14: keys that stay
-- narrow at a million identities), keys filed under the old rules would never meet the
-- new ones: at start-up the hub recomputes them from the stored traits
-- (maillage.mpi.rekey) and records the rules here. The rows filed so far were made with
-- the rules before that change.
CREATE TABLE mpi_blocking_rules (
    singleton   boolean     PRIMARY KEY DEFAULT true CHECK (singleton),
    rules       text[]      NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
INSERT INTO mpi_blocking_rules (rules) VALUES ('{birth_date,name_year,first_last,ins}');
