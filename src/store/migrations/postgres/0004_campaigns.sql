-- callbridge store: campaigns. Identical on both backends (no BLOB columns); keep the sqlite and
-- postgres copies in step.

-- A tenant's dialling limits, shared by all its campaigns and all nodes. The row is also the lock
-- a claim takes first, so claims for one tenant are serialised across nodes.
CREATE TABLE campaign_tenant_limits (
    tenant_id        TEXT PRIMARY KEY REFERENCES tenants (id) ON DELETE CASCADE,
    max_concurrent   INTEGER NOT NULL CHECK (max_concurrent > 0),
    -- pacing: at least this long between two dials of the tenant
    dial_interval_ms BIGINT NOT NULL CHECK (dial_interval_ms >= 0),
    -- the earliest moment the next dial may be claimed
    next_dial_at     BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL
);

CREATE TABLE campaigns (
    id               TEXT PRIMARY KEY,
    tenant_id        TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name             TEXT NOT NULL,
    agent_id         TEXT NOT NULL REFERENCES agents (id),
    status           TEXT NOT NULL CHECK (status IN ('active', 'paused', 'cancelled', 'completed')),
    -- recipient-local calling window: minutes after midnight [start, end), weekday bits (Monday = 1)
    window_start_min INTEGER NOT NULL,
    window_end_min   INTEGER NOT NULL,
    window_days      INTEGER NOT NULL,
    dial_interval_ms BIGINT NOT NULL CHECK (dial_interval_ms >= 0),
    max_concurrent   INTEGER NOT NULL CHECK (max_concurrent > 0),
    max_attempts     INTEGER NOT NULL CHECK (max_attempts > 0),
    retry_delay_s    BIGINT NOT NULL CHECK (retry_delay_s >= 0),
    machine_action   TEXT CHECK (machine_action IN ('hangup', 'message')),
    voicemail_text   TEXT,
    -- rows of the imported file that were refused: JSON [{"line":…,"message":…}]
    rejected_rows    TEXT NOT NULL,
    next_dial_at     BIGINT NOT NULL,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL
);
CREATE INDEX campaigns_by_tenant ON campaigns (tenant_id, created_at);
CREATE INDEX campaigns_by_status ON campaigns (status);

-- One row per person to call. `state` is where the dispatcher is with them:
--   pending  waiting for its next attempt (next_attempt_at)
--   dialing  claimed by a node (lease_owner until lease_until); the call record exists, the
--            CreateCall request may or may not have reached Twilio
--   in_call  Twilio accepted the call (the call record carries its SID); waiting for the end
--   done     finished with `outcome`
CREATE TABLE campaign_contacts (
    campaign_id      TEXT NOT NULL REFERENCES campaigns (id) ON DELETE CASCADE,
    seq              BIGINT NOT NULL,
    tenant_id        TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    line             BIGINT NOT NULL,
    e164             TEXT NOT NULL,
    -- IANA zones the calling window must be open in, space separated
    zones            TEXT NOT NULL,
    variables        TEXT NOT NULL,
    state            TEXT NOT NULL CHECK (state IN ('pending', 'dialing', 'in_call', 'done')),
    outcome          TEXT,
    attempts         INTEGER NOT NULL,
    next_attempt_at  BIGINT NOT NULL,
    lease_owner      TEXT,
    lease_until      BIGINT,
    claimed_at       BIGINT,
    -- the call record of the current or last attempt, and the node that placed it
    call_id          TEXT,
    dialed_by        TEXT,
    last_status      TEXT,
    last_error       TEXT,
    updated_at       BIGINT NOT NULL,
    PRIMARY KEY (campaign_id, seq),
    UNIQUE (campaign_id, e164)
);
CREATE INDEX campaign_contacts_due ON campaign_contacts (campaign_id, state, next_attempt_at);
CREATE INDEX campaign_contacts_active ON campaign_contacts (tenant_id, state);
CREATE INDEX campaign_contacts_by_call ON campaign_contacts (call_id);
