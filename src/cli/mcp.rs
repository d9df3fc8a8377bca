//! `callbridge mcp tools|servers`: what a tenant's MCP endpoint (`/mcp`) lists, and whether its
//! agents' external MCP servers answer — through the same code the server and calls use
//! ([`crate::mcp::server::TenantToolServer::tools_of`], [`crate::mcp::doctor`]). It must not
//! call a tool.

use std::process::ExitCode;

use clap::{Args, Subcommand};
use serde_json::json;

use super::tools::{CliToolsError, RuntimeArgs, block_on, runtime, tenant_id};
use crate::mcp::doctor::{check_mcp_servers, format_mcp};
use crate::mcp::server::{TenantToolServer, mcp_tool};

#[derive(Debug, Args)]
pub struct McpArgs {
    #[command(subcommand)]
    command: McpCommand,
    #[command(flatten)]
    runtime: RuntimeArgs,
}

#[derive(Debug, Subcommand)]
enum McpCommand {
    /// The tools `/mcp` lists for a tenant (its usable capability tools and built-ins).
    Tools {
        #[arg(long)]
        tenant: String,
        /// Print them as MCP tool objects (name, description, inputSchema), one JSON array.
        #[arg(long)]
        json: bool,
    },
    /// Each external MCP server of the tenant's agents: its tools, or why it cannot be reached.
    Servers {
        #[arg(long)]
        tenant: String,
    },
}

/// `callbridge mcp …`
pub fn run_mcp(args: McpArgs) -> ExitCode {
    block_on(async move {
        let runtime = runtime(&args.runtime).await?;
        match args.command {
            McpCommand::Tools { tenant, json } => {
                let tenant = tenant_id(&tenant)?;
                let tools = TenantToolServer::tools_of(&runtime, &tenant)
                    .await
                    .map_err(|e| CliToolsError::Failed(e.message.to_string()))?;
                if json {
                    let tools: Vec<_> = tools.into_iter().map(mcp_tool).collect();
                    println!(
                        "{}",
                        serde_json::to_string_pretty(&json!(tools)).unwrap_or_default()
                    );
                } else {
                    for tool in tools {
                        let summary = tool.description.split(". ").next().unwrap_or_default();
                        println!("{:<24} {summary}", tool.name);
                    }
                }
                Ok(ExitCode::SUCCESS)
            }
            McpCommand::Servers { tenant } => {
                let tenant = tenant_id(&tenant)?;
                let rows = check_mcp_servers(&runtime, Some(&tenant))
                    .await
                    .map_err(|e| CliToolsError::Failed(e.to_string()))?;
                print!("{}", format_mcp(&rows));
                Ok(if rows.iter().all(|r| r.is_ok()) {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::FAILURE
                })
            }
        }
    })
}
