//! `callbridge prompt list|show|set|versions|diff|rollback|import|templates`: a tenant's stored
//! prompts, through the same [`crate::admin::AdminService`] methods as the admin API.
//!
//! It owns only terminal concerns (reading the text from a file or stdin, printing the diff as
//! text); it must not check templates itself or read prompt files into a call.

use std::io::Read;
use std::path::PathBuf;

use clap::{Args, Subcommand};

use crate::admin::dto::PromptImportRequest;
use crate::admin::{MAX_PROMPT_BYTES, Principal};

use super::{CliError, DbArgs, open, print};

#[derive(Debug, Args)]
pub struct PromptArgs {
    #[command(subcommand)]
    command: PromptCommand,
    #[command(flatten)]
    db: DbArgs,
}

#[derive(Debug, Subcommand)]
enum PromptCommand {
    /// The current version of each of the tenant's prompts.
    List {
        #[arg(long)]
        tenant: String,
    },
    /// One prompt (the current version unless `--version`).
    Show {
        name: String,
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        version: Option<i64>,
    },
    /// Write a prompt's next version from a file (`--file`) or stdin; created when new.
    Set {
        name: String,
        #[arg(long)]
        tenant: String,
        /// The text; without it, read from stdin.
        #[arg(long)]
        file: Option<PathBuf>,
    },
    /// Every version of a prompt.
    Versions {
        name: String,
        #[arg(long)]
        tenant: String,
    },
    /// The line diff from `--from` to `--to` (default: the current version).
    Diff {
        name: String,
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        from: i64,
        #[arg(long)]
        to: Option<i64>,
    },
    /// Make an older version's text current again (written as a new version).
    Rollback {
        name: String,
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        version: i64,
    },
    /// Copy a template file (`<template>.md` in the prompts directory) into the tenant's prompts.
    Import {
        template: String,
        #[arg(long)]
        tenant: String,
        /// The tenant's prompt to write (default: the template's name).
        #[arg(long = "as")]
        name: Option<String>,
    },
    /// The template files of the prompts directory.
    Templates,
}

fn read_text(file: Option<PathBuf>) -> Result<String, CliError> {
    let mut text = String::new();
    let limit = MAX_PROMPT_BYTES + 1;
    let read = match &file {
        Some(path) => std::fs::File::open(path)
            .and_then(|f| f.take(limit).read_to_string(&mut text))
            .map_err(|e| CliError::Config(format!("{}: {e}", path.display()))),
        None => std::io::stdin()
            .take(limit)
            .read_to_string(&mut text)
            .map_err(|e| CliError::Config(format!("stdin: {e}"))),
    };
    read.map(|_| text)
}

pub(super) async fn run(args: PromptArgs) -> Result<(), CliError> {
    let svc = open(&args.db).await?;
    let admin = Principal::Admin;
    match args.command {
        PromptCommand::List { tenant } => print(&svc.list_prompts(&admin, &tenant).await?),
        PromptCommand::Show {
            name,
            tenant,
            version,
        } => print(&svc.get_prompt(&admin, &tenant, &name, version).await?),
        PromptCommand::Set { name, tenant, file } => {
            let text = read_text(file)?;
            print(&svc.put_prompt(&admin, &tenant, &name, &text).await?)
        }
        PromptCommand::Versions { name, tenant } => {
            print(&svc.prompt_versions(&admin, &tenant, &name).await?)
        }
        PromptCommand::Diff {
            name,
            tenant,
            from,
            to,
        } => {
            let diff = svc.diff_prompt(&admin, &tenant, &name, from, to).await?;
            println!("--- {name} v{}\n+++ {name} v{}", diff.from, diff.to);
            print!("{}", diff.diff);
            Ok(())
        }
        PromptCommand::Rollback {
            name,
            tenant,
            version,
        } => print(&svc.rollback_prompt(&admin, &tenant, &name, version).await?),
        PromptCommand::Import {
            template,
            tenant,
            name,
        } => print(
            &svc.import_prompt(&admin, &tenant, PromptImportRequest { template, name })
                .await?,
        ),
        PromptCommand::Templates => print(&svc.prompt_templates()),
    }
}
