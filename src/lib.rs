//! callbridge: puts a realtime speech model on a phone line.
//!
//! # Layout
//! - [`audio`]: G.711, resampling and the call recorder, for providers that need PCM.
//! - [`twilio`]: the telephony side — media stream frames, TwiML, signatures, stream tokens.
//! - [`realtime`]: speech providers behind one command/event vocabulary ([`realtime::Dialect`]).
//! - [`call`]: one actor per call — the sans-IO [`call::session::CallSession`] state machine and the
//!   async [`call::driver`] that feeds it.
//! - [`tools`]: what the model can call mid-call, with deadlines and structured errors, and the
//!   tool-call ledger.
//! - [`connectors`]: vendor connectors (calendar, CRM, commerce) behind capability traits, the one
//!   outbound HTTP policy every vendor request goes through ([`connectors::http`]) and the Twilio
//!   REST client.
//! - [`app`]: the composition root that builds the shared parts for every surface.
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

// Nothing a peer sends may panic the server: product code handles every error (unit tests may
// unwrap, see clippy.toml; `expect` stays for internal invariants, with the reason).
#![deny(clippy::unwrap_used)]

pub mod admin;
pub mod app;
pub mod audio;
pub mod call;
pub mod campaign;
pub mod cli;
pub mod config;
pub mod connectors;
pub mod egress;
pub mod exports;
pub mod http;
pub mod inbound;
pub mod logging;
pub mod mcp;
pub mod metrics;
pub mod notify;
pub mod oauth;
pub mod realtime;
pub mod store;
pub mod tenant;
pub mod tools;
pub mod twilio;
pub mod webhooks;
pub mod wire;

pub use app::{App, AppCore, StartupError};

/// Everything a running server shares, built from configuration: see [`App::from_config`].
pub async fn build_deps(config: config::Config) -> Result<App, StartupError> {
    App::from_config(config).await
}

/// [`build_deps`] with an explicit keyring (tests, tools): see [`App::build`].
pub async fn build_deps_with(
    config: config::Config,
    keyring: Option<tenant::vault::Keyring>,
) -> Result<App, StartupError> {
    App::build(config, keyring).await
}
