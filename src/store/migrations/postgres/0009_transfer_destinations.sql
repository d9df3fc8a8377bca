-- callbridge store: where an agent may hand a caller to a person (`transfer_call`). Identical on
-- both backends (no BLOB columns); keep the sqlite and postgres copies in step.

-- One row per destination. name is what the model passes to the tool; target is an E.164 number
-- or a sip:/sips: URI; caller_id is 'caller' (present the caller's number) or 'agent' (the number
-- the caller dialled); hours is a JSON array of {"days": ["mon", ...], "open": "HH:MM",
-- "close": "HH:MM"} in the tenant's time zone, empty meaning always open. position keeps the
-- order the operator gave.
CREATE TABLE transfer_destinations (
    tenant_id    TEXT NOT NULL,
    agent_id     TEXT NOT NULL,
    name         TEXT NOT NULL,
    position     BIGINT NOT NULL,
    target       TEXT NOT NULL,
    description  TEXT NOT NULL,
    caller_id    TEXT NOT NULL CHECK (caller_id IN ('caller', 'agent')),
    hours        TEXT NOT NULL,
    PRIMARY KEY (tenant_id, agent_id, name),
    FOREIGN KEY (tenant_id, agent_id) REFERENCES agents (tenant_id, id) ON DELETE CASCADE
);

-- The node running a live call (its `CALLBRIDGE_NODE_ID`), so an operator command sent to another
-- node is refused naming this one. NULL for calls that never reached a node.
ALTER TABLE calls ADD COLUMN node_id TEXT;
