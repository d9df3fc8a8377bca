-- callbridge store: post-call analysis. Identical on both backends (no BLOB columns); keep the
-- sqlite and postgres copies in step.

-- Per agent: what to compute after each of its calls. goal is the stated goal the call is
-- evaluated against; fields_schema is a JSON Schema (an object schema, as JSON text) for the
-- structured fields; model overrides the deployment's analysis model (NULL: the default).
CREATE TABLE agent_analysis (
    tenant_id      TEXT NOT NULL,
    agent_id       TEXT NOT NULL,
    goal           TEXT NOT NULL,
    fields_schema  TEXT NOT NULL,
    model          TEXT,
    updated_at     BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, agent_id),
    FOREIGN KEY (tenant_id, agent_id) REFERENCES agents (tenant_id, id) ON DELETE CASCADE
);

-- One row per analysed call, written when the call ends: the durable queue (status 'pending',
-- leased by one worker at a time through lease_until, ms since the epoch) and then the result.
-- result is JSON text {"summary", "fields", "success": {"achieved", "reason"}} for 'done'; error
-- says why for 'failed' (nothing is invented). attempts counts requests to the model.
CREATE TABLE call_analyses (
    tenant_id    TEXT NOT NULL,
    call_id      TEXT NOT NULL REFERENCES calls (id) ON DELETE CASCADE,
    status       TEXT NOT NULL CHECK (status IN ('pending', 'done', 'failed')),
    attempts     BIGINT NOT NULL,
    result       TEXT,
    error        TEXT,
    model        TEXT,
    lease_until  BIGINT NOT NULL,
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, call_id)
);
CREATE INDEX call_analyses_queue ON call_analyses (status, lease_until);
