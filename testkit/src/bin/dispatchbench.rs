//! Campaign dispatch throughput: how many contacts per second the dispatcher claims and dials
//! (claim transaction, call record, `CreateCall` over HTTP to the fake Twilio REST server on
//! 127.0.0.1, SID recorded) on SQLite and on PostgreSQL, with one or more dispatchers sharing
//! the database.
//!
//! Pacing and caps are set out of the way (no interval, caps above the contact count), and the
//! dispatchers tick back to back, so the figure is the engine's own ceiling, not a configured
//! rate. The fake answers at once; against Twilio, request latency adds per dial but dials run
//! in parallel (16 per node by default).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Parser;

use callbridge::campaign::window::CallingWindow;
use callbridge::campaign::{CampaignRunner, Dialer, RunnerOptions, SystemClock};
use callbridge::connectors::twilio_rest::TwilioRest;
use callbridge::metrics::Metrics;
use callbridge::store::{CampaignSpec, ContactState, E164, NewContact, SqlStore, StoreOptions};
use callbridge_testkit::fake_twilio_rest::{FakeTwilioRest, calls_spec};
use callbridge_testkit::{ACCOUNT_SID, AUTH_TOKEN, provision_dialling_tenant};
use sqlx::{Connection, Executor};

#[derive(Parser)]
#[command(about = "Measure campaign dispatch throughput against a fake Twilio REST server")]
struct Args {
    /// Contacts in the campaign.
    #[arg(long, default_value_t = 2000)]
    contacts: usize,
    /// Dispatchers (nodes) sharing the database.
    #[arg(long, default_value_t = 1)]
    nodes: usize,
    /// Backends to measure: sqlite, postgres (needs --pg-url or CALLBRIDGE_TEST_PG_URL).
    #[arg(long, default_value = "sqlite,postgres", value_delimiter = ',')]
    backends: Vec<String>,
    #[arg(long, env = "CALLBRIDGE_TEST_PG_URL")]
    pg_url: Option<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let _ = rustls::crypto::ring::default_provider().install_default();
    println!("| backend | nodes | contacts | seconds | contacts/s |\n|---|---|---|---|---|");
    for backend in &args.backends {
        let (url, cleanup) = match backend.as_str() {
            "sqlite" => {
                let path = std::env::temp_dir()
                    .join(format!("dispatchbench-{:016x}.db", rand::random::<u64>()));
                (
                    format!("sqlite://{}?mode=rwc", path.display()),
                    Cleanup::File(path),
                )
            }
            "postgres" => {
                let base = args
                    .pg_url
                    .clone()
                    .context("postgres needs --pg-url or CALLBRIDGE_TEST_PG_URL")?;
                let schema = format!("dispatchbench_{:016x}", rand::random::<u64>());
                sqlx::any::install_default_drivers();
                let mut conn = sqlx::AnyConnection::connect(&base).await?;
                conn.execute(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
                    .await?;
                let separator = if base.contains('?') { '&' } else { '?' };
                (
                    format!("{base}{separator}options[search_path]={schema}"),
                    Cleanup::Schema { base, schema },
                )
            }
            other => anyhow::bail!("unknown backend {other:?}"),
        };
        let result = run(&url, args.contacts, args.nodes).await;
        cleanup.run().await;
        let elapsed = result?;
        println!(
            "| {backend} | {} | {} | {:.2} | {:.0} |",
            args.nodes,
            args.contacts,
            elapsed.as_secs_f64(),
            args.contacts as f64 / elapsed.as_secs_f64()
        );
    }
    Ok(())
}

async fn run(url: &str, contacts: usize, nodes: usize) -> anyhow::Result<Duration> {
    let store = SqlStore::open_with(
        url,
        StoreOptions {
            max_connections: 8,
            ..StoreOptions::default()
        },
    )
    .await?;
    let ceiling = u32::try_from(contacts + 1).unwrap_or(u32::MAX).min(10_000);
    let (tenant, agent_id) = provision_dialling_tenant(&store, "bench", ceiling).await;
    let spec = CampaignSpec {
        name: "bench".into(),
        agent_id,
        window: CallingWindow::parse("00:00-24:00", "all")?.to_spec(),
        dial_interval_ms: 0,
        max_concurrent: ceiling,
        max_attempts: 1,
        retry_delay_s: 60,
        voicemail: None,
    };
    let list: Vec<NewContact> = (0..contacts)
        .map(|i| NewContact {
            line: i as u64 + 2,
            e164: E164::parse(&format!("+1415{:07}", 1_000_000 + i)).expect("valid number"),
            zones: vec!["Etc/UTC".into()],
            variables: BTreeMap::new(),
        })
        .collect();
    let campaign = store.create_campaign(&tenant, &spec, &list, &[]).await?;
    let fake = FakeTwilioRest::start(&calls_spec()?, ACCOUNT_SID, AUTH_TOKEN).await?;
    let runners: Vec<CampaignRunner> = (0..nodes)
        .map(|i| {
            let rest = TwilioRest::new(
                &callbridge_testkit::loopback_policy(),
                &fake.base_url,
                ACCOUNT_SID,
                AUTH_TOKEN,
            )?;
            let dialer = Dialer::new(rest, "http://127.0.0.1:9", AUTH_TOKEN);
            Ok(CampaignRunner::new(
                store.clone(),
                dialer,
                Arc::new(SystemClock),
                Arc::new(Metrics::default()),
                RunnerOptions {
                    node_id: format!("bench-{i}"),
                    ..RunnerOptions::default()
                },
            )?)
        })
        .collect::<anyhow::Result<_>>()?;
    let started = Instant::now();
    let deadline = started + Duration::from_secs(600);
    let tasks: Vec<_> = runners
        .into_iter()
        .map(|runner| {
            let store = store.clone();
            let tenant = tenant.clone();
            let campaign_id = campaign.id.clone();
            tokio::spawn(async move {
                loop {
                    let report = runner.tick().await?;
                    if report.claimed == 0 {
                        let counts = store.campaign_counts(&tenant, &campaign_id).await?;
                        if counts.state(ContactState::Pending) == 0
                            && counts.state(ContactState::Dialing) == 0
                        {
                            return anyhow::Ok(());
                        }
                    }
                    anyhow::ensure!(Instant::now() < deadline, "not dispatched within 10 min");
                }
            })
        })
        .collect();
    for task in tasks {
        task.await??;
    }
    let elapsed = started.elapsed();
    let placed = fake.calls().len();
    anyhow::ensure!(
        placed == contacts,
        "placed {placed} calls for {contacts} contacts"
    );
    anyhow::ensure!(fake.violations().is_empty(), "{:?}", fake.violations());
    store.close().await;
    Ok(elapsed)
}

enum Cleanup {
    File(std::path::PathBuf),
    Schema { base: String, schema: String },
}

impl Cleanup {
    async fn run(self) {
        match self {
            Cleanup::File(path) => {
                for suffix in ["", "-wal", "-shm"] {
                    let mut name = path.clone().into_os_string();
                    name.push(suffix);
                    let _ = std::fs::remove_file(name);
                }
            }
            Cleanup::Schema { base, schema } => {
                if let Ok(mut conn) = sqlx::AnyConnection::connect(&base).await {
                    let _ = conn
                        .execute(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
                        .await;
                }
            }
        }
    }
}
