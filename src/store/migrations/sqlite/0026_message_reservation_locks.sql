-- callbridge store: serialise a tenant's message reservations (`send_message`, inbound `message`
-- rules) so the per-call and per-tenant limits hold across nodes.
-- Identical on both backends; keep the sqlite and postgres copies in step.

-- One row per tenant, written first by every reservation (as coupon_reservation_locks, 0019): the
-- write serialises a tenant's reservations (a row lock on PostgreSQL, the write lock on SQLite),
-- so count-then-insert in messages_sent cannot over-admit.
CREATE TABLE message_reservation_locks (
    tenant_id         TEXT PRIMARY KEY REFERENCES tenants (id) ON DELETE CASCADE,
    last_reserved_at  BIGINT NOT NULL
);
