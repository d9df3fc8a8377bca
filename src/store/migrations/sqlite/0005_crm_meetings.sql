-- callbridge store: CRM meetings recorded for bookings. Identical on both backends (no BLOB
-- columns); keep the sqlite and postgres copies in step.

-- Which CRM meeting records a booking, so rescheduling or cancelling the booking can update it.
-- booking_ref is the calendar's booking reference as the connector returned it; crm names the
-- connector that holds meeting_id (a meeting id means nothing to another CRM).
CREATE TABLE crm_meetings (
    tenant_id    TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    booking_ref  TEXT NOT NULL,
    crm          TEXT NOT NULL,
    meeting_id   TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, booking_ref)
);
