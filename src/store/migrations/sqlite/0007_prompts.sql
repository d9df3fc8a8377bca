-- callbridge store: per-tenant prompts with every version kept. Identical on both backends (no
-- BLOB columns); keep the sqlite and postgres copies in step.

-- One row per version of a tenant's prompt; the current text is the highest version. A roll-back
-- writes a new version with an older text, so history is never rewritten. Agents name a prompt
-- of their own tenant (agents.prompt_template), or `default`.
CREATE TABLE prompts (
    tenant_id   TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name        TEXT NOT NULL,
    version     BIGINT NOT NULL,
    body        TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, name, version)
);
