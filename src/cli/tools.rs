//! `callbridge tools list|invoke` and `callbridge doctor`: a tenant's tools outside a call, through
//! the same resolver, policy, ledger and registry a call uses ([`ToolRuntime`]).

use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand};
use serde_json::Value;

use crate::app::AppCore;
use crate::store::TenantId;
use crate::tools::doctor;
use crate::tools::invoke::{ToolRuntime, known_tools};

const DEFAULT_DATABASE_URL: &str = "sqlite://callbridge.db?mode=rwc";

#[derive(Debug, Args)]
pub struct ToolsArgs {
    #[command(subcommand)]
    command: ToolsCommand,
    #[command(flatten)]
    runtime: RuntimeArgs,
}

#[derive(Debug, Subcommand)]
enum ToolsCommand {
    /// Every tool; with --tenant, whether it is available to that tenant and why not.
    List {
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Run one tool for a tenant exactly as a call would, and print what the model would get.
    Invoke {
        tool: String,
        #[arg(long)]
        tenant: String,
        /// The tool's arguments, as JSON.
        #[arg(long, default_value = "{}")]
        args: String,
        /// The caller's number, as a call would pass it.
        #[arg(long, default_value = "")]
        caller: String,
    },
}

#[derive(Debug, Args)]
pub struct DoctorArgs {
    #[command(flatten)]
    runtime: RuntimeArgs,
}

#[derive(Debug, Args)]
pub(super) struct RuntimeArgs {
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
    /// Deadline of one tool call or health check, in milliseconds.
    #[arg(long, env = "CALLBRIDGE_TOOL_TIMEOUT_MS", default_value_t = 5_000)]
    tool_timeout_ms: u64,
}

#[derive(Debug, thiserror::Error)]
pub(super) enum CliToolsError {
    #[error("{0}")]
    Config(String),
    #[error("{0}")]
    Failed(String),
}

pub(super) async fn runtime(args: &RuntimeArgs) -> Result<ToolRuntime, CliToolsError> {
    let url = args
        .database_url
        .clone()
        .filter(|u| !u.trim().is_empty())
        .unwrap_or_else(|| DEFAULT_DATABASE_URL.to_owned());
    let keyring =
        crate::app::keyring_from_env().map_err(|e| CliToolsError::Config(e.to_string()))?;
    let egress = crate::app::egress_from_env().map_err(|e| CliToolsError::Config(e.to_string()))?;
    let core = AppCore::open(&url, keyring, egress)
        .await
        .map_err(|e| CliToolsError::Config(e.to_string()))?
        // Tenants' connected OAuth accounts serve their connectors here too.
        .with_oauth_from_env(std::env::var("PUBLIC_URL").ok());
    Ok(core.tool_runtime(Duration::from_millis(
        args.tool_timeout_ms.clamp(100, 60_000),
    )))
}

/// The realtime providers the server's environment has keys for (the variables `serve` reads).
fn providers_from_env() -> Vec<&'static str> {
    let set = |name: &str| std::env::var(name).is_ok_and(|v| !v.trim().is_empty());
    let mut providers = Vec::new();
    if set("OPENAI_API_KEY") {
        providers.push("openai");
    }
    if set("XAI_API_KEY") {
        providers.push("xai");
    }
    if set("AZURE_OPENAI_API_KEY") && set("AZURE_OPENAI_ENDPOINT") {
        providers.push("azure");
    }
    if set("GEMINI_API_KEY") {
        providers.push("gemini");
    }
    providers
}

pub(super) fn tenant_id(raw: &str) -> Result<TenantId, CliToolsError> {
    TenantId::parse(raw).map_err(|e| CliToolsError::Failed(e.to_string()))
}

pub(super) fn block_on<F: std::future::Future<Output = Result<ExitCode, CliToolsError>>>(
    f: F,
) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("callbridge: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let _ = rustls::crypto::ring::default_provider().install_default();
    match runtime.block_on(f) {
        Ok(code) => code,
        Err(CliToolsError::Config(e)) => {
            eprintln!("callbridge: configuration error: {e}");
            ExitCode::from(2)
        }
        Err(CliToolsError::Failed(e)) => {
            eprintln!("callbridge: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `callbridge tools …`
pub fn run_tools(args: ToolsArgs) -> ExitCode {
    block_on(async move {
        let runtime = runtime(&args.runtime).await?;
        match args.command {
            ToolsCommand::List { tenant: None } => {
                for tool in known_tools() {
                    println!("{tool}");
                }
                Ok(ExitCode::SUCCESS)
            }
            ToolsCommand::List {
                tenant: Some(tenant),
            } => {
                let tenant = tenant_id(&tenant)?;
                let all: Vec<String> = known_tools().into_iter().map(str::to_owned).collect();
                let resolved = runtime
                    .resolve(&tenant, &all)
                    .await
                    .map_err(|e| CliToolsError::Failed(e.to_string()))?;
                println!("{:<24} {:<10} reason", "tool", "available");
                for tool in &all {
                    match resolved.unavailable.iter().find(|u| &u.tool == tool) {
                        Some(missing) => println!("{tool:<24} {:<10} {}", "no", missing.reason),
                        None => println!("{tool:<24} {:<10}", "yes"),
                    }
                }
                Ok(ExitCode::SUCCESS)
            }
            ToolsCommand::Invoke {
                tool,
                tenant,
                args,
                caller,
            } => {
                let tenant = tenant_id(&tenant)?;
                let arguments: Value = serde_json::from_str(&args)
                    .map_err(|e| CliToolsError::Failed(format!("--args is not valid JSON: {e}")))?;
                let invoked = runtime
                    .invoke(&tenant, &tool, &arguments, &caller)
                    .await
                    .map_err(|e| CliToolsError::Failed(e.to_string()))?;
                println!(
                    "{}",
                    serde_json::to_string_pretty(&invoked.output).unwrap_or_default()
                );
                // What the model is told is deliberately vague; the operator gets the cause.
                if let Some(detail) = &invoked.error_detail {
                    eprintln!("callbridge: {tool} failed: {detail}");
                }
                Ok(if invoked.outcome == "ok" {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::FAILURE
                })
            }
        }
    })
}

/// `callbridge doctor`: every configured connector of every tenant, checked with a harmless read.
pub fn run_doctor(args: DoctorArgs) -> ExitCode {
    block_on(async move {
        let runtime = runtime(&args.runtime).await?;
        let vault = runtime
            .keyring
            .clone()
            .map(|keyring| crate::tenant::vault::Vault::new(runtime.store.clone(), keyring));
        let rows = doctor::check_all_with(
            &runtime.store,
            vault.as_ref(),
            &runtime.policy,
            runtime.oauth.as_ref(),
            runtime.deadline,
        )
        .await
        .map_err(|e| CliToolsError::Failed(e.to_string()))?;
        print!("{}", doctor::format_table(&rows));
        let agents = doctor::check_agents(&runtime, &providers_from_env())
            .await
            .map_err(|e| CliToolsError::Failed(e.to_string()))?;
        print!("{}", doctor::format_agents(&agents));
        let mcp = crate::mcp::doctor::check_mcp_servers(&runtime, None)
            .await
            .map_err(|e| CliToolsError::Failed(e.to_string()))?;
        if !mcp.is_empty() {
            print!("{}", crate::mcp::doctor::format_mcp(&mcp));
        }
        if vault.is_none() {
            eprintln!(
                "note: no master key (CALLBRIDGE_MASTER_KEY): connectors needing secrets cannot be checked"
            );
        }
        Ok(
            if rows.iter().all(|r| r.is_ok())
                && agents.iter().all(|a| a.problems.is_empty())
                && mcp.iter().all(|m| m.is_ok())
            {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            },
        )
    })
}
