//! The operator CLI: `callbridge tenant|number|agent|connector|secret|apikey|calls|webhook|call|campaign …`,
//! mirroring the admin API and working directly against the database (`DATABASE_URL`). Every
//! command calls the same [`AdminService`] method as the matching API endpoint, as the admin
//! principal, and prints the same JSON view on stdout.
//!
//! It must not implement rules of its own (the service does) and never takes a secret value from
//! the command line: secret values are read from stdin, new master keys from the environment.
//! Errors go to stderr as one line; exit code 1 for a refused operation, 2 for configuration.

pub mod campaign;
pub mod inbound;
pub mod mcp;
pub mod notify;
pub mod prompt;
pub mod tools;

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;

use crate::admin::dto::{
    AddNumberRequest, AgentPatch, AgentRequest, ConnectorRequest, CreateTenantRequest,
    DoNotCallRequest, GenerateSigningSecretRequest, PlaceCallRequest, RouteNumberRequest,
    UpdateTenantRequest, VoicemailOption, WebhookRequest,
};
use crate::admin::{AdminService, NEW_MASTER_KEY_ENV, Principal, ServiceError};
use crate::app::AppCore;
use crate::tenant::vault::MasterKey;

/// The same default as `callbridge serve`.
pub(crate) const DEFAULT_DATABASE_URL: &str = "sqlite://callbridge.db?mode=rwc";

/// Where the CLI finds the database and the prompt templates.
#[derive(Debug, Clone, Args)]
pub struct DbArgs {
    /// Store: `sqlite://FILE?mode=rwc` or `postgres://…`.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true, global = true)]
    pub database_url: Option<String>,
    /// Directory of prompt template files (`<name>.md`) that `prompt import` copies into a tenant.
    #[arg(long, env = "CALLBRIDGE_PROMPTS_DIR", global = true)]
    pub prompts_dir: Option<PathBuf>,
}

/// The administration subcommands, flattened into the binary's command list.
#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Tenants (create, list, show, update, delete).
    Tenant(TenantArgs),
    /// Phone numbers routed to agents.
    Number(NumberArgs),
    /// Agents (prompt, model, voice, tools, limits).
    Agent(AgentArgs),
    /// A tenant's do-not-call list (list, add, remove).
    Dnc(DncArgs),
    /// A tenant's prompts: set (versions kept), show, versions, diff, rollback, import a template.
    Prompt(prompt::PromptArgs),
    /// Vendor connector configurations.
    Connector(ConnectorArgs),
    /// Encrypted secrets (values from stdin only) and master-key rotation.
    Secret(SecretArgs),
    /// Tenant API keys.
    Apikey(ApiKeyArgs),
    /// Call history (read-only).
    Calls(CallsArgs),
    /// Post-call webhook settings.
    Webhook(WebhookArgs),
    /// Place one outbound call (`callbridge call +14155550123 --tenant T --agent A --var name=Ana`).
    Call(CallArgs),
    /// Campaigns: create from a CSV file, status (with a live progress bar), pause, resume,
    /// cancel, export results, tenant dial limits.
    Campaign(campaign::CampaignArgs),
    /// Connect a tenant's vendor account with OAuth: prints the URL the business owner opens
    /// (`callbridge connect hubspot --tenant acme`).
    Connect(ConnectArgs),
    /// A tenant's messaging settings for `send_message` (staff recipients, limits, allowed email
    /// domains, WhatsApp template): show, set from JSON.
    Messaging(notify::MessagingArgs),
    /// Staff notification rules (on event → channel), their delivery log, and a test send
    /// (`callbridge notify test --tenant T --channel slack`).
    Notify(notify::NotifyArgs),
    /// A tenant's OAuth connections: list, show, disconnect (never tokens).
    Connections(ConnectionsArgs),
    /// Inbound webhooks: sources (URL and secret to paste at the vendor), rules, events, replay.
    Inbound(inbound::InboundArgs),
}

#[derive(Debug, Args)]
pub struct ConnectArgs {
    /// Vendor id (`hubspot`, `google_calendar`, `calendly`).
    vendor: String,
    #[arg(long)]
    tenant: String,
    /// Where the vendor sends the owner back (`PUBLIC_URL/oauth/callback`).
    #[arg(long, env = "PUBLIC_URL")]
    public_url: String,
    #[command(flatten)]
    db: DbArgs,
}

#[derive(Debug, Args)]
pub struct ConnectionsArgs {
    #[command(subcommand)]
    command: ConnectionsCommand,
    #[command(flatten)]
    db: DbArgs,
}

#[derive(Debug, Subcommand)]
enum ConnectionsCommand {
    /// Every connection of the tenant.
    List {
        #[arg(long)]
        tenant: String,
    },
    /// One connection.
    Show {
        vendor: String,
        #[arg(long)]
        tenant: String,
    },
    /// Revoke at the vendor where possible, then delete the tokens.
    Disconnect {
        vendor: String,
        #[arg(long)]
        tenant: String,
    },
}

#[derive(Debug, Args)]
pub struct CallArgs {
    /// Number to call, E.164.
    to: String,
    #[arg(long)]
    tenant: String,
    /// Agent id or name.
    #[arg(long)]
    agent: String,
    /// Prompt variable `NAME=VALUE` (`{{var.NAME}}` in the template); repeatable.
    #[arg(long = "var", value_name = "NAME=VALUE")]
    variables: Vec<String>,
    #[command(flatten)]
    voicemail: VoicemailFlags,
    /// Where Twilio reaches this bridge's webhooks.
    #[arg(long, env = "PUBLIC_URL")]
    public_url: String,
    #[arg(long, env = "TWILIO_ACCOUNT_SID")]
    twilio_account_sid: String,
    /// Secret: `TWILIO_AUTH_TOKEN` or the file `TWILIO_AUTH_TOKEN_FILE` names, never a flag.
    #[arg(skip = crate::config::env_secret("TWILIO_AUTH_TOKEN"))]
    twilio_auth_token: Option<String>,
    #[command(flatten)]
    db: DbArgs,
}

/// Answering machine detection flags of `call` and `campaign create`.
#[derive(Debug, Args)]
struct VoicemailFlags {
    /// With answering machine detection: hang up on a machine.
    #[arg(long, conflicts_with = "voicemail_message")]
    voicemail_hangup: bool,
    /// With answering machine detection: leave this message after the beep.
    #[arg(long)]
    voicemail_message: Option<String>,
}

impl VoicemailFlags {
    fn option(&self) -> Option<VoicemailOption> {
        match (&self.voicemail_message, self.voicemail_hangup) {
            (Some(text), _) => Some(VoicemailOption {
                action: "message".into(),
                message: Some(text.clone()),
            }),
            (None, true) => Some(VoicemailOption {
                action: "hangup".into(),
                message: None,
            }),
            (None, false) => None,
        }
    }
}

#[derive(Debug, Args)]
pub struct DncArgs {
    #[command(subcommand)]
    command: DncCommand,
    #[command(flatten)]
    db: DbArgs,
}

#[derive(Debug, Subcommand)]
enum DncCommand {
    /// The numbers never dialled for the tenant.
    List {
        #[arg(long)]
        tenant: String,
    },
    /// Never dial this number (E.164) for the tenant.
    Add {
        number: String,
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Take a number off the list.
    Remove {
        number: String,
        #[arg(long)]
        tenant: String,
    },
}

#[derive(Debug, Args)]
pub struct TenantArgs {
    #[command(subcommand)]
    command: TenantCommand,
    #[command(flatten)]
    db: DbArgs,
}

#[derive(Debug, Subcommand)]
enum TenantCommand {
    /// Create a tenant.
    Create {
        #[arg(long)]
        name: String,
        /// IANA time zone, e.g. Europe/Paris.
        #[arg(long)]
        time_zone: String,
        /// Tenant id (slug); derived from the name when omitted.
        #[arg(long)]
        id: Option<String>,
    },
    /// List every tenant.
    List,
    /// Show one tenant.
    Show { tenant: String },
    /// Change a tenant's name or time zone.
    Update {
        tenant: String,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        time_zone: Option<String>,
    },
    /// Delete a tenant and everything it owns.
    Delete {
        tenant: String,
        /// Do not ask for confirmation (scripts).
        #[arg(long)]
        yes: bool,
    },
}

#[derive(Debug, Args)]
pub struct NumberArgs {
    #[command(subcommand)]
    command: NumberCommand,
    #[command(flatten)]
    db: DbArgs,
}

#[derive(Debug, Subcommand)]
enum NumberCommand {
    /// Add an E.164 number routed to an agent (id or name).
    Add {
        number: String,
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        agent: String,
    },
    /// List a tenant's numbers.
    List {
        #[arg(long)]
        tenant: String,
    },
    /// Route a number to another agent.
    Route {
        number: String,
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        agent: String,
    },
    /// Remove a number.
    Remove {
        number: String,
        #[arg(long)]
        tenant: String,
    },
}

#[derive(Debug, Args)]
pub struct AgentArgs {
    #[command(subcommand)]
    command: AgentCommand,
    #[command(flatten)]
    db: DbArgs,
}

#[derive(Debug, Args)]
struct AgentFields {
    #[arg(long)]
    name: String,
    /// Prompt: `default` or the name of one of the tenant's prompts (`callbridge prompt set`).
    #[arg(long)]
    prompt: String,
    #[arg(long, default_value = "openai")]
    provider: String,
    #[arg(long, default_value = "gpt-realtime")]
    model: String,
    #[arg(long, default_value = "marin")]
    voice: String,
    /// Comma-separated tool names.
    #[arg(long, value_delimiter = ',')]
    tools: Vec<String>,
    /// Longest call in seconds.
    #[arg(long, default_value_t = 900)]
    max_duration: u32,
    /// Seconds of silence before the agent says goodbye.
    #[arg(long, default_value_t = 30)]
    silence_timeout: u32,
    /// Record calls.
    #[arg(long)]
    recording: bool,
    /// Default answering machine treatment of the agent's outbound calls.
    #[command(flatten)]
    voicemail: VoicemailFlags,
}

impl From<AgentFields> for AgentRequest {
    fn from(f: AgentFields) -> Self {
        Self {
            name: f.name,
            prompt_template: f.prompt,
            provider: f.provider,
            model: f.model,
            voice: f.voice,
            enabled_tools: f.tools.into_iter().filter(|t| !t.is_empty()).collect(),
            max_duration_s: f.max_duration,
            silence_timeout_s: f.silence_timeout,
            recording: f.recording,
            voicemail: f.voicemail.option(),
        }
    }
}

/// `agent update`: every flag optional; only the flags given are sent (as a merge patch).
#[derive(Debug, Args)]
struct AgentUpdateFields {
    #[arg(long)]
    name: Option<String>,
    /// Prompt: `default` or the name of one of the tenant's prompts.
    #[arg(long)]
    prompt: Option<String>,
    #[arg(long)]
    provider: Option<String>,
    #[arg(long)]
    model: Option<String>,
    #[arg(long)]
    voice: Option<String>,
    /// Comma-separated tool names (replaces the list; `--tools ''` for none).
    #[arg(long, value_delimiter = ',')]
    tools: Option<Vec<String>>,
    #[arg(long)]
    max_duration: Option<u32>,
    #[arg(long)]
    silence_timeout: Option<u32>,
    /// Record calls: `true` or `false`.
    #[arg(long)]
    recording: Option<bool>,
    #[command(flatten)]
    voicemail: VoicemailFlags,
    /// Turn answering machine detection off.
    #[arg(long, conflicts_with_all = ["voicemail_hangup", "voicemail_message"])]
    no_voicemail: bool,
}

impl AgentUpdateFields {
    fn patch(self) -> serde_json::Value {
        let voicemail = self.voicemail.option();
        let mut patch = serde_json::to_value(AgentPatch {
            name: self.name,
            prompt_template: self.prompt,
            provider: self.provider,
            model: self.model,
            voice: self.voice,
            enabled_tools: self
                .tools
                .map(|t| t.into_iter().filter(|t| !t.is_empty()).collect()),
            max_duration_s: self.max_duration,
            silence_timeout_s: self.silence_timeout,
            recording: self.recording,
            voicemail,
        })
        .unwrap_or_else(|_| serde_json::json!({}));
        if self.no_voicemail
            && let Some(object) = patch.as_object_mut()
        {
            object.insert("voicemail".into(), serde_json::Value::Null);
        }
        patch
    }
}

#[derive(Debug, Subcommand)]
enum AgentCommand {
    /// Create an agent.
    Create {
        #[arg(long)]
        tenant: String,
        #[command(flatten)]
        fields: AgentFields,
    },
    /// List a tenant's agents.
    List {
        #[arg(long)]
        tenant: String,
    },
    /// Show one agent.
    Show {
        agent: String,
        #[arg(long)]
        tenant: String,
    },
    /// Change the given settings of an agent (id or name); the others keep their values.
    Update {
        agent: String,
        #[arg(long)]
        tenant: String,
        #[command(flatten)]
        fields: AgentUpdateFields,
    },
    /// Delete an agent (no number may still route to it).
    Delete {
        agent: String,
        #[arg(long)]
        tenant: String,
    },
    /// Show where the agent's `transfer_call` may send a caller.
    TransferDestinations {
        agent: String,
        #[arg(long)]
        tenant: String,
    },
    /// Replace the agent's transfer destinations with a JSON file
    /// (`{"destinations": [{"name", "target", "description", "caller_id", "hours"}]}`).
    SetTransferDestinations {
        agent: String,
        #[arg(long)]
        tenant: String,
        /// The JSON document (`-` reads standard input).
        #[arg(long)]
        file: std::path::PathBuf,
    },
}

#[derive(Debug, Args)]
pub struct ConnectorArgs {
    #[command(subcommand)]
    command: ConnectorCommand,
    #[command(flatten)]
    db: DbArgs,
}

#[derive(Debug, Subcommand)]
enum ConnectorCommand {
    /// Configure a vendor connector (`connector vendors` lists the vendors and their secrets).
    Set {
        vendor: String,
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        base_url: Option<String>,
        /// Name of the tenant secret holding the credential.
        #[arg(long)]
        secret_name: Option<String>,
    },
    /// List a tenant's connectors.
    List {
        #[arg(long)]
        tenant: String,
    },
    /// Remove a connector configuration.
    Remove {
        vendor: String,
        #[arg(long)]
        tenant: String,
    },
    /// Every vendor this bridge has a connector for: capabilities and the secret it expects.
    Vendors,
}

#[derive(Debug, Args)]
pub struct SecretArgs {
    #[command(subcommand)]
    command: SecretCommand,
    #[command(flatten)]
    db: DbArgs,
}

#[derive(Debug, Subcommand)]
enum SecretCommand {
    /// Store a secret; the value is read from stdin (never from the command line).
    Set {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        name: String,
        #[arg(long)]
        vendor: String,
    },
    /// List a tenant's secrets (names, vendors, last 4 characters; never values).
    List {
        #[arg(long)]
        tenant: String,
    },
    /// Delete a secret.
    Delete {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        name: String,
    },
    /// Re-encrypt every secret under the key in CALLBRIDGE_NEW_MASTER_KEY (current and previous
    /// keys come from CALLBRIDGE_MASTER_KEY / CALLBRIDGE_MASTER_KEY_PREVIOUS / _FILE).
    RotateMaster,
}

#[derive(Debug, Args)]
pub struct ApiKeyArgs {
    #[command(subcommand)]
    command: ApiKeyCommand,
    #[command(flatten)]
    db: DbArgs,
}

#[derive(Debug, Subcommand)]
enum ApiKeyCommand {
    /// Issue a key; it is printed once.
    Create {
        #[arg(long)]
        tenant: String,
    },
    /// List a tenant's keys (prefixes only).
    List {
        #[arg(long)]
        tenant: String,
    },
    /// Revoke a key by id.
    Revoke {
        key_id: String,
        #[arg(long)]
        tenant: String,
    },
}

#[derive(Debug, Args)]
pub struct CallsArgs {
    #[command(subcommand)]
    command: CallsCommand,
    #[command(flatten)]
    db: DbArgs,
}

#[derive(Debug, Subcommand)]
enum CallsCommand {
    /// A tenant's most recent calls.
    List {
        #[arg(long)]
        tenant: String,
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// One call with its events.
    Show { call_id: String },
    /// Copy a call's recording (WAV or Ogg/Opus, as recorded) to a file.
    Recording {
        call_id: String,
        #[arg(long)]
        tenant: String,
        /// Where to write it (default: `<call id>.wav` or `.opus` in the current directory).
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

#[derive(Debug, Args)]
pub struct WebhookArgs {
    #[command(subcommand)]
    command: WebhookCommand,
    #[command(flatten)]
    db: DbArgs,
}

#[derive(Debug, Subcommand)]
enum WebhookCommand {
    /// Set the post-call webhook URL and the secret that signs it.
    Set {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        url: String,
        #[arg(long, default_value = "webhook-signing")]
        secret_name: String,
        #[arg(long)]
        disabled: bool,
    },
    /// Show the webhook settings.
    Show {
        #[arg(long)]
        tenant: String,
    },
    /// Generate a signing secret (printed once; give it to the receiver).
    GenerateSecret {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        secret_name: Option<String>,
    },
    /// Recent deliveries and their state.
    Deliveries {
        #[arg(long)]
        tenant: String,
    },
    /// Remove the webhook.
    Remove {
        #[arg(long)]
        tenant: String,
    },
}

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
enum CliError {
    #[error("{0}")]
    Config(String),
    #[error(transparent)]
    Service(#[from] ServiceError),
    #[error("cannot print the result: {0}")]
    Output(String),
}

impl CliError {
    fn exit_code(&self) -> ExitCode {
        match self {
            Self::Config(_) | Self::Service(ServiceError::VaultUnavailable(_)) => ExitCode::from(2),
            _ => ExitCode::from(1),
        }
    }
}

/// Runs one administration command to completion.
pub fn run(command: AdminCommand) -> ExitCode {
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
    match runtime.block_on(dispatch(command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // A refused contacts file: every bad row with its line, then the one-line reason.
            if let CliError::Service(ServiceError::InvalidCsv { rejected, .. }) = &e {
                for row in rejected {
                    eprintln!("  line {}: {}", row.line, row.message);
                }
            }
            eprintln!("callbridge: {e}");
            e.exit_code()
        }
    }
}

/// The shared parts for a command, built by the composition root (the egress allow-list comes
/// from `CALLBRIDGE_EGRESS_ALLOW`).
async fn open_core(db: &DbArgs) -> Result<AppCore, CliError> {
    let url = db
        .database_url
        .clone()
        .filter(|u| !u.trim().is_empty())
        .unwrap_or_else(|| DEFAULT_DATABASE_URL.to_owned());
    let egress = crate::app::egress_from_env().map_err(|e| CliError::Config(e.to_string()))?;
    // The keyring is read by the service itself: a missing or bad master key only matters to
    // commands that touch secrets.
    AppCore::open(&url, None, egress)
        .await
        .map_err(|e| CliError::Config(e.to_string()))
}

async fn open(db: &DbArgs) -> Result<AdminService, CliError> {
    let core = open_core(db).await?;
    Ok(service(core, db))
}

fn service(core: AppCore, db: &DbArgs) -> AdminService {
    let prompts_dir = db
        .prompts_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from("prompts"));
    let egress = core.egress().clone();
    AdminService::from_env(core.store, prompts_dir).with_egress(egress)
}

/// `connector vendors`: the registry, as operators need it (no database involved).
fn vendor_catalog() -> Vec<serde_json::Value> {
    crate::connectors::registry::VENDORS
        .iter()
        .map(|v| {
            let fields: Vec<_> = v
                .secret
                .fields
                .iter()
                .map(|f| {
                    serde_json::json!({
                        "name": f.name, "aliases": f.aliases, "required": f.required, "doc": f.doc,
                    })
                })
                .collect();
            serde_json::json!({
                "id": v.id,
                "name": v.name,
                "capabilities": v.capabilities.iter().map(|c| c.as_str()).collect::<Vec<_>>(),
                "default_base_url": v.default_base_url,
                "secret": {"bare_token": v.secret.bare_token, "fields": fields, "note": v.secret.note},
                "oauth": v.oauth.is_some(),
                "webhooks": v.webhooks.is_some(),
            })
        })
        .collect()
}

/// Asks the operator to type the tenant id before everything it owns is deleted; refuses when
/// there is no terminal to ask on (scripts pass `--yes`).
fn confirm_tenant_delete(tenant: &str) -> Result<(), CliError> {
    use std::io::{BufRead, IsTerminal, Write};
    if !std::io::stdin().is_terminal() {
        return Err(CliError::Config(format!(
            "deleting tenant {tenant} removes its agents, numbers, secrets, calls and recording \
             files; pass --yes to confirm without a terminal"
        )));
    }
    eprint!(
        "Delete tenant {tenant} with its agents, numbers, secrets, calls and recording files? \
         Type the tenant id to confirm: "
    );
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut answer)
        .map_err(|e| CliError::Config(format!("stdin: {e}")))?;
    if answer.trim() != tenant {
        return Err(CliError::Config("not confirmed; nothing deleted".into()));
    }
    Ok(())
}

fn print<T: Serialize>(value: &T) -> Result<(), CliError> {
    let text = serde_json::to_string_pretty(value).map_err(|e| CliError::Output(e.to_string()))?;
    println!("{text}");
    Ok(())
}

/// The admin service with the OAuth gateway (needs the master key and the apps from the
/// environment).
async fn open_with_oauth(
    db: &DbArgs,
    public_url: Option<String>,
) -> Result<AdminService, CliError> {
    let url = db
        .database_url
        .clone()
        .filter(|u| !u.trim().is_empty())
        .unwrap_or_else(|| DEFAULT_DATABASE_URL.to_owned());
    let egress = crate::app::egress_from_env().map_err(|e| CliError::Config(e.to_string()))?;
    let keyring = crate::app::keyring_from_env().map_err(|e| CliError::Config(e.to_string()))?;
    let core = AppCore::open(&url, keyring, egress)
        .await
        .map_err(|e| CliError::Config(e.to_string()))?
        .with_oauth_from_env(public_url);
    let oauth = core.oauth.clone();
    let svc = service(core, db);
    Ok(match oauth {
        Some(oauth) => svc.with_oauth(oauth),
        None => svc,
    })
}

async fn dispatch(command: AdminCommand) -> Result<(), CliError> {
    let admin = Principal::Admin;
    match command {
        AdminCommand::Connect(args) => {
            let svc = open_with_oauth(&args.db, Some(args.public_url.clone())).await?;
            let started = svc
                .start_connection(&admin, &args.tenant, &args.vendor)
                .await?;
            println!("{}", started.authorization_url);
            eprintln!(
                "Open this URL in a browser and consent; it is valid for 10 minutes and works once."
            );
            Ok(())
        }
        AdminCommand::Connections(args) => {
            let svc = open_with_oauth(&args.db, std::env::var("PUBLIC_URL").ok()).await?;
            match args.command {
                ConnectionsCommand::List { tenant } => {
                    print(&svc.list_connections(&admin, &tenant).await?)
                }
                ConnectionsCommand::Show { vendor, tenant } => {
                    print(&svc.get_connection(&admin, &tenant, &vendor).await?)
                }
                ConnectionsCommand::Disconnect { vendor, tenant } => {
                    print(&svc.disconnect(&admin, &tenant, &vendor).await?)
                }
            }
        }
        AdminCommand::Tenant(args) => {
            let svc = open(&args.db).await?;
            match args.command {
                TenantCommand::Create {
                    name,
                    time_zone,
                    id,
                } => print(
                    &svc.create_tenant(
                        &admin,
                        CreateTenantRequest {
                            id,
                            name,
                            time_zone,
                        },
                    )
                    .await?,
                ),
                TenantCommand::List => print(&svc.list_tenants(&admin).await?),
                TenantCommand::Show { tenant } => print(&svc.get_tenant(&admin, &tenant).await?),
                TenantCommand::Update {
                    tenant,
                    name,
                    time_zone,
                } => print(
                    &svc.update_tenant(&admin, &tenant, UpdateTenantRequest { name, time_zone })
                        .await?,
                ),
                TenantCommand::Delete { tenant, yes } => {
                    if !yes {
                        confirm_tenant_delete(&tenant)?;
                    }
                    svc.delete_tenant(&admin, &tenant).await?;
                    eprintln!("tenant {tenant} deleted");
                    Ok(())
                }
            }
        }
        AdminCommand::Number(args) => {
            let svc = open(&args.db).await?;
            match args.command {
                NumberCommand::Add {
                    number,
                    tenant,
                    agent,
                } => print(
                    &svc.add_number(&admin, &tenant, AddNumberRequest { number, agent })
                        .await?,
                ),
                NumberCommand::List { tenant } => print(&svc.list_numbers(&admin, &tenant).await?),
                NumberCommand::Route {
                    number,
                    tenant,
                    agent,
                } => print(
                    &svc.route_number(&admin, &tenant, &number, RouteNumberRequest { agent })
                        .await?,
                ),
                NumberCommand::Remove { number, tenant } => {
                    svc.remove_number(&admin, &tenant, &number).await?;
                    eprintln!("number {number} removed");
                    Ok(())
                }
            }
        }
        AdminCommand::Agent(args) => {
            let svc = open(&args.db).await?;
            match args.command {
                AgentCommand::Create { tenant, fields } => {
                    print(&svc.create_agent(&admin, &tenant, fields.into()).await?)
                }
                AgentCommand::List { tenant } => print(&svc.list_agents(&admin, &tenant).await?),
                AgentCommand::Show { agent, tenant } => {
                    print(&svc.get_agent(&admin, &tenant, &agent).await?)
                }
                AgentCommand::Update {
                    agent,
                    tenant,
                    fields,
                } => print(
                    &svc.patch_agent(&admin, &tenant, &agent, fields.patch())
                        .await?,
                ),
                AgentCommand::Delete { agent, tenant } => {
                    svc.delete_agent(&admin, &tenant, &agent).await?;
                    eprintln!("agent {agent} deleted");
                    Ok(())
                }
                AgentCommand::TransferDestinations { agent, tenant } => {
                    print(&svc.transfer_destinations(&admin, &tenant, &agent).await?)
                }
                AgentCommand::SetTransferDestinations {
                    agent,
                    tenant,
                    file,
                } => {
                    let text = read_document(&file)?;
                    let doc = serde_json::from_str(&text).map_err(|e| {
                        CliError::Config(format!(
                            "{}: not a destinations document: {e}",
                            file.display()
                        ))
                    })?;
                    print(
                        &svc.put_transfer_destinations(&admin, &tenant, &agent, doc)
                            .await?,
                    )
                }
            }
        }
        AdminCommand::Connector(ConnectorArgs {
            command: ConnectorCommand::Vendors,
            ..
        }) => print(&vendor_catalog()),
        AdminCommand::Connector(args) => {
            let svc = open(&args.db).await?;
            match args.command {
                ConnectorCommand::Set {
                    vendor,
                    tenant,
                    base_url,
                    secret_name,
                } => print(
                    &svc.put_connector(
                        &admin,
                        &tenant,
                        &vendor,
                        ConnectorRequest {
                            base_url,
                            secret_name,
                        },
                    )
                    .await?,
                ),
                ConnectorCommand::List { tenant } => {
                    print(&svc.list_connectors(&admin, &tenant).await?)
                }
                ConnectorCommand::Vendors => print(&vendor_catalog()),
                ConnectorCommand::Remove { vendor, tenant } => {
                    svc.delete_connector(&admin, &tenant, &vendor).await?;
                    eprintln!("connector {vendor} removed");
                    Ok(())
                }
            }
        }
        AdminCommand::Secret(args) => {
            let svc = open(&args.db).await?;
            match args.command {
                SecretCommand::Set {
                    tenant,
                    name,
                    vendor,
                } => {
                    let value = read_secret_from_stdin()?;
                    print(
                        &svc.put_secret(&admin, &tenant, &name, &vendor, value)
                            .await?,
                    )
                }
                SecretCommand::List { tenant } => print(&svc.list_secrets(&admin, &tenant).await?),
                SecretCommand::Delete { tenant, name } => {
                    svc.delete_secret(&admin, &tenant, &name).await?;
                    eprintln!("secret {name} deleted");
                    Ok(())
                }
                SecretCommand::RotateMaster => {
                    let text = std::env::var(NEW_MASTER_KEY_ENV)
                        .ok()
                        .filter(|t| !t.trim().is_empty())
                        .map(SecretString::from)
                        .ok_or_else(|| {
                            CliError::Config(format!(
                                "{NEW_MASTER_KEY_ENV}: is required (base64 of 32 random bytes, \
                                 e.g. `openssl rand -base64 32`)"
                            ))
                        })?;
                    let new_key = MasterKey::from_base64(text.expose_secret(), NEW_MASTER_KEY_ENV)
                        .map_err(|e| CliError::Config(e.to_string()))?;
                    let report = svc.rotate_master(&admin, new_key).await?;
                    println!(
                        "re-encrypted {} secret(s) in {} batch(es) under master key {}",
                        report.resealed, report.batches, report.new_key_id
                    );
                    println!(
                        "next: make {NEW_MASTER_KEY_ENV}'s value the current CALLBRIDGE_MASTER_KEY \
                         on every node, keeping the old key in CALLBRIDGE_MASTER_KEY_PREVIOUS until \
                         all nodes run with the new one"
                    );
                    Ok(())
                }
            }
        }
        AdminCommand::Apikey(args) => {
            let svc = open(&args.db).await?;
            match args.command {
                ApiKeyCommand::Create { tenant } => {
                    let created = svc.create_api_key(&admin, &tenant).await?;
                    eprintln!("store this key now: it is shown only once");
                    print(&created)
                }
                ApiKeyCommand::List { tenant } => print(&svc.list_api_keys(&admin, &tenant).await?),
                ApiKeyCommand::Revoke { key_id, tenant } => {
                    print(&svc.revoke_api_key(&admin, &tenant, &key_id).await?)
                }
            }
        }
        AdminCommand::Call(args) => {
            let Some(auth_token) = args.twilio_auth_token.as_deref() else {
                return Err(CliError::Config(
                    "TWILIO_AUTH_TOKEN: is required (environment or TWILIO_AUTH_TOKEN_FILE)".into(),
                ));
            };
            let core = open_core(&args.db).await?;
            let rest = crate::connectors::twilio_rest::TwilioRest::from_env(
                &core.policy,
                &args.twilio_account_sid,
                auth_token,
            )
            .map_err(|e| CliError::Config(format!("Twilio: {e}")))?;
            let dialer = crate::campaign::Dialer::new(rest, &args.public_url, auth_token);
            let svc = service(core, &args.db).with_dialer(dialer);
            let mut variables = std::collections::BTreeMap::new();
            for pair in &args.variables {
                let (name, value) = pair.split_once('=').ok_or_else(|| {
                    CliError::Service(ServiceError::Invalid {
                        field: "var".into(),
                        message: format!("{pair:?} is not NAME=VALUE"),
                    })
                })?;
                variables.insert(name.to_owned(), value.to_owned());
            }
            let voicemail = args.voicemail.option();
            let request = PlaceCallRequest {
                tenant: Some(args.tenant.clone()),
                to: args.to.clone(),
                agent: args.agent.clone(),
                variables,
                voicemail,
            };
            print(&svc.place_call(&admin, &request).await?)
        }
        AdminCommand::Campaign(args) => campaign::run(args).await,
        AdminCommand::Inbound(args) => inbound::run(args).await,
        AdminCommand::Prompt(args) => prompt::run(args).await,
        AdminCommand::Messaging(args) => notify::run_messaging(args).await,
        AdminCommand::Notify(args) => notify::run_notify(args).await,
        AdminCommand::Dnc(args) => {
            let svc = open(&args.db).await?;
            match args.command {
                DncCommand::List { tenant } => print(&svc.list_do_not_call(&admin, &tenant).await?),
                DncCommand::Add {
                    number,
                    tenant,
                    reason,
                } => print(
                    &svc.add_do_not_call(&admin, &tenant, DoNotCallRequest { number, reason })
                        .await?,
                ),
                DncCommand::Remove { number, tenant } => {
                    svc.remove_do_not_call(&admin, &tenant, &number).await?;
                    eprintln!("{number} removed from the do-not-call list");
                    Ok(())
                }
            }
        }
        AdminCommand::Calls(args) => {
            let svc = open(&args.db).await?;
            match args.command {
                CallsCommand::List { tenant, limit } => {
                    print(&svc.list_calls(&admin, &tenant, Some(limit)).await?)
                }
                CallsCommand::Show { call_id } => print(&svc.find_call(&admin, &call_id).await?),
                CallsCommand::Recording {
                    call_id,
                    tenant,
                    out,
                } => {
                    let (file, media_type) = svc.call_recording(&admin, &tenant, &call_id).await?;
                    let extension = if media_type == "audio/wav" {
                        "wav"
                    } else {
                        "opus"
                    };
                    let out =
                        out.unwrap_or_else(|| PathBuf::from(format!("{call_id}.{extension}")));
                    let bytes = std::fs::copy(&file, &out)
                        .map_err(|e| CliError::Output(format!("{}: {e}", out.display())))?;
                    eprintln!("{} ({media_type}, {bytes} bytes)", out.display());
                    Ok(())
                }
            }
        }
        AdminCommand::Webhook(args) => {
            let svc = open(&args.db).await?;
            match args.command {
                WebhookCommand::Set {
                    tenant,
                    url,
                    secret_name,
                    disabled,
                } => print(
                    &svc.put_webhook(
                        &admin,
                        &tenant,
                        WebhookRequest {
                            url,
                            secret_name,
                            enabled: !disabled,
                        },
                    )
                    .await?,
                ),
                WebhookCommand::Show { tenant } => print(&svc.get_webhook(&admin, &tenant).await?),
                WebhookCommand::GenerateSecret {
                    tenant,
                    secret_name,
                } => {
                    let generated = svc
                        .generate_signing_secret(
                            &admin,
                            &tenant,
                            GenerateSigningSecretRequest { secret_name },
                        )
                        .await?;
                    eprintln!(
                        "give this signing secret to the receiver now: it is shown only once"
                    );
                    print(&generated)
                }
                WebhookCommand::Deliveries { tenant } => {
                    print(&svc.list_deliveries(&admin, &tenant, None).await?)
                }
                WebhookCommand::Remove { tenant } => {
                    svc.delete_webhook(&admin, &tenant).await?;
                    eprintln!("webhook of {tenant} removed");
                    Ok(())
                }
            }
        }
    }
}

/// A document named on the command line: a file, or stdin for `-`.
fn read_document(path: &std::path::Path) -> Result<String, CliError> {
    use std::io::Read as _;
    let mut text = String::new();
    let read = if path.as_os_str() == "-" {
        std::io::stdin().read_to_string(&mut text).map(drop)
    } else {
        std::fs::read_to_string(path).map(|t| text = t)
    };
    read.map_err(|e| CliError::Config(format!("cannot read {}: {e}", path.display())))?;
    Ok(text)
}

/// The whole of stdin, without the trailing newline an `echo` or a terminal adds.
fn read_secret_from_stdin() -> Result<SecretString, CliError> {
    let mut raw = String::new();
    std::io::stdin()
        .read_to_string(&mut raw)
        .map_err(|e| CliError::Config(format!("cannot read the secret value from stdin: {e}")))?;
    let value = SecretString::from(raw.trim_end_matches(['\r', '\n']).to_owned());
    zeroize::Zeroize::zeroize(&mut raw);
    if value.expose_secret().is_empty() {
        return Err(CliError::Config(
            "the secret value is read from stdin, which was empty (e.g. `printf %s \"$KEY\" | \
             callbridge secret set …`)"
                .into(),
        ));
    }
    Ok(value)
}
