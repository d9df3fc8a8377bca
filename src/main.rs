//! The `callbridge` binary: command line, logging, and serving. `anyhow` lives only here.

// Like the library: no unwrap in product code.
#![deny(clippy::unwrap_used)]

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tracing::info;

use callbridge::config::{Config, LogFormat, ServeArgs};

#[derive(Parser)]
#[command(
    name = "callbridge",
    version,
    about = "Voice bridge: Twilio calls to realtime speech models"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: ServeArgs,
}

// Parsed once at startup, so the size difference between variants costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// Run the server (the default).
    Serve(ServeArgs),
    #[command(flatten)]
    Admin(callbridge::cli::AdminCommand),
    /// A tenant's tools outside a call: list them, or run one exactly as a call would.
    Tools(callbridge::cli::tools::ToolsArgs),
    /// Check every configured connector's credentials with a harmless read, and every agent.
    Doctor(callbridge::cli::tools::DoctorArgs),
    /// MCP: the tools a tenant's `/mcp` endpoint lists, and its agents' external MCP servers.
    Mcp(callbridge::cli::mcp::McpArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let args = match cli.command {
        Some(Command::Serve(args)) => args,
        Some(Command::Admin(command)) => return callbridge::cli::run(command),
        Some(Command::Tools(args)) => {
            init_cli_logging();
            return callbridge::cli::tools::run_tools(args);
        }
        Some(Command::Doctor(args)) => {
            init_cli_logging();
            return callbridge::cli::tools::run_doctor(args);
        }
        Some(Command::Mcp(args)) => {
            init_cli_logging();
            return callbridge::cli::mcp::run_mcp(args);
        }
        None => cli.serve,
    };
    let config = match Config::resolve(args) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("callbridge: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    init_logging(&config);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("callbridge: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    // One TLS backend for outgoing wss:// and https:// (ring); installing twice is harmless.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let deps = match runtime.block_on(callbridge::build_deps(config)) {
        Ok(deps) => deps,
        Err(e) => {
            // A store that cannot be opened is a configuration problem: same contract, exit 2.
            eprintln!("callbridge: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(serve(deps)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("callbridge: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(config: &Config) {
    // The transport crates never log below INFO, and configured secrets are scrubbed from every
    // line, whatever CALLBRIDGE_LOG asks (see callbridge::logging).
    callbridge::logging::init(
        callbridge::logging::env_filter("info"),
        config.log_format == LogFormat::Json,
        callbridge::logging::Scrubbed::new(std::io::stdout, config.secret_values()),
    );
}

/// Logging for commands that talk to vendors: the same filter and cap as `serve`
/// (`CALLBRIDGE_LOG`, default `warn` here so a successful run prints only its result), on stderr
/// so stdout stays the command's output.
fn init_cli_logging() {
    callbridge::logging::init(
        callbridge::logging::env_filter("warn"),
        false,
        callbridge::logging::Scrubbed::new(std::io::stderr, Vec::new()),
    );
}

async fn serve(deps: callbridge::App) -> anyhow::Result<()> {
    // Post-call webhooks: delivered from the durable outbox (needs the vault's master key).
    // Tenant webhook targets obey the operator's egress allow-list (strict when unset).
    let webhooks = callbridge::webhooks::spawn_from_env(
        deps.store.clone(),
        callbridge::webhooks::WorkerOptions {
            egress: deps.config.egress.clone(),
            ..callbridge::webhooks::WorkerOptions::default()
        },
    );
    // Staff notifications: delivered from their durable outbox over the tenants' connectors.
    let notifications = callbridge::notify::worker::NotificationWorker::new(
        deps.store.clone(),
        deps.core().keyring,
        deps.policy.clone(),
        deps.oauth.clone(),
        callbridge::notify::worker::NotifyWorkerOptions::default(),
    )
    .spawn();
    let campaigns = start_campaigns(&deps)?;
    // Inbound webhooks: this node's share of the durable inbox (events stored by any node).
    let inbound = deps
        .inbound
        .clone()
        .spawn_worker(callbridge::inbound::WorkerOptions {
            node_id: deps.node_id.to_string(),
            ..Default::default()
        });
    // Per-tenant retention: hourly, calls past it lose transcript, events and recording.
    let retention = callbridge::admin::retention::spawn_sweeper(deps.store.clone());
    // Post-call analysis (agents with analysis settings): a durable queue, a text model.
    let analysis =
        callbridge::call::analysis::AnalysisOptions::from_env(&deps.config.openai_api_key)
            .and_then(|options| {
                callbridge::call::analysis::AnalysisWorker::new(
                    deps.store.clone(),
                    deps.policy.clone(),
                    deps.metrics.clone(),
                    options,
                )
                .map_err(|e| tracing::warn!(error = %e, "post-call analysis is off"))
                .ok()
            })
            .map(|worker| {
                worker.with_crm_notes(
                    deps.keyring.clone().map(|keyring| {
                        callbridge::tenant::vault::Vault::new(deps.store.clone(), keyring)
                    }),
                    deps.oauth.clone(),
                    deps.ledger.clone(),
                )
            })
            .map(callbridge::call::analysis::AnalysisWorker::spawn);
    // Post-call exports (a call-log row in a tenant's sheet, …), from their durable queue.
    let exports = callbridge::exports::ExportWorker::new(
        deps.store.clone(),
        deps.keyring
            .clone()
            .map(|keyring| callbridge::tenant::vault::Vault::new(deps.store.clone(), keyring)),
        deps.policy.clone(),
        deps.oauth.clone(),
    )
    .with_metrics(deps.metrics.clone())
    .with_node(deps.node_id.to_string())
    .spawn(std::time::Duration::from_secs(5));
    // Crash recovery: settle calls a dead node (or this one, before a restart) left in progress.
    let recovery =
        callbridge::call::recovery::Recovery::for_node(&deps.call_deps(), deps.node_id.clone())
            .spawn();
    let listen = deps.config.listen;
    let public_url = deps.config.public_url.clone();
    let limits = deps.config.http;
    let metrics = deps.metrics.clone();
    let app = callbridge::http::router(deps);
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {listen} (CALLBRIDGE_LISTEN): {e}"))?;
    info!(%listen, %public_url, "callbridge listening; point the Twilio voice webhook at {public_url}/twilio/voice");
    // Header-read and idle timeouts, a connection cap (CALLBRIDGE_HTTP_*).
    callbridge::http::serve(listener, app, limits, metrics, shutdown_signal()).await;
    recovery.abort();
    inbound.shutdown().await;
    retention.abort();
    if let Some(analysis) = analysis {
        analysis.abort();
    }
    exports.abort();
    if let Some(worker) = webhooks {
        worker.shutdown().await;
    }
    notifications.shutdown().await;
    if let Some(dispatcher) = campaigns {
        dispatcher.shutdown().await;
    }
    Ok(())
}

/// Starts this node's campaign dispatcher unless `CALLBRIDGE_CAMPAIGNS=false`.
fn start_campaigns(
    deps: &callbridge::App,
) -> anyhow::Result<Option<callbridge::campaign::RunnerHandle>> {
    let settings = &deps.config.campaigns;
    if !settings.enabled {
        info!("campaign dispatcher off on this node (CALLBRIDGE_CAMPAIGNS=false)");
        return Ok(None);
    }
    let dialer = deps.dialer()?;
    let mut options = callbridge::campaign::RunnerOptions {
        tick: settings.tick,
        lease: settings.lease,
        call_check: settings.call_check,
        ..Default::default()
    };
    // One name per node for leases, stream claims and the heartbeat.
    options.node_id = deps.node_id.to_string();
    let runner = callbridge::campaign::CampaignRunner::new(
        deps.store.clone(),
        dialer,
        std::sync::Arc::new(callbridge::campaign::SystemClock),
        deps.metrics.clone(),
        options,
    )?;
    Ok(Some(runner.spawn()))
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
    info!("shutting down");
}
