-- Local accounts of the built-in issuer (src/maillage/security/accounts.py): people who
-- sign in with a login, a password (argon2id hash, never the password) and, once
-- enrolled, a TOTP code; and service accounts (OAuth2 client credentials: a SHA-256 hash
-- of a random 256-bit secret). Tokens themselves are never stored.
CREATE TABLE auth_user (
    login            text        PRIMARY KEY CHECK (login ~ '^[a-z0-9][a-z0-9._@-]{0,99}$'),
    display_name     text,
    password_hash    text        NOT NULL CHECK (password_hash LIKE '$argon2%'),
    role             text        NOT NULL,
    sites            text[]      NOT NULL DEFAULT '{}',
    -- the FHIR reference of the user (Practitioner/123): the token's fhirUser
    practitioner     text,
    organisation     text,
    -- base32 TOTP secret (RFC 6238) once enrolled; the last time step accepted, so that
    -- one code is never accepted twice
    totp_secret      text,
    totp_last_step   bigint,
    enabled          boolean     NOT NULL DEFAULT true,
    failed_attempts  integer     NOT NULL DEFAULT 0,
    locked_until     timestamptz,
    last_login_at    timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE auth_client (
    client_id        text        PRIMARY KEY CHECK (client_id ~ '^[a-z0-9][a-z0-9._-]{0,99}$'),
    secret_hash      text        NOT NULL,
    role             text        NOT NULL DEFAULT 'service',
    scopes           text[]      NOT NULL,
    sites            text[]      NOT NULL DEFAULT '{}',
    description      text,
    enabled          boolean     NOT NULL DEFAULT true,
    created_at       timestamptz NOT NULL DEFAULT now(),
    last_used_at     timestamptz
);
