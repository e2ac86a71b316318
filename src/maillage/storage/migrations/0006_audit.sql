-- The audit trail (src/maillage/audit/): one FHIR AuditEvent (IHE BALP) per access or
-- change and per patient, in a hash chain (audit/chain.py):
--   hash = sha256(prev_hash || canonical(seq, recorded, patient, who, action, outcome, body)).
-- `seq` is given by the writer under an advisory lock (last + 1), never by a sequence: a
-- gap means a deleted row. Append-only: UPDATE and DELETE are refused by a trigger. A
-- superuser can still disable it and tamper; `maillage audit verify` finds where. (TRUNCATE
-- is not refused here, the test harness empties the table: in production the hub's role is
-- granted SELECT, INSERT only.)
CREATE TABLE audit_event (
    seq         bigint      PRIMARY KEY CHECK (seq > 0),
    recorded    timestamptz NOT NULL,
    patient_id  text,
    who         text        NOT NULL,
    action      text        NOT NULL CHECK (action IN ('C', 'R', 'U', 'D', 'E')),
    outcome     smallint    NOT NULL CHECK (outcome IN (0, 4, 8, 12)),
    body        jsonb       NOT NULL,
    prev_hash   bytea       NOT NULL CHECK (length(prev_hash) = 32),
    hash        bytea       NOT NULL CHECK (length(hash) = 32)
);
-- "who looked at this patient's record", newest first
CREATE INDEX audit_event_patient_idx ON audit_event (patient_id, recorded DESC)
    WHERE patient_id IS NOT NULL;
CREATE INDEX audit_event_who_idx ON audit_event (who, recorded DESC);

CREATE FUNCTION audit_event_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_event is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;

CREATE TRIGGER audit_event_append_only
    BEFORE UPDATE OR DELETE ON audit_event
    FOR EACH ROW EXECUTE FUNCTION audit_event_append_only();
