//! `callbridge campaign create|list|status|pause|resume|cancel|export|limits`: the campaign
//! endpoints of the admin API, run against the database as the admin through the same
//! [`AdminService`] methods.
//!
//! Beyond printing the service's views it owns only terminal concerns: reading the CSV file,
//! the human-readable status, and `status --watch` (an `indicatif` progress bar on a terminal,
//! one plain line per change otherwise, so scripts and logs get text rather than redraws). It
//! must not implement campaign rules or dial.

use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::admin::campaigns::{CampaignMove, MAX_CAMPAIGN_CSV_BYTES};
use crate::admin::dto::{CampaignView, CreateCampaignRequest, DialLimitsRequest, WindowOption};
use crate::admin::{AdminService, Principal};

use super::{CliError, DbArgs, VoicemailFlags, open, print};

/// How often `status --watch` looks at the campaign.
const WATCH_PERIOD: Duration = Duration::from_secs(1);
/// Rejected rows `status` lists before pointing at `--json`.
const REJECTED_SHOWN: usize = 20;

#[derive(Debug, Args)]
pub struct CampaignArgs {
    #[command(subcommand)]
    command: CampaignCommand,
    #[command(flatten)]
    db: DbArgs,
}

#[derive(Debug, Subcommand)]
enum CampaignCommand {
    /// Create a campaign from a CSV file (a `phone` column, optional `time_zone`, other columns
    /// become `{{var.NAME}}`); prints the campaign and every rejected row with its line.
    Create(CreateArgs),
    /// A tenant's campaigns, newest first.
    List {
        #[arg(long)]
        tenant: String,
    },
    /// Counts by state and outcome; `--watch` follows the campaign until it ends.
    Status {
        campaign: String,
        /// Refresh every second until the campaign is completed or cancelled (Ctrl-C stops).
        #[arg(long)]
        watch: bool,
        /// Print the JSON view (with `--watch`, one line per change).
        #[arg(long)]
        json: bool,
    },
    /// Stop dialling until resumed.
    Pause { campaign: String },
    /// Dial again.
    Resume { campaign: String },
    /// Finish every pending contact as `cancelled`; calls in progress finish normally.
    Cancel { campaign: String },
    /// Results as CSV, one row per contact in file order.
    Export {
        campaign: String,
        /// Write here instead of stdout.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Show a tenant's dial limits across all its campaigns, or set them.
    Limits {
        #[arg(long)]
        tenant: String,
        /// Campaign calls of the tenant in progress at once.
        #[arg(long)]
        max_concurrent: Option<u32>,
        /// Calls per second across the tenant's campaigns.
        #[arg(long)]
        cps: Option<f64>,
    },
}

#[derive(Debug, Args)]
struct CreateArgs {
    #[arg(long)]
    tenant: String,
    /// Agent id or name.
    #[arg(long)]
    agent: String,
    /// The contacts file.
    #[arg(long)]
    csv: PathBuf,
    /// Campaign name (default: the file's name without extension).
    #[arg(long)]
    name: Option<String>,
    /// Recipient-local calling hours.
    #[arg(long, default_value = "09:00-20:00")]
    hours: String,
    /// Calling days: `mon-sat`, `mon,wed,fri`, `all`.
    #[arg(long, default_value = "mon-sat")]
    days: String,
    /// Calls per second (more than 0, at most 100).
    #[arg(long, default_value_t = 1.0)]
    cps: f64,
    /// Calls of this campaign in progress at once.
    #[arg(long, default_value_t = 5)]
    max_concurrent: u32,
    /// Attempts per contact, the first included.
    #[arg(long, default_value_t = 3)]
    max_attempts: u32,
    /// Wait before retrying a busy, unanswered or failed call (`90s`, `30m`, `1h`).
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
    retry_delay: Duration,
    #[command(flatten)]
    voicemail: VoicemailFlags,
    /// Refuse the whole file when any row is bad.
    #[arg(long)]
    strict: bool,
}

pub(super) async fn run(args: CampaignArgs) -> Result<(), CliError> {
    let svc = open(&args.db).await?;
    let admin = Principal::Admin;
    match args.command {
        CampaignCommand::Create(create) => {
            let request = create_request(create)?;
            let view = svc.create_campaign(&admin, request).await?;
            eprintln!(
                "campaign {} created with {} contact(s); {} row(s) rejected",
                view.id, view.counts.total, view.rejected_count
            );
            for row in view.rejected.iter().flatten() {
                eprintln!("  line {}: {}", row.line, row.message);
            }
            print(&view)
        }
        CampaignCommand::List { tenant } => {
            print(&svc.list_campaigns(&admin, Some(&tenant)).await?)
        }
        CampaignCommand::Status {
            campaign,
            watch: false,
            json,
        } => {
            let view = svc.get_campaign(&admin, &campaign).await?;
            if json {
                print(&view)
            } else {
                println!("{}", status_text(&view));
                Ok(())
            }
        }
        CampaignCommand::Status {
            campaign,
            watch: true,
            json,
        } => watch(&svc, &campaign, json).await,
        CampaignCommand::Pause { campaign } => print(
            &svc.move_campaign(&admin, &campaign, CampaignMove::Pause)
                .await?,
        ),
        CampaignCommand::Resume { campaign } => print(
            &svc.move_campaign(&admin, &campaign, CampaignMove::Resume)
                .await?,
        ),
        CampaignCommand::Cancel { campaign } => print(
            &svc.move_campaign(&admin, &campaign, CampaignMove::Cancel)
                .await?,
        ),
        CampaignCommand::Export { campaign, out } => export(&svc, &campaign, out.as_deref()).await,
        CampaignCommand::Limits {
            tenant,
            max_concurrent,
            cps,
        } => {
            let current = svc.get_dial_limits(&admin, &tenant).await?;
            if max_concurrent.is_none() && cps.is_none() {
                return print(&current);
            }
            let calls_per_second = cps.or(current.calls_per_second).ok_or_else(|| {
                CliError::Config("the tenant is not paced now: give --cps as well".into())
            })?;
            let request = DialLimitsRequest {
                max_concurrent: max_concurrent.unwrap_or(current.max_concurrent),
                calls_per_second,
            };
            print(&svc.put_dial_limits(&admin, &tenant, request).await?)
        }
    }
}

fn create_request(args: CreateArgs) -> Result<CreateCampaignRequest, CliError> {
    let csv = read_csv(&args.csv)?;
    let name = match args.name {
        Some(name) => name,
        None => args
            .csv
            .file_stem()
            .map(|stem| stem.to_string_lossy().into_owned())
            .unwrap_or_else(|| "campaign".into()),
    };
    Ok(CreateCampaignRequest {
        tenant: Some(args.tenant),
        name,
        agent: args.agent,
        csv,
        window: WindowOption {
            hours: args.hours,
            days: args.days,
        },
        calls_per_second: args.cps,
        max_concurrent: args.max_concurrent,
        max_attempts: args.max_attempts,
        retry_delay_secs: i64::try_from(args.retry_delay.as_secs()).unwrap_or(i64::MAX),
        voicemail: args.voicemail.option(),
        strict: args.strict,
    })
}

/// The file's text, read no further than one byte past the limit (the service names the limit).
fn read_csv(path: &Path) -> Result<String, CliError> {
    let bad = |why: String| CliError::Config(format!("--csv {}: {why}", path.display()));
    let file = std::fs::File::open(path).map_err(|e| bad(e.to_string()))?;
    let mut bytes = Vec::new();
    file.take(MAX_CAMPAIGN_CSV_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| bad(e.to_string()))?;
    String::from_utf8(bytes).map_err(|_| bad("not UTF-8 text".into()))
}

/// One line of progress: status, done of total, the contacts in flight, outcomes so far.
pub fn progress_line(view: &CampaignView) -> String {
    let c = &view.counts;
    let mut line = format!(
        "{}: {}/{} done, {} pending, {} dialing, {} in call",
        view.status, c.done, c.total, c.pending, c.dialing, c.in_call
    );
    if !c.by_outcome.is_empty() {
        line.push_str("; ");
        line.push_str(&outcomes_text(view));
    }
    line
}

fn outcomes_text(view: &CampaignView) -> String {
    view.counts
        .by_outcome
        .iter()
        .map(|(outcome, n)| format!("{outcome} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The plain `status` report.
pub fn status_text(view: &CampaignView) -> String {
    let c = &view.counts;
    let pacing = match view.calls_per_second {
        Some(cps) => format!("{cps} call/s"),
        None => "unpaced".into(),
    };
    let mut lines = vec![
        format!(
            "campaign {} {:?} (tenant {}, agent {})",
            view.id, view.name, view.tenant_id, view.agent_id
        ),
        format!("status:   {}", view.status),
        format!(
            "contacts: {} total: {} pending, {} dialing, {} in call, {} done",
            c.total, c.pending, c.dialing, c.in_call, c.done
        ),
        format!(
            "outcomes: {}",
            if c.by_outcome.is_empty() {
                "none yet".to_owned()
            } else {
                outcomes_text(view)
            }
        ),
        format!(
            "settings: {} {} recipient-local, {pacing}, {} at once, {} attempt(s), retry after {} s",
            view.window.hours,
            view.window.days,
            view.max_concurrent,
            view.max_attempts,
            view.retry_delay_secs
        ),
        format!("rejected: {} row(s)", view.rejected_count),
    ];
    let rejected = view.rejected.as_deref().unwrap_or_default();
    for row in rejected.iter().take(REJECTED_SHOWN) {
        lines.push(format!("  line {}: {}", row.line, row.message));
    }
    if rejected.len() > REJECTED_SHOWN {
        lines.push(format!(
            "  … {} more (--json lists them all)",
            rejected.len() - REJECTED_SHOWN
        ));
    }
    lines.join("\n")
}

fn is_finished(view: &CampaignView) -> bool {
    matches!(view.status.as_str(), "completed" | "cancelled")
}

/// Follows a campaign until it is completed or cancelled, or Ctrl-C.
async fn watch(svc: &AdminService, campaign: &str, json: bool) -> Result<(), CliError> {
    let bar = (std::io::stdout().is_terminal() && !json).then(progress_bar);
    let mut last_printed = String::new();
    let mut ticks = tokio::time::interval(WATCH_PERIOD);
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        tokio::select! {
            _ = &mut ctrl_c => {
                if let Some(bar) = &bar {
                    bar.abandon();
                }
                return Ok(());
            }
            _ = ticks.tick() => {}
        }
        let view = svc.get_campaign(&Principal::Admin, campaign).await?;
        match &bar {
            Some(bar) => {
                bar.set_length(view.counts.total);
                bar.set_position(view.counts.done);
                bar.set_message(progress_line(&view));
            }
            None => {
                let line = if json {
                    serde_json::to_string(&view).map_err(|e| CliError::Output(e.to_string()))?
                } else {
                    progress_line(&view)
                };
                if line != last_printed {
                    println!("{line}");
                    last_printed = line;
                }
            }
        }
        if is_finished(&view) {
            if let Some(bar) = &bar {
                bar.finish();
            }
            return Ok(());
        }
    }
}

fn progress_bar() -> ProgressBar {
    let style =
        ProgressStyle::with_template("[{elapsed_precise}] {bar:40.cyan/blue} {pos}/{len} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
    ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stdout()).with_style(style)
}

async fn export(svc: &AdminService, campaign: &str, out: Option<&Path>) -> Result<(), CliError> {
    let mut export = svc
        .export_campaign_results(&Principal::Admin, campaign)
        .await?;
    let target = out.map_or_else(|| "stdout".to_owned(), |p| p.display().to_string());
    let failed = |e: std::io::Error| CliError::Output(format!("cannot write {target}: {e}"));
    let mut writer: Box<dyn Write> = match out {
        Some(path) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(path).map_err(failed)?,
        )),
        None => Box::new(std::io::stdout()),
    };
    while let Some(chunk) = export.next_chunk().await? {
        writer.write_all(&chunk).map_err(failed)?;
    }
    writer.flush().map_err(failed)?;
    eprintln!(
        "exported {} contact(s) of campaign {campaign} to {target}",
        export.rows()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin::dto::CampaignCountsView;

    fn view(status: &str, done: u64, outcomes: &[(&str, u64)]) -> CampaignView {
        CampaignView {
            id: "cmp_1".into(),
            tenant_id: "acme".into(),
            name: "Spring".into(),
            agent_id: "ag_1".into(),
            status: status.into(),
            window: WindowOption::default(),
            calls_per_second: Some(2.0),
            dial_interval_ms: 500,
            max_concurrent: 5,
            max_attempts: 3,
            retry_delay_secs: 3600,
            voicemail: None,
            counts: CampaignCountsView {
                total: 10,
                pending: 10 - done - 3,
                dialing: 1,
                in_call: 2,
                done,
                by_outcome: outcomes
                    .iter()
                    .map(|(o, n)| ((*o).to_owned(), *n))
                    .collect(),
            },
            rejected_count: 1,
            rejected: Some(vec![crate::admin::dto::RejectedRowView {
                line: 3,
                message: "invalid phone number".into(),
            }]),
            created_at: "2026-01-05T10:00:00Z".into(),
            updated_at: "2026-01-05T10:00:00Z".into(),
        }
    }

    #[test]
    fn progress_and_status_name_every_count() {
        let v = view("active", 4, &[("busy", 1), ("completed", 3)]);
        assert_eq!(
            progress_line(&v),
            "active: 4/10 done, 3 pending, 1 dialing, 2 in call; busy 1, completed 3"
        );
        let text = status_text(&v);
        assert!(text.contains("contacts: 10 total: 3 pending, 1 dialing, 2 in call, 4 done"));
        assert!(text.contains("outcomes: busy 1, completed 3"));
        assert!(text.contains("09:00-20:00 mon-sat recipient-local, 2 call/s, 5 at once"));
        assert!(text.contains("  line 3: invalid phone number"));
        assert_eq!(
            progress_line(&view("paused", 0, &[])),
            "paused: 0/10 done, 7 pending, 1 dialing, 2 in call"
        );
    }

    #[test]
    fn watching_ends_with_the_campaign() {
        assert!(!is_finished(&view("active", 0, &[])));
        assert!(!is_finished(&view("paused", 0, &[])));
        assert!(is_finished(&view("cancelled", 0, &[])));
        assert!(is_finished(&view("completed", 7, &[])));
    }
}
