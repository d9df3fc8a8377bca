//! The MCP server of one tenant: `tools/list` is exactly the tools the tenant can use (capability
//! tools whose connector is configured and has credentials, and the built-ins that make sense
//! outside a call), `tools/call` runs them through [`ToolRuntime::invoke_in`] — the resolver, the
//! shared HTTP policy, the ledger, the deadline and the bounded, model-safe output a call gets —
//! and two read-only resources show the tenant's recent calls and a call's transcript.
//!
//! The tenant comes from the HTTP surface, which authenticated the request and put a
//! [`McpTenant`] in its extensions; the SDK hands those request parts to every handler call. A
//! session is bound to the tenant that opened it: a request for that session under another
//! tenant's key is refused. Nothing here authenticates, and nothing reads another tenant's rows:
//! every read goes through the admin service with the tenant's own [`Principal`].

use std::sync::{Arc, OnceLock};

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation,
    InitializeRequestParams, InitializeResult, ListResourceTemplatesResult, ListResourcesResult,
    ListToolsResult, PaginatedRequestParams, ReadResourceRequestParams, ReadResourceResponse,
    ReadResourceResult, Resource, ResourceContents, ResourceTemplate, ServerCapabilities,
    ServerConfig, Tool as McpTool,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer, ServerHandler};
use serde_json::{Value, json};

use crate::admin::{AdminService, Principal, ServiceError};
use crate::metrics::Metrics;
use crate::realtime::ToolDeclaration;
use crate::store::TenantId;
use crate::tools::ToolContext;
use crate::tools::invoke::{InvokeError, ToolRuntime, known_tools};

/// The tenant an MCP request was authenticated for, put in the HTTP request's extensions by the
/// surface that authenticated it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct McpTenant(pub TenantId);

/// How many recent calls `callbridge://calls` lists (and how many transcripts `resources/list`
/// names).
pub const RECENT_CALLS: u32 = 20;

const CALLS_URI: &str = "callbridge://calls";
const TRANSCRIPT_PREFIX: &str = "callbridge://calls/";
const TRANSCRIPT_SUFFIX: &str = "/transcript";

/// What every session's handler shares.
#[derive(Clone)]
pub struct McpServerDeps {
    pub runtime: ToolRuntime,
    pub service: AdminService,
    pub metrics: Arc<Metrics>,
}

impl std::fmt::Debug for McpServerDeps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("McpServerDeps").finish_non_exhaustive()
    }
}

/// The handler of one MCP session (the SDK builds one per session).
#[derive(Debug, Clone)]
pub struct TenantToolServer {
    deps: McpServerDeps,
    /// The tenant that opened the session.
    bound: Arc<OnceLock<TenantId>>,
}

impl TenantToolServer {
    pub fn new(deps: McpServerDeps) -> Self {
        Self {
            deps,
            bound: Arc::new(OnceLock::new()),
        }
    }

    /// The request's tenant, which must be the session's.
    fn tenant(&self, context: &RequestContext<RoleServer>) -> Result<TenantId, ErrorData> {
        let tenant = context
            .extensions
            .get::<http::request::Parts>()
            .and_then(|parts| parts.extensions.get::<McpTenant>())
            .map(|t| t.0.clone())
            .ok_or_else(|| {
                self.deps.metrics.error("mcp_unauthenticated");
                ErrorData::invalid_request("the request carries no authenticated tenant", None)
            })?;
        let bound = self.bound.get_or_init(|| tenant.clone());
        if *bound != tenant {
            self.deps.metrics.error("mcp_session_tenant_mismatch");
            return Err(ErrorData::invalid_request(
                "this session was opened for another tenant",
                None,
            ));
        }
        Ok(tenant)
    }

    /// The tools `tenant` can use, as declared to a model.
    pub async fn tools_of(
        runtime: &ToolRuntime,
        tenant: &TenantId,
    ) -> Result<Vec<ToolDeclaration>, ErrorData> {
        let offered: Vec<String> = known_tools().into_iter().map(str::to_owned).collect();
        let resolved = runtime
            .resolve(tenant, &offered)
            .await
            .map_err(|e| internal(&e))?;
        let names: Vec<&str> = resolved.registry.names().collect();
        Ok(resolved
            .registry
            .declarations()
            .into_iter()
            .filter(|d| names.contains(&d.name.as_str()))
            .collect())
    }

    fn principal(tenant: &TenantId) -> Principal {
        Principal::Tenant(tenant.clone())
    }
}

fn internal(error: &dyn std::fmt::Display) -> ErrorData {
    tracing::warn!(error = %error, "MCP request failed");
    ErrorData::internal_error("the request could not be served", None)
}

fn service_error(error: ServiceError) -> ErrorData {
    match error {
        ServiceError::NotFound(what) => {
            ErrorData::resource_not_found(format!("{what} not found"), None)
        }
        ServiceError::Invalid { field, message } => {
            ErrorData::invalid_params(format!("invalid {field}: {message}"), None)
        }
        other => internal(&other),
    }
}

/// An MCP tool from a tool's declaration (its JSON schema must be an object).
pub fn mcp_tool(declaration: ToolDeclaration) -> McpTool {
    let schema = match declaration.parameters {
        Value::Object(map) => map,
        _ => serde_json::Map::from_iter([("type".to_owned(), json!("object"))]),
    };
    McpTool::new(declaration.name, declaration.description, Arc::new(schema))
}

/// The id a JSON-RPC request id gives a tool call in the ledger.
fn request_id_text(context: &RequestContext<RoleServer>) -> String {
    match serde_json::to_value(&context.id) {
        Ok(Value::String(s)) => s,
        Ok(other) => other.to_string(),
        Err(_) => format!("{:016x}", rand::random::<u64>()),
    }
}

/// The MCP session id the client sent, if any (stateful streamable HTTP).
fn session_id(context: &RequestContext<RoleServer>) -> Option<String> {
    context
        .extensions
        .get::<http::request::Parts>()
        .and_then(|parts| parts.headers.get("mcp-session-id"))
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128)
        .map(str::to_owned)
}

impl ServerHandler for TenantToolServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_resources()
                .build(),
        )
        .with_server_info(Implementation::new("callbridge", env!("CARGO_PKG_VERSION")))
        .with_instructions(
            "The tools of one callbridge tenant (calendar, CRM, commerce, …), run exactly as \
             during a phone call. Resources: callbridge://calls (recent calls) and \
             callbridge://calls/{call_id}/transcript.",
        )
    }

    async fn initialize(
        &self,
        request: InitializeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<InitializeResult, ErrorData> {
        // Binds the session to the tenant that opens it.
        self.tenant(&context)?;
        context.peer.set_peer_info(request.clone());
        self.negotiate_initialize(&request)
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let tenant = self.tenant(&context)?;
        let tools = Self::tools_of(&self.deps.runtime, &tenant).await?;
        Ok(ListToolsResult::with_all_items(
            tools.into_iter().map(mcp_tool).collect(),
        ))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let tenant = self.tenant(&context)?;
        let name = request.name.to_string();
        let arguments = Value::Object(request.arguments.unwrap_or_default());
        // A retry of the same request in the same session is the same tool call for the ledger.
        let session =
            session_id(&context).unwrap_or_else(|| format!("{:016x}", rand::random::<u64>()));
        let tool_context = ToolContext {
            call_sid: format!("mcp-{session}"),
            caller: String::new(),
            called: String::new(),
            tool_call_id: format!("mcp-{}", request_id_text(&context)),
            call_started: None,
            inbound: None,
        };
        let invoked = match self
            .deps
            .runtime
            .invoke_in(&tenant, &name, &arguments, tool_context)
            .await
        {
            Ok(invoked) => invoked,
            // Another tenant's tool, or one this tenant has no connector for, answers like a
            // tool that does not exist.
            Err(InvokeError::UnknownTool(_) | InvokeError::Unavailable { .. }) => {
                self.deps.metrics.error("mcp_unknown_tool");
                return Err(ErrorData::invalid_params(
                    format!("there is no tool called {name:?}"),
                    None,
                ));
            }
            Err(InvokeError::Resolve(e)) => return Err(internal(&e)),
        };
        self.deps.metrics.tool_call(invoked.outcome);
        if let Some(detail) = &invoked.error_detail {
            tracing::info!(tenant = %tenant, tool = %name, detail = %detail, "MCP tool call failed");
        }
        let text = invoked.output.to_string();
        let mut result = if invoked.outcome == "ok" {
            CallToolResult::success(vec![ContentBlock::text(text)])
        } else {
            CallToolResult::error(vec![ContentBlock::text(text)])
        };
        result.structured_content = Some(invoked.output);
        Ok(result.into())
    }

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        let tenant = self.tenant(&context)?;
        let calls = self
            .deps
            .service
            .list_calls(
                &Self::principal(&tenant),
                tenant.as_str(),
                Some(RECENT_CALLS),
            )
            .await
            .map_err(service_error)?;
        let mut resources = vec![
            Resource::new(CALLS_URI, "recent-calls")
                .with_title("Recent calls")
                .with_description(format!(
                    "The tenant's {RECENT_CALLS} most recent calls, newest first"
                ))
                .with_mime_type("application/json"),
        ];
        resources.extend(calls.into_iter().map(|call| {
            Resource::new(
                format!("{TRANSCRIPT_PREFIX}{}{TRANSCRIPT_SUFFIX}", call.id),
                format!("transcript-{}", call.id),
            )
            .with_title(format!(
                "Transcript of the {} call {} → {} at {}",
                call.direction, call.from, call.to, call.started_at
            ))
            .with_mime_type("application/json")
        }));
        Ok(ListResourcesResult::with_all_items(resources))
    }

    async fn list_resource_templates(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, ErrorData> {
        self.tenant(&context)?;
        Ok(ListResourceTemplatesResult::with_all_items(vec![
            ResourceTemplate::new(
                format!("{TRANSCRIPT_PREFIX}{{call_id}}{TRANSCRIPT_SUFFIX}"),
                "call-transcript",
            )
            .with_title("A call's transcript")
            .with_description("The call, then what was said and which tools ran, in order")
            .with_mime_type("application/json"),
        ]))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        let tenant = self.tenant(&context)?;
        let who = Self::principal(&tenant);
        let uri = request.uri;
        let body = if uri == CALLS_URI {
            let calls = self
                .deps
                .service
                .list_calls(&who, tenant.as_str(), Some(RECENT_CALLS))
                .await
                .map_err(service_error)?;
            json!({ "calls": calls })
        } else if let Some(call_id) = uri
            .strip_prefix(TRANSCRIPT_PREFIX)
            .and_then(|rest| rest.strip_suffix(TRANSCRIPT_SUFFIX))
            .filter(|id| !id.is_empty() && !id.contains('/'))
        {
            let detail = self
                .deps
                .service
                .get_call(&who, tenant.as_str(), call_id)
                .await
                .map_err(service_error)?;
            let transcript: Vec<_> = detail
                .events
                .into_iter()
                .filter(|e| matches!(e.kind.as_str(), "transcript" | "tool_call" | "tool_result"))
                .collect();
            json!({ "call": detail.call, "transcript": transcript })
        } else {
            return Err(ErrorData::resource_not_found(
                format!("no resource {uri:?}"),
                None,
            ));
        };
        Ok(ReadResourceResult::new(vec![
            ResourceContents::text(body.to_string(), uri).with_mime_type("application/json"),
        ])
        .into())
    }
}
