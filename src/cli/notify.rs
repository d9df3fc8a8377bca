//! `callbridge messaging show|set` (a tenant's messaging settings, JSON) and `callbridge notify
//! rules|add|remove|log|test` (staff notification rules, their delivery log, and a test send on one
//! channel), through the same [`crate::admin::AdminService`] methods as the admin API.
//!
//! It owns only terminal concerns (reading the settings from a file or stdin); it must not
//! validate settings or rules itself.

use std::io::Read;
use std::path::PathBuf;

use clap::{Args, Subcommand};

use crate::admin::dto::NotificationRuleRequest;
use crate::admin::{Principal, ServiceError};
use crate::app::AppCore;
use crate::connectors::messages::Channel;
use crate::store::{MessagingSettings, TenantId};

use super::{CliError, DbArgs, open, print};

#[derive(Debug, Args)]
pub struct MessagingArgs {
    #[command(subcommand)]
    command: MessagingCommand,
    #[command(flatten)]
    db: DbArgs,
}

#[derive(Debug, Subcommand)]
enum MessagingCommand {
    /// The tenant's messaging settings (defaults when never set).
    Show {
        #[arg(long)]
        tenant: String,
    },
    /// Replace the settings with a JSON document from `--file` or stdin (see docs/messaging.md).
    Set {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        file: Option<PathBuf>,
    },
}

#[derive(Debug, Args)]
pub struct NotifyArgs {
    #[command(subcommand)]
    command: NotifyCommand,
    #[command(flatten)]
    db: DbArgs,
}

#[derive(Debug, Subcommand)]
enum NotifyCommand {
    /// The tenant's notification rules.
    Rules {
        #[arg(long)]
        tenant: String,
    },
    /// Add a rule: on EVENT send on CHANNEL to RECIPIENT.
    Add {
        #[arg(long)]
        tenant: String,
        /// booking.created, booking.rescheduled, booking.cancelled, call.ended, opt_out,
        /// transfer.requested, payment.received
        #[arg(long)]
        event: String,
        /// sms, whatsapp, email, slack, teams
        #[arg(long)]
        channel: String,
        /// E.164 number, email address, or `caller` (sms, whatsapp); unused for slack and teams.
        #[arg(long, default_value = "")]
        to: String,
    },
    /// Remove a rule by id.
    Remove {
        rule: String,
        #[arg(long)]
        tenant: String,
    },
    /// The most recent notifications and their delivery state.
    Log {
        #[arg(long)]
        tenant: String,
    },
    /// Send one test message on a channel now, over the tenant's connector.
    Test {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        channel: String,
        /// Recipient for sms, whatsapp and email.
        #[arg(long)]
        to: Option<String>,
        #[arg(long, default_value = "Test notification from callbridge.")]
        text: String,
    },
}

pub(super) async fn run_messaging(args: MessagingArgs) -> Result<(), CliError> {
    let admin = Principal::Admin;
    let svc = open(&args.db).await?;
    match args.command {
        MessagingCommand::Show { tenant } => print(&svc.messaging_settings(&admin, &tenant).await?),
        MessagingCommand::Set { tenant, file } => {
            let text = match file {
                Some(path) => std::fs::read_to_string(&path).map_err(|e| {
                    CliError::Config(format!("cannot read {}: {e}", path.display()))
                })?,
                None => {
                    let mut text = String::new();
                    std::io::stdin()
                        .read_to_string(&mut text)
                        .map_err(|e| CliError::Config(format!("cannot read stdin: {e}")))?;
                    text
                }
            };
            let settings: MessagingSettings = serde_json::from_str(&text).map_err(|e| {
                CliError::Service(ServiceError::Invalid {
                    field: "settings".into(),
                    message: e.to_string(),
                })
            })?;
            print(
                &svc.put_messaging_settings(&admin, &tenant, settings)
                    .await?,
            )
        }
    }
}

pub(super) async fn run_notify(args: NotifyArgs) -> Result<(), CliError> {
    let admin = Principal::Admin;
    match args.command {
        NotifyCommand::Rules { tenant } => {
            let svc = open(&args.db).await?;
            print(&svc.list_notification_rules(&admin, &tenant).await?)
        }
        NotifyCommand::Add {
            tenant,
            event,
            channel,
            to,
        } => {
            let svc = open(&args.db).await?;
            let request = NotificationRuleRequest {
                event,
                channel,
                recipient: to,
            };
            print(&svc.add_notification_rule(&admin, &tenant, request).await?)
        }
        NotifyCommand::Remove { rule, tenant } => {
            let svc = open(&args.db).await?;
            svc.delete_notification_rule(&admin, &tenant, &rule).await?;
            eprintln!("rule {rule} removed");
            Ok(())
        }
        NotifyCommand::Log { tenant } => {
            let svc = open(&args.db).await?;
            print(&svc.list_notifications(&admin, &tenant, 100).await?)
        }
        NotifyCommand::Test {
            tenant,
            channel,
            to,
            text,
        } => {
            let channel = Channel::parse(&channel).ok_or_else(|| {
                CliError::Config(format!(
                    "--channel must be one of {}",
                    Channel::ALL.map(Channel::as_str).join(", ")
                ))
            })?;
            let core = open_core_with_vault(&args.db).await?;
            // The tenant must exist (and the id be valid) before anything is built.
            let svc = open(&args.db).await?;
            svc.messaging_settings(&admin, &tenant).await?;
            let id = TenantId::parse(&tenant).map_err(|e| CliError::Config(e.to_string()))?;
            let sent = crate::notify::send_test(
                &core.store,
                core.keyring.clone(),
                &core.policy,
                core.oauth.as_ref(),
                &id,
                channel,
                to.as_deref(),
                &text,
            )
            .await
            .map_err(|e| CliError::Config(e.to_string()))?;
            print(&serde_json::json!({ "sent": true, "channel": channel.as_str(), "id": sent }))
        }
    }
}

/// The store, the vault's keyring and the OAuth gateway, as `serve` has them.
async fn open_core_with_vault(db: &DbArgs) -> Result<AppCore, CliError> {
    let url = db
        .database_url
        .clone()
        .filter(|u| !u.trim().is_empty())
        .unwrap_or_else(|| super::DEFAULT_DATABASE_URL.to_owned());
    let egress = crate::app::egress_from_env().map_err(|e| CliError::Config(e.to_string()))?;
    let keyring = crate::app::keyring_from_env().map_err(|e| CliError::Config(e.to_string()))?;
    Ok(AppCore::open(&url, keyring, egress)
        .await
        .map_err(|e| CliError::Config(e.to_string()))?
        .with_oauth_from_env(std::env::var("PUBLIC_URL").ok()))
}
