-- The HL7 v2 message store (src/maillage/hl7v2/store.py): every message received over
-- MLLP is committed here before its ACK is written, then processed from here.
--
-- status: received  stored, waiting for (another) processing attempt
--         processed a handler converted it
--         ignored   a handler decided not to use it (`note` says why, e.g. A08)
--         error     rejected at receipt (`error` says which field and why); kept raw
--         dead      failed `attempts` times, or failed for good (`error` has the reason)
CREATE TABLE hl7_message (
    id              bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    received_at     timestamptz NOT NULL DEFAULT now(),
    -- site code (SiteConfig.code); null when the sender is not a configured site
    site            text,
    -- MSH-3.1^MSH-4.1 as received, and MSH-10
    sender          text,
    control_id      text,
    -- sender + MSH-10, length-prefixed so that no two (sender, id) pairs collide; set only
    -- on accepted messages, so that a rejected one never blocks its corrected resend
    idempotency_key text        UNIQUE,
    message_type    text,
    trigger_event   text,
    -- ordering key: site code + the patient's IPP at that site (PID-3); messages with the
    -- same key are processed one at a time, in arrival (id) order
    patient_key     text,
    -- Python codec the raw bytes decode with (from MSH-18 or the site's default)
    charset         text,
    raw             bytea       NOT NULL,
    status          text        NOT NULL DEFAULT 'received'
                    CHECK (status IN ('received', 'processed', 'ignored', 'error', 'dead')),
    attempts        integer     NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    error           text,
    note            text,
    processed_at    timestamptz,
    updated_at      timestamptz NOT NULL DEFAULT now()
);
-- The processor's claim walks the waiting messages oldest first (first index) and takes
-- one when no older waiting message has the same patient key (second index).
CREATE INDEX hl7_message_waiting_idx ON hl7_message (id) WHERE status = 'received';
CREATE INDEX hl7_message_waiting_patient_idx ON hl7_message (patient_key, id)
    WHERE status = 'received';
-- Listing and replay by site and status; per-site counters.
CREATE INDEX hl7_message_site_status_idx ON hl7_message (site, status);
