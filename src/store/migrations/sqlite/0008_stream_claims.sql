-- callbridge store: media streams claimed per Twilio call SID. Identical on both backends; keep
-- the sqlite and postgres copies in step.

-- One row per call that opened its media stream. The primary key is the single-use rule: the
-- first socket whose stream token checks out inserts the row, any later socket for the same call
-- (a replayed token, a second socket while the call runs, a socket after it ended) finds it taken,
-- on any node sharing the database. The voice webhook reads it too, so a replayed signed webhook
-- gets no fresh token for a call that already streamed. tenant_id is '' for the default agent
-- (no tenant row, hence no foreign key); rows are a few bytes and are kept: Twilio signatures
-- carry no timestamp, so a replay can come at any time.
CREATE TABLE stream_claims (
    call_sid    TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL,
    -- The bridge node whose socket carries the call: crash recovery settles the calls of a node
    -- that stopped (see bridge_nodes, 0013).
    node_id     TEXT NOT NULL DEFAULT '',
    claimed_at  BIGINT NOT NULL
);
