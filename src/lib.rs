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
//! - [`config`], [`metrics`]: process configuration and Prometheus counters.
//!
//! Panic policy: nothing a peer sends (Twilio, the provider, a vendor) may panic; `expect` marks
//! only internal invariants, with the reason.

pub mod audio;
pub mod call;
pub mod campaign;
pub mod cli;
pub mod config;
pub mod connectors;
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
}

/// Everything a running server shares, built from configuration: opens (and migrates) the store.
pub async fn build_deps(config: config::Config) -> Result<call::driver::CallDeps, StartupError> {
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
    Ok(call::driver::CallDeps {
        config: Arc::new(config),
        metrics: Arc::new(metrics::Metrics::default()),
        tools: Arc::new(tools),
        dialect: Arc::new(dialect),
        store,
    })
}
