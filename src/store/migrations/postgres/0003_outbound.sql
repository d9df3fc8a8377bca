-- callbridge store: outbound calls, do-not-call lists. Identical on both backends (no BLOB
-- columns); keep the sqlite and postgres copies in step.

-- What an outbound call was placed with: the per-call prompt variables and, once known, how AMD
-- classified the answer and what was done about it. One row per outbound call record, written
-- before the Twilio request so the voice webhook can route by the call record, never by number.
CREATE TABLE outbound_calls (
    call_id      TEXT PRIMARY KEY REFERENCES calls (id) ON DELETE CASCADE,
    tenant_id    TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    variables    TEXT NOT NULL,
    -- 'hangup' or 'message': what to do when AMD reports a machine; NULL = AMD off
    machine_action  TEXT CHECK (machine_action IN ('hangup', 'message')),
    -- spoken after the beep when machine_action = 'message'
    voicemail_text  TEXT,
    answered_by  TEXT,
    amd_outcome  TEXT,
    created_at   BIGINT NOT NULL
);

-- Numbers a tenant must never dial (opt-outs and imports). Checked before every dial.
CREATE TABLE do_not_call (
    tenant_id   TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    e164        TEXT NOT NULL,
    reason      TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, e164)
);
