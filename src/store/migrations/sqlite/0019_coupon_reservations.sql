-- callbridge store: the per-tenant daily count of `create_coupon` (exact across calls and nodes).
-- Identical on both backends; keep the sqlite and postgres copies in step.

-- One row per coupon slot reserved before the vendor is asked: kept once the coupon exists,
-- deleted when the vendor refused it. idempotency_key is the tool call's ledger key, so a replay
-- reserves once. The rolling 24-hour count reads reserved_at.
CREATE TABLE coupon_reservations (
    tenant_id        TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    idempotency_key  TEXT NOT NULL,
    reserved_at      BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, idempotency_key)
);
CREATE INDEX coupon_reservations_by_time ON coupon_reservations (tenant_id, reserved_at);

-- One row per tenant, written first by every reservation: the write serialises a tenant's
-- reservations (a row lock on PostgreSQL, the write lock on SQLite), so count-then-insert cannot
-- over-admit.
CREATE TABLE coupon_reservation_locks (
    tenant_id         TEXT PRIMARY KEY REFERENCES tenants (id) ON DELETE CASCADE,
    last_reserved_at  BIGINT NOT NULL
);
