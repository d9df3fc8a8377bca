-- callbridge store: inbound webhooks (sources, the durable inbox, rules and the actions they
-- took). Identical on both backends (no BLOB columns); keep the sqlite and postgres copies in step.

-- Where a tenant's vendor posts: /hooks/{tenant}/{id}. The signing secret is a vault secret
-- (`secret_name`); Twilio sources are verified with the server's auth token and have none.
CREATE TABLE inbound_sources (
    tenant_id    TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    id           TEXT NOT NULL,
    -- calendly, calcom, shopify, hubspot, stripe, whatsapp, twilio, standard
    kind         TEXT NOT NULL,
    secret_name  TEXT,
    -- WhatsApp's subscription handshake token (a vault secret)
    verify_name  TEXT,
    created_at   BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, id)
);

-- The inbox: one row per verified event, stored before the vendor is answered. The vendor's
-- event id makes retries land on the same row. `status`:
--   pending     waiting for (another) processing attempt at next_attempt_at
--   processing  leased to lease_owner until lease_until (an expired lease is taken over)
--   done        every matching rule's action is recorded
--   failed      given up after the last attempt (replayable)
CREATE TABLE inbound_events (
    id               TEXT PRIMARY KEY,
    tenant_id        TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    source_id        TEXT NOT NULL,
    vendor_event_id  TEXT NOT NULL,
    event_type       TEXT NOT NULL,
    -- how the delivery was verified (the scheme's name)
    verified_by      TEXT NOT NULL,
    payload          TEXT NOT NULL,
    received_at      BIGINT NOT NULL,
    deliveries       INTEGER NOT NULL,
    status           TEXT NOT NULL CHECK (status IN ('pending', 'processing', 'done', 'failed')),
    attempts         INTEGER NOT NULL,
    next_attempt_at  BIGINT NOT NULL,
    lease_owner      TEXT,
    lease_until      BIGINT,
    last_error       TEXT,
    processed_at     BIGINT,
    UNIQUE (tenant_id, source_id, vendor_event_id)
);
CREATE INDEX inbound_events_due ON inbound_events (status, next_attempt_at);
CREATE INDEX inbound_events_recent ON inbound_events (tenant_id, received_at);

-- "on (source, event type, filter) do action", per tenant. `filter` and `action` are JSON.
CREATE TABLE inbound_rules (
    id          TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name        TEXT NOT NULL,
    source_id   TEXT NOT NULL,
    event_type  TEXT NOT NULL,
    filter      TEXT NOT NULL,
    action      TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    UNIQUE (tenant_id, name)
);
CREATE INDEX inbound_rules_match ON inbound_rules (tenant_id, source_id, event_type);

-- What each rule did for each event (once: a retried event skips rules already recorded).
CREATE TABLE inbound_actions (
    event_id    TEXT NOT NULL REFERENCES inbound_events (id) ON DELETE CASCADE,
    rule_id     TEXT NOT NULL,
    tenant_id   TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    action      TEXT NOT NULL,
    outcome     TEXT NOT NULL,
    detail      TEXT,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (event_id, rule_id)
);
