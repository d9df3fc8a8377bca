//! Per-agent external MCP servers: where an agent's calls may take tools from (the business's own
//! MCP server), with the header that authenticates to it named by a sealed secret, the remote tool
//! names offered to the model and those that have side effects (run through the ledger).
//!
//! It validates and stores rows; it must not check URLs against the egress guard (the admin
//! service does at write time, the MCP client before each connection), decrypt the header's
//! secret, or connect. Methods are inherent on [`SqlStore`] like the other feature tables, and
//! every one takes the [`TenantId`] and filters by it.

use serde::{Deserialize, Serialize};
use sqlx::Row;
use sqlx::any::AnyRow;

use super::error::{WriteFailure, classify};
use super::model::{validate_secret_name, validate_slug};
use super::{SqlStore, StoreError, StoreResult, TenantId};

/// Most MCP servers one agent may use (each is listed at call setup).
pub const MAX_MCP_SERVERS: usize = 5;
/// Most remote tools one server may offer to the model.
pub const MAX_MCP_TOOLS: usize = 32;
const MAX_URL_CHARS: usize = 2048;
const MAX_TOOL_NAME_CHARS: usize = 64;

/// One external MCP server of an agent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct McpServerSpec {
    /// The prefix the server's tools are offered under (`crm` → `crm__lookup_order`).
    pub name: String,
    /// The server's streamable HTTP endpoint (`https://mcp.example.com/mcp`).
    pub url: String,
    /// The header that carries the credential (`Authorization`, `X-Api-Key`); set together
    /// with `secret_name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header_name: Option<String>,
    /// The tenant secret whose value is sent in `header_name` (`Bearer …` for `Authorization`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_name: Option<String>,
    /// The remote tool names offered to the model; nothing else the server lists is.
    pub allowed_tools: Vec<String>,
    /// The allowed tools that change something (book, pay, write): each runs at most once per
    /// tool call through the ledger.
    #[serde(default)]
    pub side_effect_tools: Vec<String>,
}

/// Whether `name` may be a remote tool name here: what the model's function names allow.
fn valid_tool_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_TOOL_NAME_CHARS
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
}

impl McpServerSpec {
    /// Checks every field, with an error naming the field. The URL's destination is checked by
    /// the egress guard, not here.
    pub fn validate(&self) -> StoreResult<()> {
        validate_slug("MCP server name", &self.name, 32)?;
        if self.name.contains("__") {
            return Err(StoreError::invalid(
                "MCP server name",
                "must not contain \"__\" (it separates the server from the tool)",
            ));
        }
        if self.url.len() > MAX_URL_CHARS
            || !(self.url.starts_with("https://") || self.url.starts_with("http://"))
        {
            return Err(StoreError::invalid(
                "MCP server url",
                format!("must be an http(s) URL of at most {MAX_URL_CHARS} characters"),
            ));
        }
        match (&self.header_name, &self.secret_name) {
            (None, None) => {}
            (Some(header), Some(secret)) => {
                let token = !header.is_empty()
                    && header.len() <= 64
                    && header
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
                if !token {
                    return Err(StoreError::invalid(
                        "MCP server header_name",
                        format!("{header:?} is not an HTTP header name"),
                    ));
                }
                validate_secret_name(secret)?;
            }
            _ => {
                return Err(StoreError::invalid(
                    "MCP server header_name",
                    "header_name and secret_name go together",
                ));
            }
        }
        if self.allowed_tools.is_empty() || self.allowed_tools.len() > MAX_MCP_TOOLS {
            return Err(StoreError::invalid(
                "MCP server allowed_tools",
                format!("name 1 to {MAX_MCP_TOOLS} remote tools"),
            ));
        }
        for (i, tool) in self.allowed_tools.iter().enumerate() {
            if !valid_tool_name(tool) {
                return Err(StoreError::invalid(
                    "MCP server allowed_tools",
                    format!(
                        "{tool:?} is not a tool name (letters, digits, _ - ., at most {MAX_TOOL_NAME_CHARS})"
                    ),
                ));
            }
            if self.allowed_tools[..i].contains(tool) {
                return Err(StoreError::invalid(
                    "MCP server allowed_tools",
                    format!("{tool:?} appears twice"),
                ));
            }
        }
        if let Some(tool) = self
            .side_effect_tools
            .iter()
            .find(|t| !self.allowed_tools.contains(t))
        {
            return Err(StoreError::invalid(
                "MCP server side_effect_tools",
                format!("{tool:?} is not in allowed_tools"),
            ));
        }
        Ok(())
    }
}

/// Checks a whole list: each server, unique names, the size cap.
pub fn validate_mcp_servers(list: &[McpServerSpec]) -> StoreResult<()> {
    if list.len() > MAX_MCP_SERVERS {
        return Err(StoreError::invalid(
            "MCP servers",
            format!("at most {MAX_MCP_SERVERS} per agent"),
        ));
    }
    for (i, server) in list.iter().enumerate() {
        server.validate()?;
        if list[..i].iter().any(|s| s.name == server.name) {
            return Err(StoreError::invalid(
                "MCP server name",
                format!("{:?} appears twice", server.name),
            ));
        }
    }
    Ok(())
}

fn names(row: &AnyRow, column: &'static str) -> StoreResult<Vec<String>> {
    let raw: String = row.try_get(column)?;
    serde_json::from_str(&raw).map_err(|e| StoreError::Corrupt {
        what: column,
        reason: e.to_string(),
    })
}

fn from_row(row: &AnyRow) -> StoreResult<McpServerSpec> {
    Ok(McpServerSpec {
        name: row.try_get("name")?,
        url: row.try_get("url")?,
        header_name: row.try_get("header_name")?,
        secret_name: row.try_get("secret_name")?,
        allowed_tools: names(row, "allowed_tools")?,
        side_effect_tools: names(row, "side_effect_tools")?,
    })
}

fn to_json(list: &[String]) -> StoreResult<String> {
    serde_json::to_string(list).map_err(|e| StoreError::invalid("MCP server tools", e.to_string()))
}

impl SqlStore {
    /// The agent's MCP servers in the order they were given. Unknown agent (or another
    /// tenant's) → [`StoreError::NotFound`].
    pub async fn mcp_servers(
        &self,
        tenant: &TenantId,
        agent_id: &str,
    ) -> StoreResult<Vec<McpServerSpec>> {
        use super::Store as _;
        self.agent(tenant, agent_id).await?;
        let rows = sqlx::query(
            "SELECT name, url, header_name, secret_name, allowed_tools, side_effect_tools \
             FROM agent_mcp_servers WHERE tenant_id = $1 AND agent_id = $2 ORDER BY position",
        )
        .bind(tenant.as_str())
        .bind(agent_id)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(from_row).collect()
    }

    /// Replaces the agent's MCP servers with `list` (validated first; all or nothing).
    pub async fn put_mcp_servers(
        &self,
        tenant: &TenantId,
        agent_id: &str,
        list: &[McpServerSpec],
    ) -> StoreResult<Vec<McpServerSpec>> {
        validate_mcp_servers(list)?;
        let mut tx = self.pool().begin().await?;
        sqlx::query("DELETE FROM agent_mcp_servers WHERE tenant_id = $1 AND agent_id = $2")
            .bind(tenant.as_str())
            .bind(agent_id)
            .execute(&mut *tx)
            .await?;
        for (position, server) in list.iter().enumerate() {
            sqlx::query(
                "INSERT INTO agent_mcp_servers (tenant_id, agent_id, name, position, url, \
                 header_name, secret_name, allowed_tools, side_effect_tools) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            )
            .bind(tenant.as_str())
            .bind(agent_id)
            .bind(server.name.as_str())
            .bind(position as i64)
            .bind(server.url.as_str())
            .bind(server.header_name.as_deref())
            .bind(server.secret_name.as_deref())
            .bind(to_json(&server.allowed_tools)?)
            .bind(to_json(&server.side_effect_tools)?)
            .execute(&mut *tx)
            .await
            .map_err(|err| match classify(err) {
                WriteFailure::ForeignKey => StoreError::not_found(format!("agent {agent_id}")),
                WriteFailure::Unique => StoreError::conflict("MCP server name"),
                WriteFailure::Other(err) => StoreError::Database(err),
            })?;
        }
        tx.commit().await?;
        // An unknown agent with an empty list inserted nothing: still answer not found.
        self.mcp_servers(tenant, agent_id).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server() -> McpServerSpec {
        McpServerSpec {
            name: "shop".into(),
            url: "https://mcp.example.com/mcp".into(),
            header_name: Some("Authorization".into()),
            secret_name: Some("shop-mcp".into()),
            allowed_tools: vec!["lookup_order".into(), "refund".into()],
            side_effect_tools: vec!["refund".into()],
        }
    }

    #[test]
    fn a_server_is_checked_field_by_field() {
        server().validate().unwrap();
        type Change = fn(&mut McpServerSpec);
        let cases: Vec<(Change, &str)> = vec![
            (|s| s.name = "Shop".into(), "name"),
            (|s| s.name = "a__b".into(), "name"),
            (|s| s.url = "ftp://x".into(), "url"),
            (|s| s.secret_name = None, "header_name"),
            (|s| s.header_name = Some("Bad Header".into()), "header_name"),
            (|s| s.allowed_tools.clear(), "allowed_tools"),
            (
                |s| s.allowed_tools.push("has space".into()),
                "allowed_tools",
            ),
            (|s| s.allowed_tools.push("refund".into()), "allowed_tools"),
            (
                |s| s.side_effect_tools.push("delete_all".into()),
                "side_effect_tools",
            ),
        ];
        for (change, field) in cases {
            let mut bad = server();
            change(&mut bad);
            let err = bad.validate().unwrap_err().to_string();
            assert!(err.contains(field), "{field}: {err}");
        }
        let mut open = server();
        open.header_name = None;
        open.secret_name = None;
        open.validate().unwrap();
    }

    #[test]
    fn a_list_has_unique_names_and_a_cap() {
        validate_mcp_servers(&[server()]).unwrap();
        assert!(validate_mcp_servers(&[server(), server()]).is_err());
        let many: Vec<_> = (0..=MAX_MCP_SERVERS)
            .map(|i| McpServerSpec {
                name: format!("s{i}"),
                ..server()
            })
            .collect();
        assert!(validate_mcp_servers(&many).is_err());
    }
}
