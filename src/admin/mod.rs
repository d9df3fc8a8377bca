//! The administration service: every operation of the admin API and of the operator CLI, in one
//! code path. It owns authorization (who may see which tenant), validation of request fields
//! beyond what the store checks (known vendors, prompt templates, limits, webhook URLs) and the
//! mapping from store rows to views. It must not know about HTTP or the terminal: handlers and
//! CLI commands are thin adapters around these methods.
//!
//! Tenant isolation: a tenant principal asking about any other tenant gets exactly the NotFound
//! a missing tenant gets, and every nested object is read through the tenant-scoped store, so
//! another tenant's agent, number, secret or call id is indistinguishable from a missing one.

pub mod analysis;
pub mod campaigns;
pub mod connections;
pub mod do_not_call;
pub mod dto;
pub mod inbound;
pub mod mcp_servers;
pub mod messaging;
pub mod prompts;
pub mod retention;
pub mod transfer;

use std::path::{Path, PathBuf};

use secrecy::{ExposeSecret, SecretString};
use tracing::info;

use crate::store::{
    AgentSpec, ConnectorSpec, E164, NewTenant, SqlStore, Store, StoreError, TenantId,
    WebhookSettingsSpec,
};
use crate::tenant::api_keys;
use crate::tenant::vault::{Keyring, MASTER_KEY_ENV, MasterKey, RotationReport, Vault, VaultError};
use crate::webhooks::{self, SigningSecret};

use self::dto::*;

/// Connector vendors a tenant may configure: the registry's ids (the one vendor list).
pub fn known_vendors() -> Vec<&'static str> {
    crate::connectors::registry::ids().collect()
}

/// The secret vendor of webhook signing secrets.
pub const WEBHOOK_VENDOR: &str = "webhook";
/// Name under which a generated signing secret is stored when none is given.
pub const DEFAULT_SIGNING_SECRET_NAME: &str = "webhook-signing";
/// Largest prompt text, in bytes.
pub const MAX_PROMPT_BYTES: u64 = crate::store::MAX_PROMPT_BYTES as u64;
/// Environment variable holding the new master key for `secret rotate-master`.
pub const NEW_MASTER_KEY_ENV: &str = "CALLBRIDGE_NEW_MASTER_KEY";
const DEFAULT_CALLS_LIMIT: u32 = 50;
const MAX_CALLS_LIMIT: u32 = 500;

/// Who is asking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// The operator (admin key, or the CLI with database access): every tenant.
    Admin,
    /// A tenant API key: that tenant only.
    Tenant(TenantId),
}

/// Why an operation was refused; each maps to one HTTP status and one CLI message.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("{0} not found")]
    NotFound(String),
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("invalid {field}: {message}")]
    Invalid { field: String, message: String },
    #[error("prompt template {name:?} is {size} bytes; the limit is {MAX_PROMPT_BYTES}")]
    PromptTooLarge { name: String, size: u64 },
    #[error("prompt template {name:?}: {message}")]
    InvalidPrompt { name: String, message: String },
    #[error("{0}")]
    Forbidden(String),
    /// Secrets cannot be written or read without a master key.
    #[error("secrets are unavailable: {0}")]
    VaultUnavailable(String),
    /// A failure that is not the caller's fault; details are logged, not returned.
    #[error("internal error: {0}")]
    Internal(String),
    /// A dependency (Twilio) is temporarily unavailable or rate limiting; try again later.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// A contacts file that cannot be imported (bad header, no valid row, or bad rows when
    /// strict), with every bad row and its line.
    #[error("invalid csv: {message}")]
    InvalidCsv {
        message: String,
        rejected: Vec<crate::store::RejectedRow>,
    },
    /// An uploaded file over its size limit.
    #[error("too large: {0}")]
    TooLarge(String),
}

impl ServiceError {
    pub(crate) fn invalid(field: &str, message: impl Into<String>) -> Self {
        Self::Invalid {
            field: field.to_owned(),
            message: message.into(),
        }
    }
}

impl From<StoreError> for ServiceError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::NotFound { what } => Self::NotFound(what),
            StoreError::Conflict { what } => Self::Conflict(what),
            StoreError::Invalid { field, reason } => Self::Invalid {
                field: request_field(field).to_owned(),
                message: reason,
            },
            other => Self::Internal(other.to_string()),
        }
    }
}

impl From<VaultError> for ServiceError {
    fn from(err: VaultError) -> Self {
        match err {
            VaultError::Store(e) => e.into(),
            VaultError::InvalidSecret(message) => Self::invalid("value", message),
            VaultError::MissingMasterKey | VaultError::InvalidMasterKey { .. } => {
                Self::VaultUnavailable(err.to_string())
            }
            other => Self::Internal(other.to_string()),
        }
    }
}

/// The JSON field a store validation error is about.
fn request_field(store_field: &str) -> &str {
    match store_field {
        "phone number" => "number",
        "tenant name" | "agent name" => "name",
        "tenant id" => "id",
        "time zone" => "time_zone",
        "agent provider" => "provider",
        "agent model" => "model",
        "agent voice" => "voice",
        "agent prompt template" => "prompt_template",
        "prompt name" => "name",
        "prompt text" => "text",
        "agent enabled tool" | "agent enabled tools" => "enabled_tools",
        "agent max duration" => "max_duration_s",
        "agent silence timeout" => "silence_timeout_s",
        "connector vendor" | "secret vendor" => "vendor",
        "connector base URL" => "base_url",
        "secret name" => "secret_name",
        "campaign name" => "name",
        "campaign window" => "window",
        "campaign pacing" | "tenant pacing" => "calls_per_second",
        "campaign max_concurrent" | "tenant max_concurrent" => "max_concurrent",
        "campaign max_attempts" => "max_attempts",
        "campaign retry delay" => "retry_delay_secs",
        "campaign contacts" => "csv",
        "voicemail text" => "voicemail.message",
        "do-not-call reason" => "reason",
        other => other,
    }
}

/// The service. Cheap to clone.
#[derive(Clone, Debug)]
pub struct AdminService {
    store: SqlStore,
    prompts_dir: PathBuf,
    /// `Err` holds why secrets are unavailable (no or bad master key), for the 503 message.
    vault: Result<Vault<SqlStore>, String>,
    /// Places outbound calls; `None` when Twilio REST is not configured.
    dialer: Option<crate::campaign::Dialer>,
    /// Where tenant-set URLs (connector base URLs) may point; checked when they are written (and
    /// again by the outbound policy when a request is sent).
    egress: crate::egress::EgressPolicy,
    /// The OAuth gateway; `None` when no master key is configured.
    oauth: Option<crate::oauth::OAuthService>,
    /// The realtime providers this deployment has keys for; `None` when the service does not
    /// know the deployment (the CLI run elsewhere): then only the catalog is checked.
    providers: Option<Vec<&'static str>>,
    /// Inbound webhook sources and rules; `None` without the server's public URL.
    inbound: Option<crate::inbound::InboundService>,
}

/// The realtime providers a server configuration can reach (OpenAI's key is required; the others
/// are configured by their key variables).
pub fn configured_providers(config: &crate::config::Config) -> Vec<&'static str> {
    let mut providers = vec!["openai"];
    if config.xai.is_some() {
        providers.push("xai");
    }
    if config.azure.is_some() {
        providers.push("azure");
    }
    if config.gemini.is_some() {
        providers.push("gemini");
    }
    providers
}

/// The key variable of a provider, for error messages.
fn provider_variable(provider: &str) -> &'static str {
    match provider {
        "xai" => "XAI_API_KEY",
        "azure" => "AZURE_OPENAI_API_KEY and AZURE_OPENAI_ENDPOINT",
        "gemini" => "GEMINI_API_KEY",
        _ => "OPENAI_API_KEY",
    }
}

impl AdminService {
    /// `keyring` is the result of loading the master key(s); without one, every secret operation
    /// fails with [`ServiceError::VaultUnavailable`] naming `CALLBRIDGE_MASTER_KEY`.
    pub fn new(
        store: SqlStore,
        prompts_dir: PathBuf,
        keyring: Result<Keyring, VaultError>,
    ) -> Self {
        let vault = keyring
            .map(|keyring| Vault::new(store.clone(), keyring))
            .map_err(|e| match e {
                VaultError::MissingMasterKey => format!(
                    "no master key is configured: set {MASTER_KEY_ENV} (base64 of 32 random \
                     bytes)"
                ),
                other => format!("{other} (check {MASTER_KEY_ENV})"),
            });
        Self {
            store,
            prompts_dir,
            vault,
            dialer: None,
            egress: crate::egress::EgressPolicy::strict(),
            oauth: None,
            providers: None,
            inbound: None,
        }
    }

    /// Enables inbound webhook management (sources, rules, events) over `inbound`.
    pub fn with_inbound(mut self, inbound: crate::inbound::InboundService) -> Self {
        self.inbound = Some(inbound);
        self
    }

    /// Refuses agents whose provider this deployment has no key for.
    pub fn with_providers(mut self, providers: Vec<&'static str>) -> Self {
        self.providers = Some(providers);
        self
    }

    /// Checks tenant-set URLs against `egress` (the default is strict: public `https` only).
    pub fn with_egress(mut self, egress: crate::egress::EgressPolicy) -> Self {
        self.egress = egress;
        self
    }

    /// Enables outbound calls through `dialer`.
    pub fn with_dialer(mut self, dialer: crate::campaign::Dialer) -> Self {
        self.dialer = Some(dialer);
        self
    }

    /// [`AdminService::new`] with the keyring from the environment.
    pub fn from_env(store: SqlStore, prompts_dir: PathBuf) -> Self {
        Self::new(store, prompts_dir, Keyring::from_env())
    }

    pub fn store(&self) -> &SqlStore {
        &self.store
    }

    /// The server's directory of prompt template files (importable, never read by calls).
    pub fn prompts_dir(&self) -> &Path {
        &self.prompts_dir
    }

    fn vault(&self) -> Result<&Vault<SqlStore>, ServiceError> {
        self.vault
            .as_ref()
            .map_err(|why| ServiceError::VaultUnavailable(why.clone()))
    }

    /// The tenant `raw` names, if `who` may see it and it exists; NotFound otherwise, the same
    /// answer in both cases.
    pub(crate) async fn tenant_scope(
        &self,
        who: &Principal,
        raw: &str,
    ) -> Result<TenantId, ServiceError> {
        let not_found = || ServiceError::NotFound(format!("tenant {raw:?}"));
        let id = TenantId::parse(raw).map_err(|_| not_found())?;
        if let Principal::Tenant(own) = who
            && own != &id
        {
            return Err(not_found());
        }
        match self.store.tenant(&id).await {
            Ok(_) => Ok(id),
            Err(StoreError::NotFound { .. }) => Err(not_found()),
            Err(e) => Err(e.into()),
        }
    }

    /// The tenant a request names (`raw`), or the caller's own when a tenant key omits it; the
    /// admin key must name one.
    pub(crate) async fn requested_tenant(
        &self,
        who: &Principal,
        raw: Option<&str>,
    ) -> Result<TenantId, ServiceError> {
        let raw = match (who, raw) {
            (_, Some(tenant)) => tenant.to_owned(),
            (Principal::Tenant(own), None) => own.as_str().to_owned(),
            (Principal::Admin, None) => {
                return Err(ServiceError::invalid(
                    "tenant",
                    "required with the admin key",
                ));
            }
        };
        self.tenant_scope(who, &raw).await
    }

    fn admin_only(who: &Principal, what: &str) -> Result<(), ServiceError> {
        match who {
            Principal::Admin => Ok(()),
            Principal::Tenant(_) => Err(ServiceError::Forbidden(format!(
                "{what} requires the admin key"
            ))),
        }
    }

    // --- tenants -----------------------------------------------------------------------------

    pub async fn create_tenant(
        &self,
        who: &Principal,
        req: CreateTenantRequest,
    ) -> Result<TenantView, ServiceError> {
        Self::admin_only(who, "creating a tenant")?;
        let raw_id = match &req.id {
            Some(id) => id.clone(),
            None => slug_from_name(&req.name).ok_or_else(|| {
                ServiceError::invalid("name", "cannot derive a tenant id from it; give an id")
            })?,
        };
        let id = TenantId::parse(&raw_id)?;
        let tenant = self
            .store
            .create_tenant(&NewTenant {
                id,
                name: req.name,
                time_zone: req.time_zone,
            })
            .await?;
        info!(tenant = %tenant.id, "tenant created");
        Ok(tenant.into())
    }

    pub async fn list_tenants(&self, who: &Principal) -> Result<Vec<TenantView>, ServiceError> {
        match who {
            Principal::Admin => Ok(self
                .store
                .list_tenants()
                .await?
                .into_iter()
                .map(Into::into)
                .collect()),
            Principal::Tenant(own) => Ok(vec![self.store.tenant(own).await?.into()]),
        }
    }

    pub async fn get_tenant(
        &self,
        who: &Principal,
        tenant: &str,
    ) -> Result<TenantView, ServiceError> {
        let id = self.tenant_scope(who, tenant).await?;
        Ok(self.store.tenant(&id).await?.into())
    }

    pub async fn update_tenant(
        &self,
        who: &Principal,
        tenant: &str,
        req: UpdateTenantRequest,
    ) -> Result<TenantView, ServiceError> {
        let id = self.tenant_scope(who, tenant).await?;
        let current = self.store.tenant(&id).await?;
        let name = req.name.unwrap_or(current.name);
        let time_zone = req.time_zone.unwrap_or(current.time_zone);
        Ok(self
            .store
            .update_tenant(&id, &name, &time_zone)
            .await?
            .into())
    }

    pub async fn delete_tenant(&self, who: &Principal, tenant: &str) -> Result<(), ServiceError> {
        let id = self.tenant_scope(who, tenant).await?;
        Self::admin_only(who, "deleting a tenant")?;
        // The recording files go with the tenant's rows: collected first, removed once the rows
        // are gone (a failed delete leaves both in place).
        let recordings: Vec<String> = self
            .store
            .list_calls(&id, u32::MAX)
            .await?
            .into_iter()
            .filter_map(|c| c.recording_path)
            .collect();
        self.store.delete_tenant(&id).await?;
        let mut removed = 0usize;
        for path in &recordings {
            match std::fs::remove_file(path) {
                Ok(()) => removed += 1,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::warn!(tenant = %id, error = %e, "cannot remove a recording file")
                }
            }
        }
        info!(tenant = %id, recordings = removed, "tenant deleted");
        Ok(())
    }

    // --- API keys ----------------------------------------------------------------------------

    pub async fn create_api_key(
        &self,
        who: &Principal,
        tenant: &str,
    ) -> Result<CreatedApiKey, ServiceError> {
        let id = self.tenant_scope(who, tenant).await?;
        let issued = api_keys::issue_api_key(&self.store, &id).await?;
        info!(tenant = %id, prefix = %issued.key.prefix, "API key issued");
        Ok(CreatedApiKey {
            api_key: issued.key.into(),
            key: issued.secret.expose_secret().to_owned(),
        })
    }

    pub async fn list_api_keys(
        &self,
        who: &Principal,
        tenant: &str,
    ) -> Result<Vec<ApiKeyView>, ServiceError> {
        let id = self.tenant_scope(who, tenant).await?;
        Ok(views(self.store.list_api_keys(&id).await?))
    }

    pub async fn revoke_api_key(
        &self,
        who: &Principal,
        tenant: &str,
        key_id: &str,
    ) -> Result<ApiKeyView, ServiceError> {
        let id = self.tenant_scope(who, tenant).await?;
        let key = self.store.revoke_api_key(&id, key_id).await?;
        info!(tenant = %id, prefix = %key.prefix, "API key revoked");
        Ok(key.into())
    }

    // --- agents ------------------------------------------------------------------------------

    async fn agent_spec(
        &self,
        tenant: &TenantId,
        req: AgentRequest,
    ) -> Result<AgentSpec, ServiceError> {
        self.check_agent_prompt(tenant, &req.prompt_template)
            .await?;
        self.check_agent_runs(tenant, &req).await?;
        if !(10..=14_400).contains(&req.max_duration_s) {
            return Err(ServiceError::invalid(
                "max_duration_s",
                "must be between 10 and 14400 seconds",
            ));
        }
        if !(5..=3600).contains(&req.silence_timeout_s) {
            return Err(ServiceError::invalid(
                "silence_timeout_s",
                "must be between 5 and 3600 seconds",
            ));
        }
        if req.enabled_tools.len() > 64 {
            return Err(ServiceError::invalid("enabled_tools", "at most 64 tools"));
        }
        Ok(AgentSpec {
            name: req.name,
            provider: req.provider,
            model: req.model,
            voice: req.voice,
            prompt_template: req.prompt_template,
            enabled_tools: req.enabled_tools,
            max_duration_s: req.max_duration_s,
            silence_timeout_s: req.silence_timeout_s,
            recording: req.recording,
            voicemail: campaigns::voicemail_choice(req.voicemail.as_ref())?.resolve(None),
        })
    }

    pub async fn create_agent(
        &self,
        who: &Principal,
        tenant: &str,
        req: AgentRequest,
    ) -> Result<AgentView, ServiceError> {
        let id = self.tenant_scope(who, tenant).await?;
        let spec = self.agent_spec(&id, req).await?;
        let agent = self.store.create_agent(&id, &spec, &[]).await?;
        info!(tenant = %id, agent = %agent.id, "agent created");
        Ok(agent.into())
    }

    pub async fn list_agents(
        &self,
        who: &Principal,
        tenant: &str,
    ) -> Result<Vec<AgentView>, ServiceError> {
        let id = self.tenant_scope(who, tenant).await?;
        Ok(views(self.store.list_agents(&id).await?))
    }

    /// The agent named by its id or its name.
    pub async fn get_agent(
        &self,
        who: &Principal,
        tenant: &str,
        agent: &str,
    ) -> Result<AgentView, ServiceError> {
        let id = self.tenant_scope(who, tenant).await?;
        let agent = self.resolve_agent(&id, agent).await?;
        Ok(self.store.agent(&id, &agent).await?.into())
    }

    /// Applies a JSON merge patch (RFC 7396) to the agent named by its id or its name: fields
    /// absent from `patch` keep their value, `null` resets one to its default, and the result is
    /// checked like a full replacement.
    pub async fn patch_agent(
        &self,
        who: &Principal,
        tenant: &str,
        agent: &str,
        patch: serde_json::Value,
    ) -> Result<AgentView, ServiceError> {
        let id = self.tenant_scope(who, tenant).await?;
        let agent = self.resolve_agent(&id, agent).await?;
        if !patch.is_object() {
            return Err(ServiceError::invalid(
                "body",
                "a merge patch of an agent is a JSON object",
            ));
        }
        let current = AgentView::from(self.store.agent(&id, &agent).await?);
        let mut doc = serde_json::json!({
            "name": current.name,
            "prompt_template": current.prompt_template,
            "provider": current.provider,
            "model": current.model,
            "voice": current.voice,
            "enabled_tools": current.enabled_tools,
            "max_duration_s": current.max_duration_s,
            "silence_timeout_s": current.silence_timeout_s,
            "recording": current.recording,
            "voicemail": current.voicemail,
        });
        merge_patch(&mut doc, &patch);
        let req: AgentRequest = serde_json::from_value(doc).map_err(|e| {
            let message = e.to_string();
            let field = message
                .split('`')
                .nth(1)
                .filter(|_| {
                    message.starts_with("unknown field") || message.starts_with("missing field")
                })
                .unwrap_or("body")
                .to_owned();
            ServiceError::Invalid { field, message }
        })?;
        let spec = self.agent_spec(&id, req).await?;
        let updated = self.store.update_agent(&id, &agent, &spec).await?;
        info!(tenant = %id, agent = %updated.id, "agent patched");
        Ok(updated.into())
    }

    pub async fn update_agent(
        &self,
        who: &Principal,
        tenant: &str,
        agent: &str,
        req: AgentRequest,
    ) -> Result<AgentView, ServiceError> {
        let id = self.tenant_scope(who, tenant).await?;
        let agent = self.resolve_agent(&id, agent).await?;
        let spec = self.agent_spec(&id, req).await?;
        Ok(self.store.update_agent(&id, &agent, &spec).await?.into())
    }

    pub async fn delete_agent(
        &self,
        who: &Principal,
        tenant: &str,
        agent: &str,
    ) -> Result<(), ServiceError> {
        let id = self.tenant_scope(who, tenant).await?;
        let agent = self.resolve_agent(&id, agent).await?;
        self.store.delete_agent(&id, &agent).await?;
        info!(tenant = %id, agent, "agent deleted");
        Ok(())
    }

    /// That the agent can run on this deployment: a known provider with a key here, a model and
    /// voice the provider accepts, and tools that exist and are available to the tenant (a
    /// capability tool needs the tenant's connector for its capability).
    async fn check_agent_runs(
        &self,
        tenant: &TenantId,
        req: &AgentRequest,
    ) -> Result<(), ServiceError> {
        crate::realtime::catalog::check_agent_voice(&req.provider, &req.model, &req.voice)
            .map_err(|e| ServiceError::invalid(e.field, e.message))?;
        if let Some(providers) = &self.providers
            && !providers.contains(&req.provider.as_str())
        {
            return Err(ServiceError::invalid(
                "provider",
                format!(
                    "{:?} is not configured on this server ({} is not set); configured: {}",
                    req.provider,
                    provider_variable(&req.provider),
                    providers.join(", ")
                ),
            ));
        }
        let known = crate::tools::invoke::known_tools();
        let mut connectors = None;
        for tool in &req.enabled_tools {
            if matches!(tool.as_str(), "opt_out" | "end_call") {
                continue;
            }
            if !known.contains(&tool.as_str()) {
                return Err(ServiceError::invalid(
                    "enabled_tools",
                    format!(
                        "unknown tool {tool:?}; known tools: {}, opt_out, end_call",
                        known.join(", ")
                    ),
                ));
            }
            let Some(capability) = crate::tools::capabilities::capability_of(tool) else {
                continue;
            };
            if connectors.is_none() {
                connectors = Some(self.store.list_connectors(tenant).await?);
            }
            let served = connectors.iter().flatten().any(|c| {
                crate::tools::resolver::capability_of_vendor(&c.spec.vendor) == Some(capability)
            });
            if !served {
                return Err(ServiceError::invalid(
                    "enabled_tools",
                    format!(
                        "tool {tool:?} needs a {} connector, and this tenant has none: configure \
                         one first (PUT /tenants/{tenant}/connectors/{{vendor}})",
                        capability.as_str()
                    ),
                ));
            }
        }
        Ok(())
    }

    /// An agent id of the tenant, from its id or its name.
    async fn resolve_agent(&self, tenant: &TenantId, agent: &str) -> Result<String, ServiceError> {
        match self.store.agent(tenant, agent).await {
            Ok(found) => return Ok(found.id),
            Err(StoreError::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        self.store
            .list_agents(tenant)
            .await?
            .into_iter()
            .find(|a| a.spec.name == agent)
            .map(|a| a.id)
            .ok_or_else(|| ServiceError::NotFound(format!("agent {agent:?}")))
    }

    // --- numbers -----------------------------------------------------------------------------

    pub async fn add_number(
        &self,
        who: &Principal,
        tenant: &str,
        req: AddNumberRequest,
    ) -> Result<NumberView, ServiceError> {
        let id = self.tenant_scope(who, tenant).await?;
        let number = E164::parse(&req.number)?;
        let agent = self.resolve_agent(&id, &req.agent).await?;
        let added = self.store.add_number(&id, &number, &agent).await?;
        info!(tenant = %id, %number, agent, "number added");
        Ok(added.into())
    }

    pub async fn list_numbers(
        &self,
        who: &Principal,
        tenant: &str,
    ) -> Result<Vec<NumberView>, ServiceError> {
        let id = self.tenant_scope(who, tenant).await?;
        Ok(views(self.store.list_numbers(&id).await?))
    }

    pub async fn route_number(
        &self,
        who: &Principal,
        tenant: &str,
        number: &str,
        req: RouteNumberRequest,
    ) -> Result<NumberView, ServiceError> {
        let id = self.tenant_scope(who, tenant).await?;
        let number = parse_number_in_path(number)?;
        let agent = self.resolve_agent(&id, &req.agent).await?;
        Ok(self.store.route_number(&id, &number, &agent).await?.into())
    }

    pub async fn remove_number(
        &self,
        who: &Principal,
        tenant: &str,
        number: &str,
    ) -> Result<(), ServiceError> {
        let id = self.tenant_scope(who, tenant).await?;
        let number = parse_number_in_path(number)?;
        self.store.remove_number(&id, &number).await?;
        info!(tenant = %id, %number, "number removed");
        Ok(())
    }

    // --- connectors --------------------------------------------------------------------------

    pub async fn put_connector(
        &self,
        who: &Principal,
        tenant: &str,
        vendor: &str,
        req: ConnectorRequest,
    ) -> Result<ConnectorView, ServiceError> {
        let id = self.tenant_scope(who, tenant).await?;
        if !crate::connectors::registry::is_known(vendor) {
            return Err(ServiceError::invalid(
                "vendor",
                format!(
                    "unknown vendor {vendor:?} (known: {})",
                    known_vendors().join(", ")
                ),
            ));
        }
        if let Some(name) = &req.secret_name {
            match self
                .store
                .list_secrets(&id)
                .await?
                .iter()
                .find(|s| &s.name == name)
            {
                Some(_) => {}
                None => {
                    return Err(ServiceError::invalid(
                        "secret_name",
                        format!("this tenant has no secret named {name:?}; PUT it first"),
                    ));
                }
            }
        }
        if let Some(url) = &req.base_url {
            // The scheme and an IP-literal host are judged here; a name is resolved and judged
            // again at connect time, so DNS cannot bypass the guard.
            self.egress
                .check_url_str(url)
                .map_err(|e| ServiceError::invalid("base_url", e.to_string()))?;
        }
        let spec = ConnectorSpec {
            vendor: vendor.to_owned(),
            base_url: req.base_url,
            secret_name: req.secret_name,
        };
        let saved = self.store.put_connector(&id, &spec).await?;
        info!(tenant = %id, vendor, "connector configured");
        Ok(saved.into())
    }

    pub async fn list_connectors(
        &self,
        who: &Principal,
        tenant: &str,
    ) -> Result<Vec<ConnectorView>, ServiceError> {
        let id = self.tenant_scope(who, tenant).await?;
        Ok(views(self.store.list_connectors(&id).await?))
    }

    pub async fn get_connector(
        &self,
        who: &Principal,
        tenant: &str,
        vendor: &str,
    ) -> Result<ConnectorView, ServiceError> {
        let id = self.tenant_scope(who, tenant).await?;
        Ok(self.store.connector(&id, vendor).await?.into())
    }

    pub async fn delete_connector(
        &self,
        who: &Principal,
        tenant: &str,
        vendor: &str,
    ) -> Result<(), ServiceError> {
        let id = self.tenant_scope(who, tenant).await?;
        self.store.delete_connector(&id, vendor).await?;
        info!(tenant = %id, vendor, "connector removed");
        Ok(())
    }

    // --- secrets -----------------------------------------------------------------------------

    /// Encrypts and stores a secret. The value is never logged or returned.
    pub async fn put_secret(
        &self,
        who: &Principal,
        tenant: &str,
        name: &str,
        vendor: &str,
        value: SecretString,
    ) -> Result<SecretView, ServiceError> {
        let id = self.tenant_scope(who, tenant).await?;
        if !(crate::connectors::registry::is_known(vendor) || vendor == WEBHOOK_VENDOR) {
            return Err(ServiceError::invalid(
                "vendor",
                format!(
                    "unknown vendor {vendor:?} (known: {}, {WEBHOOK_VENDOR})",
                    known_vendors().join(", ")
                ),
            ));
        }
        if vendor == WEBHOOK_VENDOR {
            SigningSecret::parse(value.expose_secret())
                .map_err(|e| ServiceError::invalid("value", e.to_string()))?;
        }
        let vault = self.vault()?;
        let info = vault.put(&id, name, vendor, &value).await?;
        info!(tenant = %id, secret = name, vendor, "secret stored");
        Ok(info.into())
    }

    pub async fn list_secrets(
        &self,
        who: &Principal,
        tenant: &str,
    ) -> Result<Vec<SecretView>, ServiceError> {
        let id = self.tenant_scope(who, tenant).await?;
        Ok(views(self.store.list_secrets(&id).await?))
    }

    pub async fn get_secret(
        &self,
        who: &Principal,
        tenant: &str,
        name: &str,
    ) -> Result<SecretView, ServiceError> {
        let id = self.tenant_scope(who, tenant).await?;
        self.store
            .list_secrets(&id)
            .await?
            .into_iter()
            .find(|s| s.name == name)
            .map(Into::into)
            .ok_or_else(|| ServiceError::NotFound(format!("secret {name:?}")))
    }

    pub async fn delete_secret(
        &self,
        who: &Principal,
        tenant: &str,
        name: &str,
    ) -> Result<(), ServiceError> {
        let id = self.tenant_scope(who, tenant).await?;
        self.store.delete_secret(&id, name).await?;
        info!(tenant = %id, secret = name, "secret deleted");
        Ok(())
    }

    /// Generates a `whsec_…` signing secret and stores it (vendor `webhook`). Shown once.
    pub async fn generate_signing_secret(
        &self,
        who: &Principal,
        tenant: &str,
        req: GenerateSigningSecretRequest,
    ) -> Result<GeneratedSigningSecret, ServiceError> {
        let name = req
            .secret_name
            .unwrap_or_else(|| DEFAULT_SIGNING_SECRET_NAME.to_owned());
        let value = SigningSecret::generate();
        let secret = self
            .put_secret(who, tenant, &name, WEBHOOK_VENDOR, value.clone())
            .await?;
        Ok(GeneratedSigningSecret {
            secret,
            signing_secret: value.expose_secret().to_owned(),
        })
    }

    /// Makes `new_key` current and re-encrypts every secret under it (operator only).
    pub async fn rotate_master(
        &self,
        who: &Principal,
        new_key: MasterKey,
    ) -> Result<RotationReport, ServiceError> {
        Self::admin_only(who, "rotating the master key")?;
        let report = self.vault()?.rotate_master(new_key).await?;
        info!(new_key_id = %report.new_key_id, resealed = report.resealed, "master key rotated");
        Ok(report)
    }

    // --- calls -------------------------------------------------------------------------------

    pub async fn list_calls(
        &self,
        who: &Principal,
        tenant: &str,
        limit: Option<u32>,
    ) -> Result<Vec<CallView>, ServiceError> {
        let id = self.tenant_scope(who, tenant).await?;
        let limit = limit.unwrap_or(DEFAULT_CALLS_LIMIT);
        if !(1..=MAX_CALLS_LIMIT).contains(&limit) {
            return Err(ServiceError::invalid(
                "limit",
                format!("must be between 1 and {MAX_CALLS_LIMIT}"),
            ));
        }
        Ok(views(self.store.list_calls(&id, limit).await?))
    }

    pub async fn get_call(
        &self,
        who: &Principal,
        tenant: &str,
        call_id: &str,
    ) -> Result<CallDetail, ServiceError> {
        let id = self.tenant_scope(who, tenant).await?;
        let call = self.store.call(&id, call_id).await?;
        let events = self.store.call_events(&id, call_id).await?;
        Ok(CallDetail {
            call: call.into(),
            events: views(events),
        })
    }

    /// Where the recording of one of the tenant's calls is, and its media type (`audio/wav`, or
    /// `audio/ogg` for Ogg/Opus). NotFound when the call is another tenant's, was not recorded,
    /// or its file is gone (retention, or a tenant deletion).
    pub async fn call_recording(
        &self,
        who: &Principal,
        tenant: &str,
        call_id: &str,
    ) -> Result<(PathBuf, &'static str), ServiceError> {
        let id = self.tenant_scope(who, tenant).await?;
        let call = self.store.call(&id, call_id).await?;
        let missing = || ServiceError::NotFound(format!("recording of call {call_id:?}"));
        let path = PathBuf::from(call.recording_path.ok_or_else(missing)?);
        let media_type = match path.extension().and_then(|e| e.to_str()) {
            Some("wav") => "audio/wav",
            Some("opus") | Some("ogg") => "audio/ogg",
            _ => return Err(missing()),
        };
        if !path.is_file() {
            return Err(missing());
        }
        Ok((path, media_type))
    }

    /// A call by id alone, whatever its tenant (operator only).
    pub async fn find_call(
        &self,
        who: &Principal,
        call_id: &str,
    ) -> Result<CallDetail, ServiceError> {
        Self::admin_only(who, "looking up a call without its tenant")?;
        let tenant = self.store.call_tenant(call_id).await?;
        self.get_call(who, tenant.as_str(), call_id).await
    }

    // --- outbound calls ----------------------------------------------------------------------

    /// Places one outbound call for the tenant (`request.tenant`, or the caller's own tenant).
    pub async fn place_call(
        &self,
        who: &Principal,
        request: &PlaceCallRequest,
    ) -> Result<PlacedCallView, ServiceError> {
        use crate::campaign::{DialError, OutboundRequest};
        use crate::connectors::twilio_rest::TwilioError;
        let tenant = self
            .requested_tenant(who, request.tenant.as_deref())
            .await?;
        let dialer = self.dialer.as_ref().ok_or_else(|| {
            ServiceError::Unavailable("outbound calling is not configured on this server".into())
        })?;
        let agent = self.find_agent(&tenant, &request.agent).await?;
        let agent_voicemail = self.store.agent(&tenant, &agent).await?.spec.voicemail;
        let voicemail =
            campaigns::voicemail_choice(request.voicemail.as_ref())?.resolve(agent_voicemail);
        let outbound = OutboundRequest {
            tenant: tenant.clone(),
            agent_id: agent,
            to: request.to.clone(),
            variables: request.variables.clone(),
            voicemail,
        };
        let placed = dialer
            .place(&self.store, &outbound)
            .await
            .map_err(|e| match e {
                DialError::InvalidNumber { .. } => ServiceError::invalid("to", e.to_string()),
                DialError::InvalidVariable { .. } => {
                    ServiceError::invalid("variables", e.to_string())
                }
                DialError::DoNotCall(_) | DialError::NoCallerId(_) => {
                    ServiceError::Conflict(e.to_string())
                }
                DialError::Store(store) => store.into(),
                DialError::Twilio(TwilioError::InvalidNumber { .. }) => {
                    ServiceError::invalid("to", e.to_string())
                }
                DialError::Twilio(TwilioError::UnverifiedCallerId { .. }) => {
                    ServiceError::Conflict(e.to_string())
                }
                // Includes an unreadable answer for which Twilio lists no call: not placed.
                DialError::Twilio(twilio)
                    if twilio.is_transient() || matches!(twilio, TwilioError::Decode(_)) =>
                {
                    ServiceError::Unavailable(twilio.to_string())
                }
                // This server's Twilio account is refused or unreachable: say so (the caller
                // cannot fix it, but the operator must know what to fix).
                DialError::Twilio(TwilioError::Auth { .. }) => ServiceError::Unavailable(format!(
                    "Twilio rejected this server's account credentials (check \
                     TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN): {e}"
                )),
                DialError::Twilio(TwilioError::Egress(_)) => ServiceError::Unavailable(format!(
                    "the Twilio API base is not an allowed destination (check TWILIO_API_BASE): {e}"
                )),
                DialError::Twilio(twilio) => ServiceError::Internal(twilio.to_string()),
            })?;
        Ok(PlacedCallView {
            call_id: placed.call_id,
            twilio_call_sid: placed.call_sid,
            from: placed.from.as_str().to_owned(),
            to: placed.to.as_str().to_owned(),
            status: "queued".into(),
        })
    }

    /// An agent of the tenant by id or by name.
    async fn find_agent(&self, tenant: &TenantId, agent: &str) -> Result<String, ServiceError> {
        match self.store.agent(tenant, agent).await {
            Ok(found) => return Ok(found.id),
            Err(StoreError::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        self.store
            .list_agents(tenant)
            .await?
            .into_iter()
            .find(|a| a.spec.name == agent)
            .map(|a| a.id)
            .ok_or_else(|| ServiceError::NotFound(format!("agent {agent:?}")))
    }

    // --- webhook -----------------------------------------------------------------------------

    pub async fn get_webhook(
        &self,
        who: &Principal,
        tenant: &str,
    ) -> Result<WebhookView, ServiceError> {
        let id = self.tenant_scope(who, tenant).await?;
        Ok(self.store.webhook_settings(&id).await?.into())
    }

    pub async fn put_webhook(
        &self,
        who: &Principal,
        tenant: &str,
        req: WebhookRequest,
    ) -> Result<WebhookView, ServiceError> {
        let id = self.tenant_scope(who, tenant).await?;
        webhooks::validate_url(&req.url, &self.egress).map_err(|e| match e {
            webhooks::WebhookError::InvalidUrl(m) => ServiceError::invalid("url", m),
            webhooks::WebhookError::Egress(e) => ServiceError::invalid("url", e.to_string()),
            other => ServiceError::Internal(other.to_string()),
        })?;
        let secret = self
            .store
            .list_secrets(&id)
            .await?
            .into_iter()
            .find(|s| s.name == req.secret_name);
        match secret {
            Some(s) if s.vendor == WEBHOOK_VENDOR => {}
            Some(s) => {
                return Err(ServiceError::invalid(
                    "secret_name",
                    format!(
                        "secret {:?} is a {} secret; a signing secret has vendor {WEBHOOK_VENDOR}",
                        s.name, s.vendor
                    ),
                ));
            }
            None => {
                return Err(ServiceError::invalid(
                    "secret_name",
                    format!(
                        "this tenant has no secret named {:?}; generate one with POST \
                         /tenants/{id}/webhook/signing-secret",
                        req.secret_name
                    ),
                ));
            }
        }
        let saved = self
            .store
            .put_webhook_settings(
                &id,
                &WebhookSettingsSpec {
                    url: req.url,
                    secret_name: req.secret_name,
                    enabled: req.enabled,
                },
            )
            .await?;
        info!(tenant = %id, enabled = saved.spec.enabled, "webhook configured");
        Ok(saved.into())
    }

    pub async fn delete_webhook(&self, who: &Principal, tenant: &str) -> Result<(), ServiceError> {
        let id = self.tenant_scope(who, tenant).await?;
        self.store.delete_webhook_settings(&id).await?;
        info!(tenant = %id, "webhook removed");
        Ok(())
    }

    pub async fn list_deliveries(
        &self,
        who: &Principal,
        tenant: &str,
        limit: Option<u32>,
    ) -> Result<Vec<DeliveryView>, ServiceError> {
        let id = self.tenant_scope(who, tenant).await?;
        let limit = limit
            .unwrap_or(DEFAULT_CALLS_LIMIT)
            .clamp(1, MAX_CALLS_LIMIT);
        Ok(views(self.store.list_outbox(&id, limit).await?))
    }
}

/// RFC 7396 JSON merge patch: objects merge key by key, `null` removes a key, anything else
/// replaces the target.
pub fn merge_patch(target: &mut serde_json::Value, patch: &serde_json::Value) {
    let serde_json::Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = serde_json::Value::Object(serde_json::Map::new());
    }
    if let serde_json::Value::Object(target) = target {
        for (key, value) in patch {
            if value.is_null() {
                target.remove(key);
            } else {
                merge_patch(
                    target.entry(key.clone()).or_insert(serde_json::Value::Null),
                    value,
                );
            }
        }
    }
}

fn views<T, V: From<T>>(rows: Vec<T>) -> Vec<V> {
    rows.into_iter().map(Into::into).collect()
}

/// A number in a URL path names an existing row: malformed means it cannot exist.
fn parse_number_in_path(raw: &str) -> Result<E164, ServiceError> {
    E164::parse(raw).map_err(|_| ServiceError::NotFound(format!("phone number {raw:?}")))
}

/// `Acme Dental, West!` → `acme-dental-west`; `None` when nothing usable remains.
pub fn slug_from_name(name: &str) -> Option<String> {
    let mut slug = String::new();
    for c in name.chars().flat_map(char::to_lowercase) {
        if c.is_ascii_alphanumeric() {
            slug.push(c);
        } else if !slug.is_empty() && !slug.ends_with('-') {
            slug.push('-');
        }
        if slug.len() >= 64 {
            break;
        }
    }
    let slug = slug.trim_end_matches('-').to_owned();
    (!slug.is_empty()).then_some(slug)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_ids_are_derived_from_names() {
        assert_eq!(
            slug_from_name("Acme Dental, West!").as_deref(),
            Some("acme-dental-west")
        );
        assert_eq!(
            slug_from_name("  Zoë's  Café ").as_deref(),
            Some("zo-s-caf")
        );
        assert_eq!(slug_from_name("!!!"), None);
        assert!(slug_from_name(&"x".repeat(200)).is_some_and(|s| s.len() == 64));
    }

    #[test]
    fn merge_patch_follows_rfc_7396() {
        use serde_json::json;
        // The RFC's own example (section 3).
        let mut doc = json!({"title": "Goodbye!", "author": {"givenName": "John", "familyName": "Doe"},
                             "tags": ["example", "sample"], "content": "This will be unchanged"});
        merge_patch(
            &mut doc,
            &json!({"title": "Hello!", "phoneNumber": "+01-123-456-7890",
                    "author": {"familyName": null}, "tags": ["example"]}),
        );
        assert_eq!(
            doc,
            json!({"title": "Hello!", "author": {"givenName": "John"}, "tags": ["example"],
                   "content": "This will be unchanged", "phoneNumber": "+01-123-456-7890"})
        );
    }

    #[test]
    fn store_field_names_map_to_request_fields() {
        assert_eq!(request_field("phone number"), "number");
        assert_eq!(request_field("time zone"), "time_zone");
        assert_eq!(request_field("something else"), "something else");
    }
}
