//! The health check behind `callbridge doctor`: for each configured connector of each tenant,
//! build it (decrypting its secret through the vault) and make its harmless read; for each agent,
//! whether a call to it could be set up (provider configured here, model and voice, its prompt,
//! its tools).
//!
//! Owns: the result rows (tenant, vendor or agent, ok or an error message, latency) and their
//! table form.
//! It must not write to vendors, print secrets, or stop at the first failure: one broken
//! connector is one failed row.

use std::fmt::Write as _;
use std::time::Duration;

use tokio::time::Instant;

use super::resolver::build_connector_with;
use crate::connectors::http::{HttpPolicy, RequestContext};
use crate::oauth::OAuthService;
use crate::store::{Store, StoreError, TenantId};
use crate::tenant::vault::Vault;

/// The outcome of checking one connector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthRow {
    pub tenant: TenantId,
    pub vendor: String,
    /// `Ok` or why not (no secret value in it).
    pub outcome: Result<(), String>,
    /// Time to build the connector and make its read.
    pub latency: Duration,
}

impl HealthRow {
    pub fn is_ok(&self) -> bool {
        self.outcome.is_ok()
    }
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DoctorError {
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Checks every configured connector of `tenant`, each within `timeout`.
pub async fn check_tenant<S: Store>(
    store: &S,
    vault: Option<&Vault<S>>,
    policy: &HttpPolicy,
    tenant: &TenantId,
    timeout: Duration,
) -> Result<Vec<HealthRow>, DoctorError> {
    check_tenant_with(store, vault, policy, None, tenant, timeout).await
}

/// [`check_tenant`], with the tenants' OAuth connections (a connection that must be connected
/// again is reported as such).
pub async fn check_tenant_with<S: Store>(
    store: &S,
    vault: Option<&Vault<S>>,
    policy: &HttpPolicy,
    oauth: Option<&OAuthService>,
    tenant: &TenantId,
    timeout: Duration,
) -> Result<Vec<HealthRow>, DoctorError> {
    let mut rows = Vec::new();
    for config in store.list_connectors(tenant).await? {
        let started = Instant::now();
        let deadline = started + timeout;
        let check = async {
            let connector = build_connector_with(&config, vault, policy, oauth)
                .await
                .map_err(|err| err.to_string())?;
            let ctx = RequestContext::new(tenant.as_str(), "doctor", deadline);
            connector
                .health_check(&ctx)
                .await
                .map_err(|err| err.to_string())
        };
        let outcome = match tokio::time::timeout_at(deadline, check).await {
            Ok(outcome) => outcome,
            Err(_) => Err(format!("no answer within {timeout:?}")),
        };
        rows.push(HealthRow {
            tenant: tenant.clone(),
            vendor: config.spec.vendor.clone(),
            outcome,
            latency: started.elapsed(),
        });
    }
    Ok(rows)
}

/// Checks every configured connector of every tenant.
pub async fn check_all<S: Store>(
    store: &S,
    vault: Option<&Vault<S>>,
    policy: &HttpPolicy,
    timeout: Duration,
) -> Result<Vec<HealthRow>, DoctorError> {
    check_all_with(store, vault, policy, None, timeout).await
}

/// [`check_all`], with the tenants' OAuth connections.
pub async fn check_all_with<S: Store>(
    store: &S,
    vault: Option<&Vault<S>>,
    policy: &HttpPolicy,
    oauth: Option<&OAuthService>,
    timeout: Duration,
) -> Result<Vec<HealthRow>, DoctorError> {
    let mut rows = Vec::new();
    for tenant in store.list_tenants().await? {
        rows.extend(check_tenant_with(store, vault, policy, oauth, &tenant.id, timeout).await?);
    }
    Ok(rows)
}

/// Whether one agent could answer a call on this deployment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentRow {
    pub tenant: TenantId,
    pub agent: String,
    /// Empty when a call could be set up; otherwise every reason it could not, or a tool it
    /// would lack.
    pub problems: Vec<String>,
}

/// Checks every agent of every tenant against `providers` (the providers this deployment has
/// keys for), the provider catalog, the tenant's prompts and the tools `runtime` resolves.
pub async fn check_agents(
    runtime: &super::invoke::ToolRuntime,
    providers: &[&str],
) -> Result<Vec<AgentRow>, DoctorError> {
    let store = &runtime.store;
    let mut rows = Vec::new();
    for tenant in store.list_tenants().await? {
        for agent in store.list_agents(&tenant.id).await? {
            let spec = &agent.spec;
            let mut problems = Vec::new();
            if let Err(e) = crate::realtime::catalog::check_agent_voice(
                &spec.provider,
                &spec.model,
                &spec.voice,
            ) {
                problems.push(format!("{}: {}", e.field, e.message));
            } else if !providers.contains(&spec.provider.as_str()) {
                problems.push(format!(
                    "provider {:?} is not configured on this server",
                    spec.provider
                ));
            }
            if spec.prompt_template != "default" {
                match store.prompt(&tenant.id, &spec.prompt_template, None).await {
                    Ok(_) => {}
                    Err(StoreError::NotFound { .. }) => problems.push(format!(
                        "prompt {:?} does not exist for this tenant",
                        spec.prompt_template
                    )),
                    Err(e) => return Err(e.into()),
                }
            }
            match runtime.resolve(&tenant.id, &spec.enabled_tools).await {
                Ok(resolved) => problems.extend(
                    resolved
                        .unavailable
                        .iter()
                        .filter(|m| m.tool != "opt_out")
                        .map(|m| format!("tool {}: {}", m.tool, m.reason)),
                ),
                Err(e) => problems.push(format!("tools: {e}")),
            }
            // `transfer_call` without destinations is not offered to the model (call setup logs
            // it); say so before a caller asks for a person.
            if spec
                .enabled_tools
                .iter()
                .any(|t| t == crate::realtime::TRANSFER_CALL_TOOL)
                && store
                    .transfer_destinations(&tenant.id, &agent.id)
                    .await?
                    .is_empty()
            {
                problems.push(
                    "tool transfer_call: the agent has no transfer destinations, so the tool is \
                     not offered (PUT …/agents/{agent}/transfer-destinations)"
                        .to_owned(),
                );
            }
            rows.push(AgentRow {
                tenant: tenant.id.clone(),
                agent: spec.name.clone(),
                problems,
            });
        }
    }
    Ok(rows)
}

/// The agent rows as text, one line per agent.
pub fn format_agents(rows: &[AgentRow]) -> String {
    let mut out = String::from("AGENTS\n");
    for row in rows {
        let status = if row.problems.is_empty() {
            "ok".to_owned()
        } else {
            format!(
                "error  {}",
                row.problems.join("; ").replace(['\n', '\r'], " ")
            )
        };
        let _ = writeln!(out, "{}/{}  {status}", row.tenant, row.agent);
    }
    out
}

/// The rows as a fixed-width text table, one line per connector, errors on their own column.
pub fn format_table(rows: &[HealthRow]) -> String {
    let headers = ["TENANT", "VENDOR", "STATUS", "LATENCY", "DETAIL"];
    let lines: Vec<[String; 5]> = rows
        .iter()
        .map(|row| {
            let (status, detail) = match &row.outcome {
                Ok(()) => ("ok", String::new()),
                Err(message) => ("error", message.replace(['\n', '\r'], " ")),
            };
            [
                row.tenant.to_string(),
                row.vendor.clone(),
                status.to_owned(),
                format!("{} ms", row.latency.as_millis()),
                detail,
            ]
        })
        .collect();
    let mut widths = headers.map(str::len);
    for line in &lines {
        for (width, cell) in widths.iter_mut().zip(line) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut write_line = |cells: [&str; 5]| {
        let mut text = String::new();
        for (index, (cell, width)) in cells.iter().zip(widths).enumerate() {
            if index + 1 == cells.len() {
                text.push_str(cell);
            } else {
                let _ = write!(text, "{cell:<width$}  ");
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    write_line(headers);
    for line in &lines {
        write_line([&line[0], &line[1], &line[2], &line[3], &line[4]]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_aligns_columns_and_keeps_errors_on_one_line() {
        let tenant = TenantId::parse("acme-dental").expect("id");
        let rows = vec![
            HealthRow {
                tenant: tenant.clone(),
                vendor: "calcom".into(),
                outcome: Ok(()),
                latency: Duration::from_millis(12),
            },
            HealthRow {
                tenant,
                vendor: "hubspot".into(),
                outcome: Err("vendor authorisation failed:\naccount".into()),
                latency: Duration::from_millis(3),
            },
        ];
        let table = format_table(&rows);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0], "TENANT       VENDOR   STATUS  LATENCY  DETAIL");
        assert_eq!(lines[1], "acme-dental  calcom   ok      12 ms");
        assert_eq!(
            lines[2],
            "acme-dental  hubspot  error   3 ms     vendor authorisation failed: account"
        );
    }
}
