//! The composition root: the one place that constructs the long-lived shared parts — the store,
//! the vault's keyring, the outbound HTTP policy (with the egress guard), the tool-call ledger, the
//! built-in tool registry and the realtime provider — and hands them to the surfaces.
//!
//! `http/` takes an [`App`]; `cli/` takes an [`AppCore`] (the parts that need no server
//! configuration); the call driver gets its own view, [`CallDeps`], built from the [`App`]. This
//! module must not serve, parse arguments or hold per-call state.

use std::sync::Arc;

use secrecy::ExposeSecret;

use crate::call::driver::CallDeps;
use crate::config::Config;
use crate::connectors::http::{HttpPolicy, PolicyConfig, PolicyError};
use crate::egress::{EgressError, EgressPolicy};
use crate::metrics::Metrics;
use crate::realtime::Dialect;
use crate::store::{SqlStore, StoreError};
use crate::tenant::vault::{Keyring, Vault, VaultError};
use crate::tools::invoke::ToolRuntime;
use crate::tools::ledger::SharedLedger;
use crate::tools::store_ledger::StoreLedger;
use crate::tools::{self, ToolRegistry};

/// Why the shared parts could not be built.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("DATABASE_URL: cannot open the store: {0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    MasterKey(VaultError),
    #[error("cannot build the HTTP client for connectors: {0}")]
    Policy(#[from] PolicyError),
    #[error("{0}")]
    Egress(#[from] EgressError),
}

/// The vault's keyring from the environment: absent means secrets (and the tools that need them)
/// are unavailable; present but invalid is an error.
pub fn keyring_from_env() -> Result<Option<Keyring>, StartupError> {
    match Keyring::from_env() {
        Ok(keyring) => Ok(Some(keyring)),
        Err(VaultError::MissingMasterKey) => Ok(None),
        Err(e) => Err(StartupError::MasterKey(e)),
    }
}

/// The operator's egress allow-list from `CALLBRIDGE_EGRESS_ALLOW` (unset: strict), for commands
/// that run without the server's configuration.
pub fn egress_from_env() -> Result<EgressPolicy, EgressError> {
    EgressPolicy::from_allow_list(
        std::env::var("CALLBRIDGE_EGRESS_ALLOW")
            .unwrap_or_default()
            .as_str(),
    )
}

/// What every surface shares, server or command line: store, keyring, policy and ledger.
#[derive(Clone)]
pub struct AppCore {
    pub store: SqlStore,
    /// The vault's master keys; `None` when no master key is configured.
    pub keyring: Option<Keyring>,
    /// The one HTTP policy every vendor request goes through (connectors and Twilio's REST API).
    pub policy: HttpPolicy,
    /// Makes tool side effects happen once, across reconnects and nodes.
    pub ledger: SharedLedger,
    /// The OAuth gateway; set by [`AppCore::with_oauth_from_env`] (needs the vault).
    pub oauth: Option<crate::oauth::OAuthService>,
}

impl AppCore {
    /// Enables the OAuth gateway with the apps the environment configures, callbacks coming
    /// back to `public_url` (logged and left off when a setting is unusable).
    pub fn with_oauth_from_env(mut self, public_url: Option<String>) -> Self {
        self.oauth = oauth_gateway(&self, public_url);
        self
    }

    /// Opens (and migrates) the store at `database_url` and builds the policy behind `egress`.
    pub async fn open(
        database_url: &str,
        keyring: Option<Keyring>,
        egress: EgressPolicy,
    ) -> Result<Self, StartupError> {
        let store = SqlStore::open(database_url).await?;
        let policy = HttpPolicy::new(PolicyConfig {
            egress,
            ..PolicyConfig::default()
        })?;
        let ledger: SharedLedger = Arc::new(StoreLedger::new(store.clone()));
        Ok(Self {
            store,
            keyring,
            policy,
            ledger,
            oauth: None,
        })
    }

    /// The runtime that resolves and runs tenants' tools, with `deadline` per tool call.
    pub fn tool_runtime(&self, deadline: std::time::Duration) -> ToolRuntime {
        ToolRuntime {
            store: self.store.clone(),
            keyring: self.keyring.clone(),
            policy: self.policy.clone(),
            ledger: self.ledger.clone(),
            deadline,
            oauth: self.oauth.clone(),
        }
    }

    /// The secret vault, when a master key is configured.
    pub fn vault(&self) -> Option<Vault<SqlStore>> {
        self.keyring
            .clone()
            .map(|keyring| Vault::new(self.store.clone(), keyring))
    }

    /// The egress rule the policy enforces (also checked when tenants write URLs).
    pub fn egress(&self) -> &EgressPolicy {
        &self.policy.config().egress
    }
}

/// The OAuth gateway over the core's store and vault, with the apps the environment configures
/// (`CALLBRIDGE_OAUTH_<VENDOR>_CLIENT_ID` / `_CLIENT_SECRET`); `None` without a master key or
/// with an unusable setting (logged, precisely).
fn oauth_gateway(core: &AppCore, public_url: Option<String>) -> Option<crate::oauth::OAuthService> {
    let vault = core.vault()?;
    let vendors: Vec<&str> = crate::connectors::registry::VENDORS
        .iter()
        .filter(|v| v.oauth.is_some())
        .map(|v| v.id)
        .collect();
    let settings = match crate::oauth::OAuthSettings::from_env(public_url, &vendors) {
        Ok(settings) => settings,
        Err(err) => {
            tracing::error!(error = %err, "OAuth connections disabled");
            return None;
        }
    };
    match crate::oauth::OAuthService::new(
        core.store.clone(),
        vault,
        settings,
        core.egress().clone(),
    ) {
        Ok(service) => Some(service),
        Err(err) => {
            tracing::error!(error = %err, "OAuth connections disabled");
            None
        }
    }
}

/// Everything a running server shares.
#[derive(Clone)]
pub struct App {
    pub config: Arc<Config>,
    pub metrics: Arc<Metrics>,
    /// Built-in tools every agent may be given.
    pub tools: Arc<ToolRegistry>,
    pub dialect: Arc<dyn Dialect>,
    pub store: SqlStore,
    pub keyring: Option<Keyring>,
    pub policy: HttpPolicy,
    pub ledger: SharedLedger,
    /// The calls this node runs (live-calls API, operator commands).
    pub live: Arc<crate::call::live::LiveCalls>,
    /// This node's name: in stream claims, campaign leases and its heartbeat
    /// (`CALLBRIDGE_NODE_ID`, default random per process).
    pub node_id: Arc<str>,
    /// The OAuth gateway; `None` without a master key (tokens are sealed in the vault).
    pub oauth: Option<crate::oauth::OAuthService>,
    /// Inbound webhooks: verification, the durable inbox and its worker's rules.
    pub inbound: crate::inbound::InboundService,
}

impl App {
    /// From configuration, with the keyring read from the environment.
    pub async fn from_config(config: Config) -> Result<Self, StartupError> {
        let keyring = keyring_from_env()?;
        Self::build(config, keyring).await
    }

    /// From configuration and an explicit keyring (tests, tools).
    pub async fn build(config: Config, keyring: Option<Keyring>) -> Result<Self, StartupError> {
        let core = AppCore::open(
            config.database_url.expose_secret(),
            keyring,
            config.egress.clone(),
        )
        .await?;
        let mut registry = ToolRegistry::new(config.tool_timeout);
        for name in &config.tools {
            if let Some(tool) = tools::builtin(name) {
                registry.register(tool);
            }
        }
        let config_node_id = config.campaigns.node_id.clone();
        // One name per node: stream claims, campaign leases, heartbeat and live calls.
        let live_node =
            config_node_id.unwrap_or_else(|| format!("node-{:016x}", rand::random::<u64>()));
        let dialect = crate::realtime::openai::OpenAiDialect::new(
            config.openai_realtime_url.clone(),
            config.openai_realtime_model.clone(),
            config.openai_api_key.expose_secret(),
        );
        let metrics = Arc::new(Metrics::default());
        let core = core.with_oauth_from_env(Some(config.public_url.clone()));
        let oauth = core
            .oauth
            .clone()
            .map(|service| service.with_metrics(metrics.clone()));
        let inbound = crate::inbound::InboundService::new(
            core.store.clone(),
            core.vault(),
            Some(config.twilio_auth_token.clone()),
            &config.public_url,
            metrics.clone(),
            Arc::new(crate::campaign::SystemClock),
        );
        Ok(Self {
            oauth,
            inbound,
            config: Arc::new(config),
            metrics,
            tools: Arc::new(registry),
            dialect: Arc::new(dialect),
            store: core.store,
            keyring: core.keyring,
            policy: core.policy,
            ledger: core.ledger,
            node_id: Arc::from(live_node.as_str()),
            live: Arc::new(crate::call::live::LiveCalls::new(live_node)),
        })
    }

    /// The parts the command line also has.
    pub fn core(&self) -> AppCore {
        AppCore {
            store: self.store.clone(),
            keyring: self.keyring.clone(),
            policy: self.policy.clone(),
            ledger: self.ledger.clone(),
            oauth: self.oauth.clone(),
        }
    }

    /// The call driver's view.
    pub fn call_deps(&self) -> CallDeps {
        CallDeps {
            config: self.config.clone(),
            metrics: self.metrics.clone(),
            tools: self.tools.clone(),
            dialect: self.dialect.clone(),
            store: self.store.clone(),
            keyring: self.keyring.clone(),
            policy: self.policy.clone(),
            ledger: self.ledger.clone(),
            live: self.live.clone(),
            node_id: self.node_id.clone(),
            oauth: self.oauth.clone(),
        }
    }

    /// The runtime calls, the CLI and the API run tenants' tools with.
    pub fn tool_runtime(&self) -> ToolRuntime {
        self.core().tool_runtime(self.config.tool_timeout)
    }

    /// The outbound dialer on the server's Twilio account.
    pub fn dialer(&self) -> Result<crate::campaign::Dialer, crate::campaign::DialError> {
        crate::campaign::Dialer::from_config(&self.config, &self.policy)
    }
}
