-- callbridge store: post-call webhooks. Identical on both backends (no BLOB columns); keep the
-- sqlite and postgres copies in step.

-- One endpoint per tenant. The signing secret lives sealed in `secrets` (vendor `webhook`) and is
-- referenced by name, like connector credentials, so it cannot be deleted while in use.
CREATE TABLE webhook_settings (
    tenant_id    TEXT PRIMARY KEY REFERENCES tenants (id) ON DELETE CASCADE,
    url          TEXT NOT NULL,
    secret_name  TEXT NOT NULL,
    enabled      BIGINT NOT NULL CHECK (enabled IN (0, 1)),
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL,
    FOREIGN KEY (tenant_id, secret_name) REFERENCES secrets (tenant_id, name)
);

-- The durable outbox: a row is written when an event happens and stays until delivered, given up
-- on, or cancelled. Delivery workers (one or several nodes) claim due rows with a lease.
CREATE TABLE webhook_outbox (
    id               TEXT PRIMARY KEY,
    tenant_id        TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    event_type       TEXT NOT NULL,
    -- one row per source event (`call.ended:<call id>`): enqueueing twice is a no-op
    dedupe_key       TEXT NOT NULL,
    payload          TEXT NOT NULL,
    status           TEXT NOT NULL CHECK (status IN ('pending', 'delivered', 'failed', 'cancelled')),
    attempts         BIGINT NOT NULL,
    next_attempt_at  BIGINT NOT NULL,
    lease_owner      TEXT,
    lease_until      BIGINT,
    last_error       TEXT,
    created_at       BIGINT NOT NULL,
    delivered_at     BIGINT,
    UNIQUE (tenant_id, dedupe_key)
);
CREATE INDEX webhook_outbox_due ON webhook_outbox (status, next_attempt_at);
