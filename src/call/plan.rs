//! Routing and the per-call plan: which tenant and agent answer a call, and everything the call
//! actor needs from that agent (provider dialect, voice, instructions, tools, limits).
//!
//! The voice webhook routes the called number; the media socket, once the stream token vouched for
//! the route, builds the plan from the agent record, so two tenants' calls never share
//! configuration. Calls to numbers no tenant owns follow `CALLBRIDGE_UNROUTED_CALLS`. This module
//! reads the store (agents, the tenant's own prompts); it must not touch sockets or prompt files.

use std::sync::Arc;
use std::time::Duration;

use secrecy::ExposeSecret;

use super::driver::CallDeps;
use crate::config::{
    Config, TemplatePart, UnroutedCalls, render_template, template_parts, unknown_variable,
};
use crate::realtime::gemini::GeminiDialect;
use crate::realtime::openai::OpenAiDialect;
use crate::realtime::xai::XaiDialect;
use crate::realtime::{AudioFormat, Dialect, ProviderAudio, SessionConfig, azure};
use crate::store::{Agent, E164, Store, StoreError, TenantId};
use crate::tools::ToolRegistry;
use crate::tools::resolver::ResolveError;
use tracing::warn;

/// Who answers a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// A tenant's agent, found by the called number.
    Agent { tenant: TenantId, agent_id: String },
    /// The agent configured by environment (no tenant: single-business deployments).
    Default,
    /// Nobody: the caller hears that the number is not in service.
    NotInService,
}

impl Route {
    /// The (tenant, agent) pair carried in the stream parameters; empty for the default agent.
    pub fn ids(&self) -> (&str, &str) {
        match self {
            Route::Agent { tenant, agent_id } => (tenant.as_str(), agent_id.as_str()),
            _ => ("", ""),
        }
    }

    /// The route named by stream parameters the token has vouched for.
    pub fn from_ids(tenant: &str, agent_id: &str) -> Result<Route, PlanError> {
        if tenant.is_empty() && agent_id.is_empty() {
            return Ok(Route::Default);
        }
        Ok(Route::Agent {
            tenant: TenantId::parse(tenant).map_err(PlanError::Store)?,
            agent_id: agent_id.to_owned(),
        })
    }
}

/// Why a call cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("no tenant owns the called number")]
    NotInService,
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("agent uses provider {0:?}, which this server does not offer")]
    UnknownProvider(String),
    #[error("agent uses provider {provider:?}, but {variable} is not configured")]
    ProviderNotConfigured {
        provider: &'static str,
        variable: &'static str,
    },
    #[error("agent's provider {provider:?}: {reason}")]
    ProviderSetup {
        provider: &'static str,
        reason: String,
    },
    #[error("prompt template {name:?}: {reason}")]
    Prompt { name: String, reason: String },
    #[error("tools: {0}")]
    Tools(#[from] ResolveError),
}

/// Everything one call runs with.
pub struct CallPlan {
    pub route: Route,
    pub dialect: Arc<dyn Dialect>,
    pub voice: String,
    /// The instructions template (not yet rendered with the call's variables).
    pub prompt_template: String,
    pub transcription_model: Option<String>,
    pub tools: Arc<ToolRegistry>,
    pub max_duration: Duration,
    pub silence_timeout: Duration,
    pub recording: bool,
    /// Per-call prompt variables of an outbound call (`{{var.NAME}}`); empty for inbound calls.
    /// Filled by [`CallPlan::with_call_variables`].
    pub call_variables: std::collections::BTreeMap<String, String>,
    /// Where `transfer_call` may send the caller (empty: the tool is not offered).
    pub transfer_destinations: Vec<crate::store::TransferDestination>,
    /// The agent's MCP servers skipped at setup, with why (recorded in the call's events).
    pub skipped_mcp_servers: Vec<(String, String)>,
}

impl CallPlan {
    /// Loads the per-call variables of the outbound call `call_sid` (none for inbound calls).
    pub async fn with_call_variables(mut self, deps: &CallDeps, call_sid: &str) -> Self {
        if let Route::Agent { tenant, .. } = &self.route
            && let Ok(call) = deps.store.call_by_twilio_sid(tenant, call_sid).await
            && let Ok(outbound) = deps.store.outbound_call(&call.id).await
        {
            self.call_variables = outbound.variables;
        }
        self
    }

    /// Adds the tools of the agent's external MCP servers (`crate::mcp::client`), connected for
    /// this call only (the voice webhook's check plan does not connect): listed within a bounded
    /// time; a server that fails is skipped, logged and counted (`callbridge doctor` says why),
    /// and the call starts without its tools. A remote tool never replaces another tool.
    pub async fn with_remote_tools(mut self, deps: &CallDeps) -> Self {
        use crate::mcp::client::{McpClientContext, remote_tools};
        let Route::Agent { tenant, agent_id } = &self.route else {
            return self;
        };
        let servers = match deps.store.mcp_servers(tenant, agent_id).await {
            Ok(servers) => servers,
            Err(error) => {
                deps.metrics.error("mcp_servers_unreadable");
                warn!(tenant = %tenant, error = %error, "MCP servers not read: their tools are not offered");
                return self;
            }
        };
        if servers.is_empty() {
            return self;
        }
        let context = McpClientContext::for_tenant(&deps.tool_runtime(), tenant);
        let (tools, reports) = remote_tools(&servers, &context).await;
        for report in &reports {
            if let Err(error) = &report.outcome {
                deps.metrics.error("mcp_server_unavailable");
                warn!(tenant = %tenant, server = %report.server, error = %error, "MCP server skipped: its tools are not offered");
                self.skipped_mcp_servers
                    .push((report.server.clone(), error.to_string()));
            }
        }
        let mut registry = (*self.tools).clone();
        for tool in tools {
            let name = tool.declaration().name;
            if registry.names().any(|known| known == name) {
                warn!(tenant = %tenant, tool = %name, "MCP tool not offered: the name is taken");
                continue;
            }
            registry.register(tool);
        }
        self.tools = Arc::new(registry);
        self
    }

    /// The session configuration for one call, with the prompt's variables filled in.
    pub fn session_config(&self, caller: &str, called: &str, call_sid: &str) -> SessionConfig {
        let audio_format = match self.dialect.provider_audio() {
            ProviderAudio::Pcmu => AudioFormat::Pcmu,
            ProviderAudio::Pcm16 { input_rate, .. } => AudioFormat::Pcm16 { rate: input_rate },
        };
        let now = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
        let call_variables: Vec<(String, &str)> = self
            .call_variables
            .iter()
            .map(|(name, value)| (format!("{CALL_VARIABLE_PREFIX}{name}"), value.as_str()))
            .collect();
        let mut values: Vec<(&str, &str)> = vec![
            ("caller", caller),
            ("called", called),
            ("call_sid", call_sid),
            ("now_utc", &now),
        ];
        values.extend(call_variables.iter().map(|(k, v)| (k.as_str(), *v)));
        SessionConfig {
            instructions: render_template(&self.prompt_template, &values),
            voice: self.voice.clone(),
            audio_format,
            tools: self.tools.declarations(),
            transcription_model: self.transcription_model.clone(),
            resumption_handle: None,
        }
    }
}

/// Decides who answers a call to `called`.
/// The tenant the quick-start calls (the default agent, no tenant of the caller's number) are
/// recorded under, created on the first such call with one agent row mirroring the default agent
/// (a call record names an agent of its tenant). `unrouted_calls = auto` does not count it as a
/// tenant: recording the first call must not turn the quick start's answering off.
pub const QUICKSTART_TENANT: &str = "quickstart";
/// The name of that agent row.
pub const QUICKSTART_AGENT: &str = "default";

/// The quick-start tenant and its agent id, created when missing (concurrent first calls: one
/// creates them, the others find them).
pub async fn quickstart_agent(
    store: &crate::store::SqlStore,
    config: &crate::config::Config,
) -> Result<(TenantId, String), StoreError> {
    let id = TenantId::parse(QUICKSTART_TENANT)?;
    match store.tenant(&id).await {
        Ok(_) => {}
        Err(StoreError::NotFound { .. }) => {
            let created = store
                .create_tenant(&crate::store::NewTenant {
                    id: id.clone(),
                    name: "Quick start (calls to the default agent)".into(),
                    time_zone: "UTC".into(),
                })
                .await;
            match created {
                Ok(_) | Err(StoreError::Conflict { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Err(e) => return Err(e),
    }
    if let Some(agent) = store
        .list_agents(&id)
        .await?
        .into_iter()
        .find(|a| a.spec.name == QUICKSTART_AGENT)
    {
        return Ok((id, agent.id));
    }
    let spec = crate::store::AgentSpec {
        name: QUICKSTART_AGENT.into(),
        provider: "openai".into(),
        model: config.openai_realtime_model.clone(),
        voice: config.voice.clone(),
        prompt_template: "default".into(),
        enabled_tools: Vec::new(),
        max_duration_s: u32::try_from(config.max_call.as_secs()).unwrap_or(u32::MAX),
        silence_timeout_s: u32::try_from(config.silence_timeout.as_secs()).unwrap_or(u32::MAX),
        recording: false,
        voicemail: None,
    };
    match store.create_agent(&id, &spec, &[]).await {
        Ok(agent) => Ok((id, agent.id)),
        Err(StoreError::Conflict { .. }) => {
            let agent = store
                .list_agents(&id)
                .await?
                .into_iter()
                .find(|a| a.spec.name == QUICKSTART_AGENT)
                .ok_or_else(|| StoreError::not_found("quick-start agent"))?;
            Ok((id, agent.id))
        }
        Err(e) => Err(e),
    }
}

pub async fn route_call(deps: &CallDeps, called: &str) -> Result<Route, PlanError> {
    if let Ok(number) = E164::parse(called)
        && let Some((tenant, agent)) = deps.store.number_route(&number).await?
    {
        return Ok(Route::Agent {
            tenant: tenant.id,
            agent_id: agent.id,
        });
    }
    let answer_unrouted = match deps.config.unrouted_calls {
        UnroutedCalls::Agent => true,
        UnroutedCalls::Reject => false,
        UnroutedCalls::Auto => deps
            .store
            .list_tenants()
            .await?
            .iter()
            .all(|t| t.id.as_str() == QUICKSTART_TENANT),
    };
    Ok(if answer_unrouted {
        Route::Default
    } else {
        Route::NotInService
    })
}

/// Builds the plan for a routed call.
pub async fn plan_call(deps: &CallDeps, route: Route) -> Result<CallPlan, PlanError> {
    let config = &deps.config;
    match &route {
        Route::Agent { tenant, agent_id } => {
            let agent = deps.store.agent(tenant, agent_id).await?;
            let dialect = dialect_for(config, &agent)?;
            let prompt_template = load_prompt(deps, tenant, &agent.spec.prompt_template).await?;
            let resolved = deps
                .tool_runtime()
                .resolve(tenant, &agent.spec.enabled_tools)
                .await?;
            for missing in resolved.unavailable.iter().filter(|m| m.tool != "opt_out") {
                // Not offered to the model; `callbridge doctor` reports the same.
                warn!(tenant = %tenant, tool = %missing.tool, reason = %missing.reason, "tool not offered");
            }
            let mut registry = resolved.registry;
            if agent
                .spec
                .enabled_tools
                .iter()
                .any(|name| name == "opt_out")
            {
                registry.register(crate::tools::opt_out(deps.store.clone(), tenant.clone()));
            }
            let transfer_destinations =
                transfer_destinations_for(deps, tenant, &agent, &mut registry).await?;
            Ok(CallPlan {
                route: route.clone(),
                dialect,
                voice: agent.spec.voice.clone(),
                prompt_template,
                transcription_model: config.transcription_model.clone(),
                tools: Arc::new(registry),
                max_duration: Duration::from_secs(agent.spec.max_duration_s.into()),
                silence_timeout: Duration::from_secs(agent.spec.silence_timeout_s.into()),
                recording: agent.spec.recording,
                call_variables: Default::default(),
                transfer_destinations,
                skipped_mcp_servers: Vec::new(),
            })
        }
        // Nobody answers such a call: the webhook says "not in service" before any plan is made.
        Route::NotInService => Err(PlanError::NotInService),
        Route::Default => Ok(CallPlan {
            route: Route::Default,
            dialect: deps.dialect.clone(),
            voice: config.voice.clone(),
            prompt_template: config.prompt_template.clone(),
            transcription_model: config.transcription_model.clone(),
            tools: deps.tools.clone(),
            max_duration: config.max_call,
            silence_timeout: config.silence_timeout,
            recording: false,
            call_variables: Default::default(),
            transfer_destinations: Vec::new(),
            skipped_mcp_servers: Vec::new(),
        }),
    }
}

/// Records a call whose setup failed in its tenant's history (status `failed`, end reason
/// `setup_failed_<what>` and an `error` event with the full reason), so the tenant sees the call the caller made and why it could not be
/// answered. Default-agent and not-in-service calls have no tenant to record them under. A store
/// failure here is counted and logged; the caller still hears the apology.
pub async fn record_failed_setup(
    deps: &CallDeps,
    route: &Route,
    call_sid: &str,
    from: &str,
    to: &str,
    error: &PlanError,
) {
    let Route::Agent { tenant, agent_id } = route else {
        return;
    };
    let call = crate::store::NewCall {
        tenant_id: tenant.clone(),
        agent_id: agent_id.clone(),
        direction: crate::store::CallDirection::Inbound,
        from: from.to_owned(),
        to: to.to_owned(),
        twilio_call_sid: Some(call_sid.to_owned()),
        status: crate::store::CallStatus::InProgress,
    };
    let what = match error {
        PlanError::UnknownProvider(_)
        | PlanError::ProviderNotConfigured { .. }
        | PlanError::ProviderSetup { .. } => "provider",
        PlanError::Prompt { .. } => "prompt",
        PlanError::Tools(_) => "tools",
        PlanError::Store(_) | PlanError::NotInService => "internal",
    };
    let end = crate::store::CallEnd {
        status: crate::store::CallStatus::Failed,
        end_reason: format!("setup_failed_{what}"),
        recording_path: None,
    };
    let reason = serde_json::json!({ "stage": "setup", "reason": error.to_string() });
    let written = async {
        let created = deps.store.create_call(&call).await?;
        deps.store
            .append_call_event(
                tenant,
                &created.id,
                crate::store::CallEventKind::Error,
                &reason,
            )
            .await?;
        deps.store.finish_call(tenant, &created.id, &end).await
    }
    .await;
    if let Err(e) = written {
        deps.metrics.error("store_write_failed");
        warn!(error = %e, "cannot record the failed call");
    }
}

/// The agent's transfer destinations; registers `transfer_call` when the agent enables it and has
/// some.
async fn transfer_destinations_for(
    deps: &CallDeps,
    tenant: &TenantId,
    agent: &Agent,
    registry: &mut ToolRegistry,
) -> Result<Vec<crate::store::TransferDestination>, PlanError> {
    let enabled = agent
        .spec
        .enabled_tools
        .iter()
        .any(|name| name == crate::realtime::TRANSFER_CALL_TOOL);
    // Loaded even when the model may not transfer: a supervisor still can (live-calls API).
    let destinations = deps.store.transfer_destinations(tenant, &agent.id).await?;
    if !enabled {
        return Ok(destinations);
    }
    if destinations.is_empty() {
        warn!(tenant = %tenant, tool = "transfer_call", reason = "the agent has no transfer destinations", "tool not offered");
        return Ok(destinations);
    }
    let zone: chrono_tz::Tz = deps
        .store
        .tenant(tenant)
        .await?
        .time_zone
        .parse()
        .unwrap_or(chrono_tz::Tz::UTC);
    registry.register(Arc::new(super::transfer::TransferTool::new(
        destinations.clone(),
        zone,
    )));
    Ok(destinations)
}

/// The dialect for an agent's provider, refused when the provider has no key configured.
pub fn dialect_for(config: &Config, agent: &Agent) -> Result<Arc<dyn Dialect>, PlanError> {
    let model = agent.spec.model.clone();
    let not_configured =
        |provider, variable| PlanError::ProviderNotConfigured { provider, variable };
    match agent.spec.provider.as_str() {
        "openai" => Ok(Arc::new(OpenAiDialect::new(
            config.openai_realtime_url.clone(),
            model,
            config.openai_api_key.expose_secret(),
        ))),
        "xai" => {
            let access = config
                .xai
                .as_ref()
                .ok_or_else(|| not_configured("xai", "XAI_API_KEY"))?;
            Ok(Arc::new(XaiDialect::new(
                access.url.clone(),
                model,
                access.api_key.expose_secret(),
            )))
        }
        "azure" => {
            let access = config
                .azure
                .as_ref()
                .ok_or_else(|| not_configured("azure", "AZURE_OPENAI_API_KEY"))?;
            let dialect = azure::dialect(&access.url, &model, access.api_key.expose_secret())
                .map_err(|e| PlanError::ProviderSetup {
                    provider: "azure",
                    reason: e.to_string(),
                })?;
            Ok(Arc::new(dialect))
        }
        "gemini" => {
            let access = config
                .gemini
                .as_ref()
                .ok_or_else(|| not_configured("gemini", "GEMINI_API_KEY"))?;
            Ok(Arc::new(GeminiDialect::new(
                access.url.clone(),
                model,
                access.api_key.expose_secret(),
            )))
        }
        other => Err(PlanError::UnknownProvider(other.to_owned())),
    }
}

/// The prompt named `name`: `default` is the server's configured prompt; anything else is the
/// current version of the tenant's own stored prompt (never a file, never another tenant's),
/// checked again for unknown variables.
pub async fn load_prompt(
    deps: &CallDeps,
    tenant: &TenantId,
    name: &str,
) -> Result<String, PlanError> {
    let error = |reason: String| PlanError::Prompt {
        name: name.to_owned(),
        reason,
    };
    if name == "default" {
        return Ok(deps.config.prompt_template.clone());
    }
    let prompt = match deps.store.prompt(tenant, name, None).await {
        Ok(prompt) => prompt,
        Err(StoreError::NotFound { .. }) => {
            return Err(error("the tenant has no prompt of that name".into()));
        }
        Err(e) => return Err(e.into()),
    };
    check_agent_template(&prompt.body).map_err(error)?;
    Ok(prompt.body)
}

/// Prefix of per-call variables in prompt templates (`{{var.name}}`).
pub const CALL_VARIABLE_PREFIX: &str = "var.";

/// [`crate::config::check_template`] plus per-call variables `{{var.NAME}}` (NAME: letters, digits, `_`); a
/// variable the call does not carry renders empty.
pub fn check_agent_template(template: &str) -> Result<(), String> {
    for part in template_parts(template) {
        match part {
            TemplatePart::Text(_) => {}
            TemplatePart::Unclosed(_) => return Err("a {{ is never closed".to_owned()),
            TemplatePart::Variable(name) => match name.strip_prefix(CALL_VARIABLE_PREFIX) {
                Some(var) => {
                    if var.is_empty() || !var.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                    {
                        return Err(format!(
                            "call variable {{{{{name}}}}}: names are letters, digits and _"
                        ));
                    }
                }
                None => {
                    if let Some(error) = unknown_variable(name) {
                        return Err(error);
                    }
                }
            },
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn call_variables_are_allowed_and_checked() {
        assert!(
            check_agent_template("Hi {{var.name}}, calling {{ called }} about {{var.plan_2}}")
                .is_ok()
        );
        assert!(check_agent_template("{{var.}}").is_err());
        assert!(check_agent_template("{{var.a-b}}").is_err());
        assert!(check_agent_template("{{secret}} {{var.x}}").is_err());
        assert!(check_agent_template("{{var.x").is_err());
    }

    #[test]
    fn call_variables_render_into_instructions() {
        let rendered = render_template(
            "Hello {{var.name}} ({{caller}}){{var.missing}}",
            &[("caller", "+1"), ("var.name", "Ana")],
        );
        assert_eq!(rendered, "Hello Ana (+1)");
    }
}
