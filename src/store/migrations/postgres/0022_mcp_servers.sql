-- callbridge store: the external MCP servers an agent's calls may use tools from (issue 18).
-- Identical on both backends (no BLOB columns); keep the sqlite and postgres copies in step.

-- One row per server of an agent. name is the prefix its tools are offered under
-- (`<name>__<tool>`); url is the server's streamable HTTP endpoint (checked by the egress guard
-- when written and before each connection); header_name and secret_name, when set, send the
-- value of the tenant's sealed secret secret_name as that header (never stored here in clear);
-- allowed_tools and side_effect_tools are JSON arrays of the remote tool names offered to the
-- model and of those that run through the tool-call ledger. position keeps the operator's order.
CREATE TABLE agent_mcp_servers (
    tenant_id          TEXT NOT NULL,
    agent_id           TEXT NOT NULL,
    name               TEXT NOT NULL,
    position           BIGINT NOT NULL,
    url                TEXT NOT NULL,
    header_name        TEXT,
    secret_name        TEXT,
    allowed_tools      TEXT NOT NULL,
    side_effect_tools  TEXT NOT NULL,
    PRIMARY KEY (tenant_id, agent_id, name),
    FOREIGN KEY (tenant_id, agent_id) REFERENCES agents (tenant_id, id) ON DELETE CASCADE
);
