-- callbridge store: why a pending campaign contact is waiting. Identical on both backends; keep
-- the sqlite and postgres copies in step.

-- NULL while the contact is due (never tried, or being dialled, or done); otherwise
-- 'outside_calling_window', 'retry_after_<call status>' (busy, no_answer, failed, …) or
-- 'not_placed' (Twilio did not place the call; last_error says why). next_attempt_at says when.
ALTER TABLE campaign_contacts ADD COLUMN waiting_reason TEXT;

-- Per-tenant retention: calls that ended more than `days` ago lose their transcript and events
-- and their recording file (the call row itself stays, for counts and billing). No row: kept
-- forever.
CREATE TABLE tenant_retention (
    tenant_id   TEXT PRIMARY KEY REFERENCES tenants (id) ON DELETE CASCADE,
    days        BIGINT NOT NULL CHECK (days > 0),
    updated_at  BIGINT NOT NULL
);
