//! The MCP part of `callbridge doctor`: for each agent's external MCP server, connect the way a
//! call does (egress guard, sealed credential, bounded time) and list its tools — which the agent
//! offers, which it allows that the server does not have — or say why it cannot be reached.
//!
//! It must not call a remote tool (listing is harmless; a call may not be), print a credential,
//! or stop at the first failure: one broken server is one failed row.

use std::fmt::Write as _;

use super::client::{McpClientContext, connect};
use crate::store::{Store, StoreError, TenantId};
use crate::tools::invoke::ToolRuntime;

/// One server of one agent: the tools it lists, or why not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct McpServerRow {
    pub tenant: TenantId,
    /// The agent's name.
    pub agent: String,
    pub server: String,
    pub outcome: Result<McpServerTools, String>,
}

/// What a reachable server lists, against what the agent allows.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct McpServerTools {
    /// Offered to the model, as `<server>__<tool>`.
    pub offered: Vec<String>,
    /// Listed by the server but not allowed by the agent.
    pub not_allowed: Vec<String>,
    /// Allowed by the agent but not listed by the server.
    pub missing: Vec<String>,
}

/// Checks every MCP server of every agent of every tenant (of `only`, when given).
pub async fn check_mcp_servers(
    runtime: &ToolRuntime,
    only: Option<&TenantId>,
) -> Result<Vec<McpServerRow>, StoreError> {
    let tenants = match only {
        Some(tenant) => vec![tenant.clone()],
        None => runtime
            .store
            .list_tenants()
            .await?
            .into_iter()
            .map(|t| t.id)
            .collect(),
    };
    let mut rows = Vec::new();
    for tenant in tenants {
        let context = McpClientContext::for_tenant(runtime, &tenant);
        for agent in runtime.store.list_agents(&tenant).await? {
            for spec in runtime.store.mcp_servers(&tenant, &agent.id).await? {
                let outcome = connect(&spec, &context)
                    .await
                    .map(|connected| {
                        let mut tools = McpServerTools::default();
                        for info in &connected.tools {
                            if info.allowed {
                                tools.offered.push(format!(
                                    "{}{}{}",
                                    spec.name,
                                    super::client::SEPARATOR,
                                    info.name
                                ));
                            } else {
                                tools.not_allowed.push(info.name.clone());
                            }
                        }
                        tools.missing = spec
                            .allowed_tools
                            .iter()
                            .filter(|a| !connected.tools.iter().any(|t| &t.name == *a))
                            .cloned()
                            .collect();
                        tools
                    })
                    .map_err(|e| e.to_string());
                rows.push(McpServerRow {
                    tenant: tenant.clone(),
                    agent: agent.spec.name.clone(),
                    server: spec.name.clone(),
                    outcome,
                });
            }
        }
    }
    Ok(rows)
}

impl McpServerRow {
    /// Reachable, and every allowed tool is there.
    pub fn is_ok(&self) -> bool {
        matches!(&self.outcome, Ok(tools) if tools.missing.is_empty())
    }
}

/// The rows as text, one line per server.
pub fn format_mcp(rows: &[McpServerRow]) -> String {
    let mut out = String::from("MCP SERVERS\n");
    for row in rows {
        let status = match &row.outcome {
            Ok(tools) => {
                let mut line = format!("ok     tools: {}", list(&tools.offered));
                if !tools.missing.is_empty() {
                    let _ = write!(line, "; allowed but not listed: {}", list(&tools.missing));
                }
                if !tools.not_allowed.is_empty() {
                    let _ = write!(line, "; not offered: {}", list(&tools.not_allowed));
                }
                line
            }
            Err(message) => format!("error  {}", message.replace(['\n', '\r'], " ")),
        };
        let _ = writeln!(out, "{}/{}/{}  {status}", row.tenant, row.agent, row.server);
    }
    out
}

fn list(names: &[String]) -> String {
    if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_server_is_one_line_with_its_tools_or_its_error() {
        let tenant = TenantId::parse("acme").expect("id");
        let rows = vec![
            McpServerRow {
                tenant: tenant.clone(),
                agent: "front-desk".into(),
                server: "shop".into(),
                outcome: Ok(McpServerTools {
                    offered: vec!["shop__lookup_order".into()],
                    not_allowed: vec!["delete_everything".into()],
                    missing: vec!["refund".into()],
                }),
            },
            McpServerRow {
                tenant,
                agent: "front-desk".into(),
                server: "crm".into(),
                outcome: Err("no answer within\n3s".into()),
            },
        ];
        assert!(!rows[0].is_ok());
        assert_eq!(
            format_mcp(&rows),
            "MCP SERVERS\n\
             acme/front-desk/shop  ok     tools: shop__lookup_order; allowed but not listed: refund; not offered: delete_everything\n\
             acme/front-desk/crm  error  no answer within 3s\n"
        );
    }
}
