//! An agent's external MCP servers for the API and the CLI: read and replace the list
//! (`store::mcp_servers` validates every field). Each URL passes the egress guard here, when it
//! is written (the MCP client checks it again before each connection, and its resolver at
//! connect time), and a named credential secret must exist in the tenant. It must not connect to
//! a server or reveal a secret.
//!
//! Scoping: like every agent route, another tenant's agent answers NotFound.

use serde::{Deserialize, Serialize};
use tracing::info;
use utoipa::ToSchema;

use super::{AdminService, Principal, ServiceError};
use crate::store::McpServerSpec;

/// One external MCP server whose tools the agent's calls may use.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct McpServerDoc {
    /// Prefix of its tools' names as the model sees them (`shop` → `shop__lookup_order`):
    /// lower-case letters, digits, `-` and `_`, no `__`.
    pub name: String,
    /// Its streamable HTTP endpoint (`https://mcp.example.com/mcp`); must pass the egress policy.
    pub url: String,
    /// Header carrying the credential (`Authorization`, `X-Api-Key`); with `secret_name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header_name: Option<String>,
    /// The tenant secret whose value is sent in `header_name` (e.g. `Bearer …`); never returned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_name: Option<String>,
    /// Remote tool names offered to the model; nothing else the server lists is.
    pub allowed_tools: Vec<String>,
    /// Allowed tools with side effects: each runs at most once per tool call (the ledger), and
    /// gets the ledger's idempotency key in `_meta["io.callbridge/idempotency-key"]`.
    #[serde(default)]
    pub side_effect_tools: Vec<String>,
}

/// The whole list.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct McpServersDoc {
    pub servers: Vec<McpServerDoc>,
}

impl From<McpServerSpec> for McpServerDoc {
    fn from(s: McpServerSpec) -> Self {
        Self {
            name: s.name,
            url: s.url,
            header_name: s.header_name,
            secret_name: s.secret_name,
            allowed_tools: s.allowed_tools,
            side_effect_tools: s.side_effect_tools,
        }
    }
}

impl From<McpServerDoc> for McpServerSpec {
    fn from(d: McpServerDoc) -> Self {
        Self {
            name: d.name,
            url: d.url,
            header_name: d.header_name,
            secret_name: d.secret_name,
            allowed_tools: d.allowed_tools,
            side_effect_tools: d.side_effect_tools,
        }
    }
}

fn doc(list: Vec<McpServerSpec>) -> McpServersDoc {
    McpServersDoc {
        servers: list.into_iter().map(Into::into).collect(),
    }
}

impl AdminService {
    pub async fn mcp_servers(
        &self,
        who: &Principal,
        tenant: &str,
        agent: &str,
    ) -> Result<McpServersDoc, ServiceError> {
        let id = self.tenant_scope(who, tenant).await?;
        Ok(doc(self.store.mcp_servers(&id, agent).await?))
    }

    /// Replaces the agent's MCP servers (all or nothing).
    pub async fn put_mcp_servers(
        &self,
        who: &Principal,
        tenant: &str,
        agent: &str,
        req: McpServersDoc,
    ) -> Result<McpServersDoc, ServiceError> {
        use crate::store::Store as _;
        let id = self.tenant_scope(who, tenant).await?;
        let list: Vec<McpServerSpec> = req.servers.into_iter().map(Into::into).collect();
        crate::store::validate_mcp_servers(&list)?;
        let secrets = self.store.list_secrets(&id).await?;
        for server in &list {
            // The scheme and an IP-literal host are judged here; a name is resolved and judged
            // again at connect time, so DNS cannot bypass the guard.
            self.egress
                .check_url_str(&server.url)
                .map_err(|e| ServiceError::invalid("url", e.to_string()))?;
            if let Some(name) = &server.secret_name
                && !secrets.iter().any(|s| &s.name == name)
            {
                return Err(ServiceError::invalid(
                    "secret_name",
                    format!("this tenant has no secret named {name:?}; PUT it first"),
                ));
            }
        }
        let stored = self.store.put_mcp_servers(&id, agent, &list).await?;
        info!(tenant = %id, agent, count = stored.len(), "MCP servers replaced");
        Ok(doc(stored))
    }
}
