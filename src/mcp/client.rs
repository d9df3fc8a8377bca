//! The MCP client of one call: reaches the external MCP servers an agent names (the business's
//! own tools), lists their tools within a bounded time at call setup, and offers the allowed ones
//! to the model as [`Tool`]s named `<server>__<tool>`. A call to one goes through the registry
//! like any tool (its deadline, the spoken filler, the bounded output) and, when the tenant marks
//! the tool as side-effecting, through the tool-call ledger, so a replay does not repeat it.
//!
//! Every connection goes through the egress guard: the URL is checked before connecting, and the
//! HTTP client's resolver checks every address it connects to. The credential header's value is
//! revealed from the vault only while the connection is built and never logged. A server that
//! does not answer in time, refuses, or errors is skipped and reported; the call still starts.
//! It must not retry on its own, follow redirects, or hand the model more than the registry
//! allows.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use rmcp::ServiceExt;
use rmcp::model::{CallToolRequestParams, CallToolResult, ContentBlock, RequestMetaObject};
use rmcp::service::{RoleClient, RunningService};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::egress::{EgressError, EgressPolicy};
use crate::realtime::ToolDeclaration;
use crate::store::{McpServerSpec, SqlStore, TenantId};
use crate::tenant::vault::Vault;
use crate::tools::ledger::{SharedLedger, ToolInvocation, ToolOutcome, args_hash, run_once};
use crate::tools::{Tool, ToolContext, ToolError, ToolFuture};

/// How long listing an agent's MCP servers may hold up a call's setup (all servers at once).
pub const SETUP_TIMEOUT: Duration = Duration::from_secs(3);
/// Largest answer read from an MCP server (one JSON body or one SSE event).
pub const MAX_RESPONSE_BYTES: usize = 256 * 1024;
/// What separates the server's name from the remote tool's in the name the model sees.
pub const SEPARATOR: &str = "__";
/// The `_meta` key a side-effecting call carries its ledger idempotency key under.
pub const IDEMPOTENCY_META: &str = "io.callbridge/idempotency-key";
const MAX_ERROR_CHARS: usize = 300;

/// Why an MCP server's tools are not offered (no secret in the message).
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum McpClientError {
    #[error("{0}")]
    Egress(#[from] EgressError),
    #[error("the credential secret {secret:?} is unavailable: {reason}")]
    Secret { secret: String, reason: String },
    #[error("the credential of header {0:?} is not a valid header value")]
    HeaderValue(String),
    #[error("the HTTP client could not be built: {0}")]
    Client(String),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("the server refused the connection: {0}")]
    Handshake(String),
    #[error("listing the server's tools failed: {0}")]
    List(String),
}

/// What a call (or `doctor`) reaches MCP servers with, for one tenant.
#[derive(Clone)]
pub struct McpClientContext {
    pub tenant: TenantId,
    pub vault: Option<Vault<SqlStore>>,
    pub egress: EgressPolicy,
    pub ledger: SharedLedger,
    /// The registry's per-tool-call deadline (ledger waits use it too).
    pub deadline: Duration,
    /// How long connecting and listing may take.
    pub setup_timeout: Duration,
}

impl std::fmt::Debug for McpClientContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("McpClientContext")
            .field("tenant", &self.tenant)
            .field("deadline", &self.deadline)
            .field("setup_timeout", &self.setup_timeout)
            .finish_non_exhaustive()
    }
}

impl McpClientContext {
    /// For `tenant`'s calls, from the runtime every tool runs with (its vault, egress rule,
    /// ledger and deadline).
    pub fn for_tenant(runtime: &crate::tools::invoke::ToolRuntime, tenant: &TenantId) -> Self {
        Self {
            tenant: tenant.clone(),
            vault: runtime
                .keyring
                .clone()
                .map(|keyring| Vault::new(runtime.store.clone(), keyring)),
            egress: runtime.policy.config().egress.clone(),
            ledger: runtime.ledger.clone(),
            deadline: runtime.deadline,
            setup_timeout: SETUP_TIMEOUT,
        }
    }
}

/// One remote tool as the server listed it.
#[derive(Debug, Clone, PartialEq)]
pub struct RemoteToolInfo {
    pub name: String,
    pub description: String,
    pub schema: serde_json::Map<String, Value>,
    /// Whether the agent's configuration offers it to the model.
    pub allowed: bool,
}

/// A connected server: its session (closed when the last tool holding it is dropped, at the end
/// of the call) and its tools.
pub struct Connected {
    session: Arc<RunningService<RoleClient, ()>>,
    pub tools: Vec<RemoteToolInfo>,
}

/// What one server gave at setup: its offered tool names, or why it gave none.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerReport {
    pub server: String,
    pub outcome: Result<Vec<RemoteToolInfo>, McpClientError>,
}

fn truncate(text: &str, max: usize) -> String {
    let mut out: String = text.chars().take(max).collect();
    if out.len() < text.len() {
        out.push('…');
    }
    out
}

/// Connects to `spec`'s server and lists its tools, within `context.setup_timeout`.
pub async fn connect(
    spec: &McpServerSpec,
    context: &McpClientContext,
) -> Result<Connected, McpClientError> {
    let limit = context.setup_timeout;
    match tokio::time::timeout(limit, connect_unbounded(spec, context)).await {
        Ok(result) => result,
        Err(_) => Err(McpClientError::Timeout(limit)),
    }
}

async fn connect_unbounded(
    spec: &McpServerSpec,
    context: &McpClientContext,
) -> Result<Connected, McpClientError> {
    context.egress.check_url_str(&spec.url)?;
    let mut headers = HashMap::new();
    if let (Some(header), Some(secret)) = (&spec.header_name, &spec.secret_name) {
        let Some(vault) = &context.vault else {
            return Err(McpClientError::Secret {
                secret: secret.clone(),
                reason: "no master key is configured".into(),
            });
        };
        let value =
            vault
                .reveal(&context.tenant, secret)
                .await
                .map_err(|e| McpClientError::Secret {
                    secret: secret.clone(),
                    reason: e.to_string(),
                })?;
        let name = http::HeaderName::from_bytes(header.as_bytes())
            .map_err(|_| McpClientError::HeaderValue(header.clone()))?;
        let mut value = http::HeaderValue::from_str(value.expose_secret().trim())
            .map_err(|_| McpClientError::HeaderValue(header.clone()))?;
        value.set_sensitive(true);
        headers.insert(name, value);
    }
    // The guard's client: its resolver refuses internal addresses at connect time, no proxy,
    // no redirects.
    let http = context
        .egress
        .client_builder()
        .connect_timeout(context.setup_timeout)
        .build()
        .map_err(|e| McpClientError::Client(e.to_string()))?;
    let config = StreamableHttpClientTransportConfig::with_uri(spec.url.as_str())
        .custom_headers(headers)
        .max_json_response_size(MAX_RESPONSE_BYTES)
        .max_sse_event_size(MAX_RESPONSE_BYTES)
        .max_error_response_size(4 * 1024);
    let transport = StreamableHttpClientTransport::with_client(http, config);
    let session = ()
        .serve(transport)
        .await
        .map_err(|e| McpClientError::Handshake(truncate(&e.to_string(), MAX_ERROR_CHARS)))?;
    let listed = session
        .list_all_tools()
        .await
        .map_err(|e| McpClientError::List(truncate(&e.to_string(), MAX_ERROR_CHARS)))?;
    let tools = listed
        .into_iter()
        .map(|tool| RemoteToolInfo {
            allowed: spec.allowed_tools.iter().any(|a| a == tool.name.as_ref()),
            name: tool.name.to_string(),
            description: tool.description.as_deref().unwrap_or_default().to_owned(),
            schema: (*tool.input_schema).clone(),
        })
        .collect();
    Ok(Connected {
        session: Arc::new(session),
        tools,
    })
}

/// The agent's MCP servers, all at once within the setup bound: the tools to offer, and one report
/// per server (a server that failed offers nothing and says why).
pub async fn remote_tools(
    servers: &[McpServerSpec],
    context: &McpClientContext,
) -> (Vec<Arc<dyn Tool>>, Vec<ServerReport>) {
    let connected =
        futures_util::future::join_all(servers.iter().map(|spec| connect(spec, context))).await;
    let mut tools: Vec<Arc<dyn Tool>> = Vec::new();
    let mut reports = Vec::new();
    for (spec, result) in servers.iter().zip(connected) {
        match result {
            Ok(connected) => {
                for info in connected.tools.iter().filter(|t| t.allowed) {
                    tools.push(Arc::new(RemoteTool {
                        session: Arc::clone(&connected.session),
                        offered: format!("{}{SEPARATOR}{}", spec.name, info.name),
                        remote: info.name.clone(),
                        description: info.description.clone(),
                        schema: info.schema.clone(),
                        side_effect: spec.side_effect_tools.contains(&info.name),
                        tenant: context.tenant.clone(),
                        ledger: context.ledger.clone(),
                        deadline: context.deadline,
                    }));
                }
                reports.push(ServerReport {
                    server: spec.name.clone(),
                    outcome: Ok(connected.tools),
                });
            }
            Err(error) => reports.push(ServerReport {
                server: spec.name.clone(),
                outcome: Err(error),
            }),
        }
    }
    (tools, reports)
}

/// One remote tool, offered to the model as `<server>__<tool>`.
pub struct RemoteTool {
    session: Arc<RunningService<RoleClient, ()>>,
    offered: String,
    remote: String,
    description: String,
    schema: serde_json::Map<String, Value>,
    side_effect: bool,
    tenant: TenantId,
    ledger: SharedLedger,
    deadline: Duration,
}

impl Tool for RemoteTool {
    fn declaration(&self) -> ToolDeclaration {
        let mut parameters = self.schema.clone();
        parameters
            .entry("type")
            .or_insert_with(|| Value::String("object".into()));
        ToolDeclaration {
            name: self.offered.clone(),
            description: truncate(&self.description, 1024),
            parameters: Value::Object(parameters),
        }
    }

    fn invoke(&self, context: ToolContext, arguments: Value) -> ToolFuture {
        let peer = self.session.peer().clone();
        let remote = self.remote.clone();
        let side_effect = self.side_effect;
        let ledger = self.ledger.clone();
        let invocation = ToolInvocation {
            tenant: self.tenant.as_str().to_owned(),
            call_id: context.call_sid.clone(),
            tool_call_id: context.tool_call_id.clone(),
            tool: self.offered.clone(),
            args_hash: args_hash(&arguments),
        };
        let deadline = Instant::now() + self.deadline;
        Box::pin(async move {
            let Value::Object(arguments) = arguments else {
                return Err(ToolError::InvalidArguments(
                    "the arguments must be a JSON object".into(),
                ));
            };
            let call = |key: Option<String>| async move {
                let mut params = CallToolRequestParams::new(remote).with_arguments(arguments);
                if let Some(key) = key {
                    let mut meta = RequestMetaObject::default();
                    meta.0.0.insert(IDEMPOTENCY_META.into(), Value::String(key));
                    params.meta = Some(meta);
                }
                match peer.call_tool(params).await {
                    Ok(result) => answer(result),
                    Err(e) => {
                        tracing::warn!(error = %truncate(&e.to_string(), MAX_ERROR_CHARS), "MCP tool call failed");
                        crate::tools::record_diagnostic(&e.to_string());
                        Err("The business's system did not answer the request. \
                             Apologise and offer to try again."
                            .to_owned())
                    }
                }
            };
            if !side_effect {
                return call(None).await.map_err(ToolError::Failed);
            }
            match run_once(ledger.as_ref(), &invocation, deadline, |key| {
                call(Some(key))
            })
            .await
            {
                Ok(ToolOutcome::Succeeded(value)) => Ok(value),
                Ok(ToolOutcome::Failed(message)) => Err(ToolError::Failed(message)),
                Err(err) => {
                    tracing::warn!(tool = %invocation.tool, error = %err, "tool-call ledger failed");
                    Err(ToolError::Failed(
                        "I couldn't confirm whether that went through. Please don't repeat it \
                         yet; offer to check again in a moment."
                            .into(),
                    ))
                }
            }
        })
    }
}

/// A remote tool's result as the JSON the model gets: its structured content, else its text (as
/// JSON when it is JSON). A result the server marks as an error is a failure the model can speak
/// about, shortened.
fn answer(result: CallToolResult) -> Result<Value, String> {
    let text: Vec<&str> = result
        .content
        .iter()
        .filter_map(ContentBlock::as_text)
        .map(|t| t.text.as_str())
        .collect();
    let text = text.join("\n");
    if result.is_error == Some(true) {
        return Err(if text.is_empty() {
            "The business's system reported an error.".to_owned()
        } else {
            format!(
                "The business's system reported an error: {}",
                truncate(&text, MAX_ERROR_CHARS)
            )
        });
    }
    if let Some(structured) = result.structured_content {
        return Ok(structured);
    }
    Ok(serde_json::from_str::<Value>(&text).unwrap_or_else(|_| json!({ "text": text })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_result_is_a_short_failure_and_text_becomes_json() {
        let error = CallToolResult::error(vec![ContentBlock::text("x".repeat(1000))]);
        let message = answer(error).unwrap_err();
        assert!(message.starts_with("The business's system reported an error: x"));
        assert!(message.chars().count() < 400, "{}", message.len());
        let ok = CallToolResult::success(vec![ContentBlock::text(r#"{"order": "shipped"}"#)]);
        assert_eq!(answer(ok).unwrap(), json!({"order": "shipped"}));
        let plain = CallToolResult::success(vec![ContentBlock::text("shipped")]);
        assert_eq!(answer(plain).unwrap(), json!({"text": "shipped"}));
    }
}
