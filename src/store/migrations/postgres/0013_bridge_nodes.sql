-- callbridge store: bridge nodes and their heartbeats, for crash recovery. Identical on both
-- backends; keep the sqlite and postgres copies in step.

-- Each running `serve` process upserts its row every few seconds. A call whose stream claim names
-- a node with a stale heartbeat (or a node that restarted under the same id after the claim) was
-- orphaned by a crash: recovery settles it with end reason bridge_restart.
CREATE TABLE bridge_nodes (
    node_id       TEXT PRIMARY KEY,
    started_at    BIGINT NOT NULL,
    heartbeat_at  BIGINT NOT NULL
);
