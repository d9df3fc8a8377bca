-- callbridge store: the OAuth gateway (authorization-code flow states and connected accounts).
-- The sqlite and postgres copies differ only in the binary column type; keep them in step.

-- One pending authorization: the SHA-256 of the state parameter (the state itself is never
-- stored), whom it belongs to, and the PKCE verifier sealed by the vault (bound to the tenant and
-- the state hash). Single-use: a callback claims the row by setting used_at where it is NULL and
-- the row has not expired, in one statement, so two callbacks with the same state cannot both win.
CREATE TABLE oauth_states (
    state_hash     TEXT PRIMARY KEY,
    tenant_id      TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    vendor         TEXT NOT NULL,
    verifier       BYTEA NOT NULL,
    verifier_key   TEXT NOT NULL,
    redirect_uri   TEXT NOT NULL,
    scopes         TEXT NOT NULL,
    created_at     BIGINT NOT NULL,
    expires_at     BIGINT NOT NULL,
    used_at        BIGINT
);
CREATE INDEX oauth_states_expiry ON oauth_states (expires_at);

-- One connected vendor account per tenant and vendor. The tokens themselves are a vault secret
-- (secret_name); this row holds what may be shown (account, scopes, status, expiry) and the
-- refresh lease: a node refreshes only while it holds refresh_lease_until > now under its own
-- refresh_lease_owner, so two nodes never spend the same refresh token.
CREATE TABLE oauth_connections (
    tenant_id            TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    vendor               TEXT NOT NULL,
    status               TEXT NOT NULL,
    account              TEXT,
    scopes               TEXT NOT NULL,
    secret_name          TEXT NOT NULL,
    extra                TEXT NOT NULL,
    expires_at           BIGINT,
    last_refresh_at      BIGINT,
    refresh_lease_owner  TEXT,
    refresh_lease_until  BIGINT,
    created_at           BIGINT NOT NULL,
    updated_at           BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, vendor)
);
