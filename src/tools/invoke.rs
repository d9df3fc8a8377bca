//! Running a tenant's tools outside a call — `callbridge tools invoke`, `callbridge tools list`,
//! `POST /api/v1/tools/{tool}/invoke` — through exactly the code a call uses: the per-tenant
//! resolver (only connectors with credentials), the shared HTTP policy, the ledger, and
//! [`ToolRegistry::run`] with its deadline and structured errors. It must not add a path of its own.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use super::capabilities::TOOLS;
use super::ledger::SharedLedger;
use super::resolver::{ResolveError, Resolved, registry_for_agent_with};
use super::{ToolContext, builtin};
use crate::connectors::http::HttpPolicy;
use crate::store::{SqlStore, TenantId};
use crate::tenant::vault::{Keyring, Vault};

/// What running tools needs, shared by the server, the CLI and the API.
#[derive(Clone)]
pub struct ToolRuntime {
    pub store: SqlStore,
    pub keyring: Option<Keyring>,
    pub policy: HttpPolicy,
    pub ledger: SharedLedger,
    pub deadline: Duration,
    /// The OAuth gateway: a tenant's connected accounts serve its connectors.
    pub oauth: Option<crate::oauth::OAuthService>,
}

impl std::fmt::Debug for ToolRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ToolRuntime")
            .field("vault", &self.keyring.is_some())
            .field("deadline", &self.deadline)
            .finish()
    }
}

/// What running a tool by hand produced.
#[derive(Debug, Clone)]
pub struct Invoked {
    /// The JSON the model would get.
    pub output: Value,
    /// `ok`, `failed`, `timeout`, …
    pub outcome: &'static str,
    /// The connector's real error when the tool failed (redacted; never shown to the model).
    pub error_detail: Option<String>,
}

/// Why a tool could not be run.
#[derive(Debug, thiserror::Error)]
pub enum InvokeError {
    #[error("{0}")]
    Resolve(#[from] ResolveError),
    #[error("tool {tool:?} is not available for this tenant: {reason}")]
    Unavailable { tool: String, reason: String },
    #[error("unknown tool {0:?}")]
    UnknownTool(String),
}

/// Every tool name a tenant may enable: the capability tools and the built-ins.
pub fn known_tools() -> Vec<&'static str> {
    let mut names: Vec<&'static str> = TOOLS.iter().map(|spec| spec.name).collect();
    names.push(super::send_message::SEND_MESSAGE);
    names.push("get_current_time");
    names
}

impl ToolRuntime {
    fn vault(&self) -> Option<Vault<SqlStore>> {
        self.keyring
            .clone()
            .map(|keyring| Vault::new(self.store.clone(), keyring))
    }

    /// The registry a call of `tenant` would get with `enabled` tools (the same resolver as calls).
    pub async fn resolve(
        &self,
        tenant: &TenantId,
        enabled: &[String],
    ) -> Result<Resolved, ResolveError> {
        let vault = self.vault();
        registry_for_agent_with(
            &self.store,
            vault.as_ref(),
            &self.policy,
            self.oauth.as_ref(),
            self.ledger.clone(),
            Arc::new(self.store.clone()),
            Some(&self.store),
            tenant,
            enabled,
            self.deadline,
        )
        .await
    }

    /// Runs `tool` for `tenant` with `arguments`, as a call would; returns the JSON output the model
    /// would get, its outcome label and, when it failed, the connector's real error (status and
    /// vendor code, redacted) for the operator.
    pub async fn invoke(
        &self,
        tenant: &TenantId,
        tool: &str,
        arguments: &Value,
        caller: &str,
    ) -> Result<Invoked, InvokeError> {
        let id = format!("{:016x}", rand::random::<u64>());
        let context = ToolContext {
            call_sid: format!("invoke-{id}"),
            caller: caller.to_owned(),
            called: String::new(),
            tool_call_id: format!("call_{id}"),
            call_started: None,
            inbound: None,
        };
        self.invoke_in(tenant, tool, arguments, context).await
    }

    /// [`Self::invoke`] under an explicit [`ToolContext`]: the ledger recognises a repeat of the
    /// same `tool_call_id` (or of the same tool and arguments under the same `call_sid`), so a
    /// surface that retries (MCP) names its own ids and the side effect still happens once.
    pub async fn invoke_in(
        &self,
        tenant: &TenantId,
        tool: &str,
        arguments: &Value,
        context: ToolContext,
    ) -> Result<Invoked, InvokeError> {
        if !known_tools().contains(&tool) && builtin(tool).is_none() {
            return Err(InvokeError::UnknownTool(tool.to_owned()));
        }
        let resolved = self.resolve(tenant, &[tool.to_owned()]).await?;
        if let Some(missing) = resolved.unavailable.iter().find(|u| u.tool == tool) {
            return Err(InvokeError::Unavailable {
                tool: tool.to_owned(),
                reason: missing.reason.clone(),
            });
        }
        let registry = Arc::new(resolved.registry);
        let ((output, outcome), details) =
            super::with_diagnostics(registry.run(context, tool, &arguments.to_string())).await;
        let output = serde_json::from_str(&output).unwrap_or(Value::String(output));
        Ok(Invoked {
            output,
            outcome,
            error_detail: (!details.is_empty()).then(|| details.join("; ")),
        })
    }
}
