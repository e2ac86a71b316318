-- Care relationships (src/maillage/security/care.py): which principal (a practitioner, a
-- site's organisation) takes part in which patient's care, until when; kept per source
-- resource (an Encounter, a CareTeam, a referral) so that its update replaces them.
-- Break-the-glass grants (source_type 'break-the-glass') carry the reason.
CREATE TABLE care_access (
    id              bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    patient_id      text        NOT NULL,
    principal       text        NOT NULL,
    until           timestamptz,
    source_type     text        NOT NULL,
    source_id       text        NOT NULL,
    -- break-the-glass only: who asked (the principal), why, when
    reason          text,
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX care_access_patient ON care_access (patient_id, principal);
CREATE INDEX care_access_source ON care_access (source_type, source_id);
CREATE INDEX care_access_glass ON care_access (created_at) WHERE source_type = 'break-the-glass';

-- A patient's objection to sharing their record across the GHT (an active Consent whose
-- provision denies), kept per Consent so that its update or deletion lifts it.
CREATE TABLE care_objection (
    consent_id      text        PRIMARY KEY,
    patient_id      text        NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX care_objection_patient ON care_objection (patient_id);
