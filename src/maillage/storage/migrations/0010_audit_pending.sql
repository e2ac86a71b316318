-- Audit events of changes, staged in the change's own transaction (audit/journal.py): a
-- committed write always has its event, a rolled-back one has none. Staging takes no lock,
-- so writes are not serialised by the chain. A writer then seals the staged events into
-- audit_event under the chain's append lock, in `id` order (audit/store.py), within a
-- second or before the write's HTTP answer; `maillage audit verify` counts any still here.
CREATE TABLE audit_pending (
    id          bigserial   PRIMARY KEY,
    recorded    timestamptz NOT NULL,
    patient_id  text,
    who         text        NOT NULL,
    action      text        NOT NULL CHECK (action IN ('C', 'R', 'U', 'D', 'E')),
    outcome     smallint    NOT NULL CHECK (outcome IN (0, 4, 8, 12)),
    body        jsonb       NOT NULL
);
