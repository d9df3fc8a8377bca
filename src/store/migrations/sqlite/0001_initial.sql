-- callbridge store, SQLite flavour. Keep in step with ../postgres/0001_initial.sql: the two differ
-- only where the dialects must (BLOB vs BYTEA). Timestamps are Unix milliseconds (BIGINT), JSON is
-- TEXT, booleans are 0/1: the portable subset that sqlx::Any decodes the same on both backends.

CREATE TABLE tenants (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    time_zone   TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);

CREATE TABLE agents (
    id                 TEXT PRIMARY KEY,
    tenant_id          TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name               TEXT NOT NULL,
    provider           TEXT NOT NULL,
    model              TEXT NOT NULL,
    voice              TEXT NOT NULL,
    prompt_template    TEXT NOT NULL,
    enabled_tools      TEXT NOT NULL,
    max_duration_s     BIGINT NOT NULL CHECK (max_duration_s > 0),
    silence_timeout_s  BIGINT NOT NULL CHECK (silence_timeout_s > 0),
    recording          BIGINT NOT NULL CHECK (recording IN (0, 1)),
    created_at         BIGINT NOT NULL,
    updated_at         BIGINT NOT NULL,
    UNIQUE (tenant_id, name),
    -- target of the composite foreign keys that keep references inside one tenant
    UNIQUE (tenant_id, id)
);

CREATE TABLE phone_numbers (
    e164        TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    agent_id    TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    FOREIGN KEY (tenant_id, agent_id) REFERENCES agents (tenant_id, id)
);
CREATE INDEX phone_numbers_agent ON phone_numbers (tenant_id, agent_id);

CREATE TABLE secrets (
    tenant_id   TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name        TEXT NOT NULL,
    vendor      TEXT NOT NULL,
    ciphertext  BLOB NOT NULL,
    key_id      TEXT NOT NULL,
    last4       TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, name)
);
CREATE INDEX secrets_key_id ON secrets (key_id);

CREATE TABLE connector_configs (
    tenant_id    TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    vendor       TEXT NOT NULL,
    base_url     TEXT,
    secret_name  TEXT,
    updated_at   BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, vendor),
    FOREIGN KEY (tenant_id, secret_name) REFERENCES secrets (tenant_id, name)
);

CREATE TABLE api_keys (
    id          TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    prefix      TEXT NOT NULL UNIQUE,
    key_hash    BLOB NOT NULL,
    created_at  BIGINT NOT NULL,
    revoked_at  BIGINT
);
CREATE INDEX api_keys_tenant ON api_keys (tenant_id);

CREATE TABLE calls (
    id               TEXT PRIMARY KEY,
    tenant_id        TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    -- no foreign key to agents: call history outlives a deleted agent
    agent_id         TEXT NOT NULL,
    direction        TEXT NOT NULL CHECK (direction IN ('inbound', 'outbound')),
    from_number      TEXT NOT NULL,
    to_number        TEXT NOT NULL,
    twilio_call_sid  TEXT UNIQUE,
    started_at       BIGINT NOT NULL,
    ended_at         BIGINT,
    status           TEXT NOT NULL,
    end_reason       TEXT,
    recording_path   TEXT
);
CREATE INDEX calls_tenant_started ON calls (tenant_id, started_at);

CREATE TABLE call_events (
    call_id  TEXT NOT NULL REFERENCES calls (id) ON DELETE CASCADE,
    seq      BIGINT NOT NULL,
    at       BIGINT NOT NULL,
    kind     TEXT NOT NULL,
    payload  TEXT NOT NULL,
    PRIMARY KEY (call_id, seq)
);

CREATE TABLE tool_ledger (
    tenant_id        TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    idempotency_key  TEXT NOT NULL,
    tool             TEXT NOT NULL,
    arguments_hash   TEXT NOT NULL,
    status           TEXT NOT NULL,
    result           TEXT,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL,
    -- the race-safe claim: two nodes inserting the same key, exactly one succeeds
    PRIMARY KEY (tenant_id, idempotency_key)
);
