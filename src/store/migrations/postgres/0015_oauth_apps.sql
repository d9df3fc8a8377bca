-- callbridge store: OAuth apps set through the admin API. The sqlite and postgres copies differ
-- only in the binary column type; keep them in step.

-- One OAuth app per scope and vendor: scope '' is the deployment's app (it wins over the
-- environment's), a tenant id is that tenant's own app (a business bringing its own client id;
-- it wins over the deployment's for that tenant only, and goes with the tenant). The client
-- secret is sealed by the vault, bound to the scope and vendor; nothing here is plaintext secret.
-- directory: the identity directory a vendor's URLs name (Microsoft: common, organizations,
-- consumers or a tenant id); NULL for the vendor's default.
CREATE TABLE oauth_apps (
    scope          TEXT NOT NULL,
    tenant_id      TEXT REFERENCES tenants (id) ON DELETE CASCADE,
    vendor         TEXT NOT NULL,
    client_id      TEXT NOT NULL,
    secret         BYTEA NOT NULL,
    secret_key     TEXT NOT NULL,
    authorize_url  TEXT,
    token_url      TEXT,
    revoke_url     TEXT,
    directory      TEXT,
    updated_at     BIGINT NOT NULL,
    PRIMARY KEY (scope, vendor)
);
