-- callbridge store: post-call exports (a finished call written to a tenant's vendor: a row in a
-- Google Sheet, …). Identical on both backends; keep the sqlite and postgres copies in step.

-- One job per call and connector, enqueued when the call is recorded as finished (a second
-- enqueue is a no-op), claimed by one node at a time with a lease (lease_owner, lease_until),
-- retried with backoff until done, skipped (the connector exports nothing) or failed for good.
-- Rows survive a restart: a job whose lease ran out is claimed again.
CREATE TABLE call_exports (
    tenant_id    TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    call_id      TEXT NOT NULL,
    vendor       TEXT NOT NULL,
    status       TEXT NOT NULL CHECK (status IN ('pending', 'done', 'skipped', 'failed')),
    attempts     BIGINT NOT NULL,
    next_at      BIGINT NOT NULL,
    lease_owner  TEXT,
    lease_until  BIGINT,
    last_error   TEXT,
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, call_id, vendor)
);
CREATE INDEX call_exports_due ON call_exports (status, next_at);
