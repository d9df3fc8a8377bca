-- callbridge store: messaging (`send_message`) and staff notifications. Identical on both
-- backends (no BLOB columns); keep the sqlite and postgres copies in step.

-- A tenant's messaging settings as one JSON document (staff recipients, send limits, the email
-- domain allow-list, the WhatsApp template used outside the service window, the notification
-- dedup TTL); validated by the admin service before it is written.
CREATE TABLE messaging_settings (
    tenant_id   TEXT PRIMARY KEY REFERENCES tenants (id) ON DELETE CASCADE,
    settings    TEXT NOT NULL,
    updated_at  BIGINT NOT NULL
);

-- The last message a contact sent the business per channel (WhatsApp: the 24-hour customer
-- service window opens with it). contact is canonical (E.164 for phone channels).
CREATE TABLE messaging_contacts (
    tenant_id        TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    channel          TEXT NOT NULL,
    contact          TEXT NOT NULL,
    last_inbound_at  BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, channel, contact)
);

-- One row per message `send_message` reserved (and kept once sent): the per-call and per-tenant
-- limits count these. idempotency_key is the tool call's ledger key, so a replay reserves once.
CREATE TABLE messages_sent (
    id               TEXT PRIMARY KEY,
    tenant_id        TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    call_sid         TEXT NOT NULL,
    channel          TEXT NOT NULL,
    recipient        TEXT NOT NULL,
    idempotency_key  TEXT NOT NULL,
    sent_at          BIGINT NOT NULL,
    UNIQUE (tenant_id, idempotency_key)
);
CREATE INDEX messages_sent_by_time ON messages_sent (tenant_id, sent_at);
CREATE INDEX messages_sent_by_call ON messages_sent (tenant_id, call_sid);

-- Staff notification rules: on event, send on channel to recipient (an address for email, SMS
-- and WhatsApp; the connector's channel for Slack and Teams).
CREATE TABLE notification_rules (
    tenant_id   TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    id          TEXT NOT NULL,
    event       TEXT NOT NULL,
    channel     TEXT NOT NULL,
    recipient   TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, event, channel, recipient)
);

-- Deduplication of notifications across nodes and restarts: a key (event type + recipient +
-- subject) notifies once until expires_at.
CREATE TABLE notification_dedup (
    tenant_id   TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    dedupe_key  TEXT NOT NULL,
    expires_at  BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, dedupe_key)
);

-- The durable outbox of notifications, claimed with a lease like webhook_outbox.
CREATE TABLE notification_outbox (
    id               TEXT PRIMARY KEY,
    tenant_id        TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    event            TEXT NOT NULL,
    channel          TEXT NOT NULL,
    recipient        TEXT NOT NULL,
    -- SMS: the number to send from when the account names none (the number the caller dialled).
    sender           TEXT,
    subject          TEXT NOT NULL,
    body             TEXT NOT NULL,
    status           TEXT NOT NULL CHECK (status IN ('pending', 'delivered', 'failed', 'cancelled')),
    attempts         BIGINT NOT NULL,
    next_attempt_at  BIGINT NOT NULL,
    lease_owner      TEXT,
    lease_until      BIGINT,
    last_error       TEXT,
    created_at       BIGINT NOT NULL,
    delivered_at     BIGINT
);
CREATE INDEX notification_outbox_due ON notification_outbox (status, next_attempt_at);
CREATE INDEX notification_outbox_by_tenant ON notification_outbox (tenant_id, created_at);
