//! callbridge: puts a realtime speech model on a phone line.
//!
//! # Layout
//! - [`audio`]: G.711, resampling and the call recorder, for providers that need PCM.
//! - [`twilio`]: the telephony side — media stream frames, TwiML, signatures, stream tokens.
//! - [`realtime`]: speech providers behind one command/event vocabulary ([`realtime::Dialect`]).
//! - [`call`]: one actor per call — the sans-IO [`call::session::CallSession`] state machine and the
//!   async [`call::driver`] that feeds it.
//! - [`tools`]: what the model can call mid-call, with deadlines and structured errors; the one
//!   HTTP policy every connector goes through, and the tool-call ledger.
//! - [`connectors`]: vendor connectors (calendar, CRM, commerce) behind capability traits.
//! - [`http`]: the axum routes (Twilio webhook, media socket, health, metrics).
//! - [`store`]: persistence (SQLite embedded, PostgreSQL shared) behind one trait; [`tenant`]:
//!   the secret vault, API keys and tenant provisioning files.
//! - [`http::api`], [`cli`]: the admin REST API under `/api/v1` and the operator CLI, one service
//!   layer for both; [`webhooks`]: the post-call webhook outbox and its delivery worker.
//! - [`campaign`]: outbound calls and campaigns — the dialer, CSV import, calling windows, the
//!   retry policy and the dispatcher that dials each contact exactly once across nodes.
//! - [`egress`]: the guard every tenant-steerable outbound request passes (public hosts only,
//!   checked again at connect time).
//! - [`config`], [`metrics`]: process configuration and Prometheus counters.
//!
//! Panic policy: nothing a peer sends (Twilio, the provider, a vendor) may panic; `expect` marks
//! only internal invariants, with the reason.

pub mod admin;
pub mod audio;
pub mod call;
pub mod campaign;
pub mod cli;
pub mod config;
pub mod connectors;
pub mod egress;
pub mod http;
pub mod metrics;
pub mod realtime;
pub mod store;
pub mod tenant;
pub mod tools;
pub mod twilio;
pub mod webhooks;

use std::sync::Arc;

use secrecy::ExposeSecret;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("DATABASE_URL: cannot open the store: {0}")]
    Store(#[from] store::StoreError),
    #[error("{0}")]
    MasterKey(tenant::vault::VaultError),
    #[error("cannot build the HTTP client for connectors: {0}")]
    Policy(#[from] tools::policy::PolicyError),
}

/// Everything a running server shares, built from configuration: opens (and migrates) the store and
/// reads the vault's master key(s) from the environment (absent: secrets and the tools that need
/// them are unavailable; present but invalid: a startup error).
pub async fn build_deps(config: config::Config) -> Result<call::driver::CallDeps, StartupError> {
    let keyring = match tenant::vault::Keyring::from_env() {
        Ok(keyring) => Some(keyring),
        Err(tenant::vault::VaultError::MissingMasterKey) => None,
        Err(e) => return Err(StartupError::MasterKey(e)),
    };
    build_deps_with(config, keyring).await
}

/// [`build_deps`] with an explicit keyring (tests, tools).
pub async fn build_deps_with(
    config: config::Config,
    keyring: Option<tenant::vault::Keyring>,
) -> Result<call::driver::CallDeps, StartupError> {
    let store = store::SqlStore::open(config.database_url.expose_secret()).await?;
    let mut tools = tools::ToolRegistry::new(config.tool_timeout);
    for name in &config.tools {
        if let Some(tool) = tools::builtin(name) {
            tools.register(tool);
        }
    }
    let dialect = realtime::openai::OpenAiDialect::new(
        config.openai_realtime_url.clone(),
        config.openai_realtime_model.clone(),
        config.openai_api_key.expose_secret(),
    );
    let policy = tools::policy::HttpPolicy::new(tools::policy::PolicyConfig::default())?;
    let ledger: tools::ledger::SharedLedger =
        Arc::new(tools::store_ledger::StoreLedger::new(store.clone()));
    Ok(call::driver::CallDeps {
        config: Arc::new(config),
        metrics: Arc::new(metrics::Metrics::default()),
        tools: Arc::new(tools),
        dialect: Arc::new(dialect),
        store,
        keyring,
        policy,
        ledger,
    })
}
