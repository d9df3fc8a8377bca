//! `callbridge inbound source|rule|events|event|replay`: a tenant's inbound webhook sources (the
//! URL and, once, the secret to paste at the vendor), rules, recent events and replay, through the
//! same [`crate::admin::AdminService`] operations as the API.
//!
//! It must not verify or process deliveries (the server does).

use std::sync::Arc;

use clap::{Args, Subcommand};

use crate::admin::inbound::{CreateRuleRequest, CreateSourceRequest, EventsQuery};
use crate::admin::{Principal, ServiceError};

use super::{CliError, DbArgs, open, print};

#[derive(Debug, Args)]
pub struct InboundArgs {
    #[command(subcommand)]
    command: InboundCommand,
    /// The server's public URL (source URLs are built on it).
    #[arg(long, env = "PUBLIC_URL", global = true)]
    public_url: Option<String>,
    #[command(flatten)]
    db: DbArgs,
}

#[derive(Debug, Subcommand)]
enum InboundCommand {
    /// Sources: add (prints the URL and, once, the generated secret), list, remove.
    Source {
        #[command(subcommand)]
        command: SourceCommand,
    },
    /// Rules: add (filter and action as JSON), list, remove.
    Rule {
        #[command(subcommand)]
        command: RuleCommand,
    },
    /// Recent events with their verification and processing state.
    Events {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        source: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// One event: payload and what each rule did.
    Event {
        id: String,
        #[arg(long)]
        tenant: String,
    },
    /// Put a failed (or done) event back in the inbox.
    Replay {
        id: String,
        #[arg(long)]
        tenant: String,
    },
}

#[derive(Debug, Subcommand)]
enum SourceCommand {
    Add {
        /// Source id (its URL segment).
        id: String,
        #[arg(long)]
        tenant: String,
        /// calendly, calcom, shopify, hubspot, stripe, whatsapp, twilio, standard.
        #[arg(long)]
        kind: String,
        /// Read the vendor-issued signing secret from stdin (Shopify, HubSpot, Stripe, WhatsApp).
        #[arg(long)]
        secret_stdin: bool,
    },
    List {
        #[arg(long)]
        tenant: String,
    },
    Remove {
        id: String,
        #[arg(long)]
        tenant: String,
    },
}

#[derive(Debug, Subcommand)]
enum RuleCommand {
    Add {
        name: String,
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        source: String,
        #[arg(long)]
        event_type: String,
        /// Conditions as a JSON array (`[{"path": "payload.status", "equals": "active"}]`).
        #[arg(long, default_value = "[]")]
        filter: String,
        /// The action as a JSON object (`{"type": "call", "agent_id": …, "phone": …}`); types
        /// `call`, `enrol`, `cancel_calls`, `do_not_call`, `message` (docs/inbound.md).
        #[arg(long)]
        action: String,
    },
    List {
        #[arg(long)]
        tenant: String,
    },
    Remove {
        id: String,
        #[arg(long)]
        tenant: String,
    },
}

fn json(field: &str, text: &str) -> Result<serde_json::Value, CliError> {
    serde_json::from_str(text)
        .map_err(|e| CliError::Service(ServiceError::invalid(field, e.to_string())))
}

pub(super) async fn run(args: InboundArgs) -> Result<(), CliError> {
    let admin = Principal::Admin;
    let mut svc = open(&args.db).await?;
    if let Some(public_url) = &args.public_url {
        let store = svc.store().clone();
        let keyring =
            crate::app::keyring_from_env().map_err(|e| CliError::Config(e.to_string()))?;
        let vault = keyring.map(|k| crate::tenant::vault::Vault::new(store.clone(), k));
        svc = svc.with_inbound(crate::inbound::InboundService::new(
            store,
            vault,
            None,
            public_url,
            Arc::default(),
            Arc::new(crate::campaign::SystemClock),
        ));
    }
    match args.command {
        InboundCommand::Source { command } => match command {
            SourceCommand::Add {
                id,
                tenant,
                kind,
                secret_stdin,
            } => {
                let secret = if secret_stdin {
                    let mut text = String::new();
                    std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
                        .map_err(|e| CliError::Config(format!("stdin: {e}")))?;
                    Some(text.trim().to_owned())
                } else {
                    None
                };
                let created = svc
                    .create_source(&admin, &tenant, CreateSourceRequest { id, kind, secret })
                    .await?;
                eprintln!("{}", created.source.setup);
                if created.secret.is_some() || created.verify_token.is_some() {
                    eprintln!("The secret is shown once: paste it at the vendor now.");
                }
                print(&created)
            }
            SourceCommand::List { tenant } => print(&svc.list_sources(&admin, &tenant).await?),
            SourceCommand::Remove { id, tenant } => {
                svc.delete_source(&admin, &tenant, &id).await?;
                eprintln!("source {id} removed");
                Ok(())
            }
        },
        InboundCommand::Rule { command } => match command {
            RuleCommand::Add {
                name,
                tenant,
                source,
                event_type,
                filter,
                action,
            } => {
                let filter = match json("filter", &filter)? {
                    serde_json::Value::Array(items) => items,
                    _ => {
                        return Err(CliError::Service(ServiceError::invalid(
                            "filter",
                            "a JSON array",
                        )));
                    }
                };
                let request = CreateRuleRequest {
                    name,
                    source,
                    event_type,
                    filter,
                    action: json("action", &action)?,
                };
                print(&svc.create_rule(&admin, &tenant, request).await?)
            }
            RuleCommand::List { tenant } => print(&svc.list_rules(&admin, &tenant).await?),
            RuleCommand::Remove { id, tenant } => {
                svc.delete_rule(&admin, &tenant, &id).await?;
                eprintln!("rule {id} removed");
                Ok(())
            }
        },
        InboundCommand::Events {
            tenant,
            source,
            limit,
        } => print(
            &svc.list_inbound_events(
                &admin,
                &tenant,
                EventsQuery {
                    source,
                    limit: Some(limit),
                },
            )
            .await?,
        ),
        InboundCommand::Event { id, tenant } => {
            print(&svc.inbound_event(&admin, &tenant, &id).await?)
        }
        InboundCommand::Replay { id, tenant } => {
            print(&svc.replay_inbound_event(&admin, &tenant, &id).await?)
        }
    }
}
