-- Applications that sign their users in through the built-in issuer with the OAuth2
-- authorization code flow and PKCE (src/maillage/security/authorization.py): public
-- clients (a browser or desktop app holds no secret), known by their exact redirect URIs.
CREATE TABLE auth_app (
    client_id        text        PRIMARY KEY CHECK (client_id ~ '^[a-z0-9][a-z0-9._-]{0,99}$'),
    name             text        NOT NULL,
    redirect_uris    text[]      NOT NULL CHECK (cardinality(redirect_uris) > 0),
    enabled          boolean     NOT NULL DEFAULT true,
    created_at       timestamptz NOT NULL DEFAULT now()
);

-- Codes waiting for their exchange: single use (taken by DELETE ... RETURNING), short
-- lived, stored as a SHA-256 of the code (the code itself only travels to the app).
CREATE TABLE auth_code (
    code_hash        bytea       PRIMARY KEY CHECK (length(code_hash) = 32),
    client_id        text        NOT NULL REFERENCES auth_app (client_id) ON DELETE CASCADE,
    redirect_uri     text        NOT NULL,
    code_challenge   text        NOT NULL,
    scope            text,
    signed_in        jsonb       NOT NULL,
    expires_at       timestamptz NOT NULL
);
CREATE INDEX auth_code_expires_idx ON auth_code (expires_at);
