//! Load generator: N concurrent loopback calls (fake Twilio + fake realtime in this process) against
//! a real bridge process, measuring what the bridge adds.
//!
//! For each N it starts a fresh `callbridge` child process (so its memory baseline is clean),
//! places N calls whose caller frames and agent audio carry a send timestamp, streams both ways at
//! real time for the call length, then reports: one-way latency added per direction (p50/p99, from
//! the fake that sent a frame to the fake that received it), frames not delivered, the bridge's CPU
//! (% of one core per call, from /proc over the steady window) and RSS per call (peak minus the idle
//! baseline). All traffic stays on 127.0.0.1; every loop is bounded in count and time.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Parser;

use callbridge_testkit::fake_realtime::{Behaviour, FakeRealtime, Turn};
use callbridge_testkit::fake_twilio::{CallScript, FakeTwilio, http_get};
use callbridge_testkit::{ACCOUNT_SID, AUTH_TOKEN};

#[derive(Parser)]
#[command(about = "Drive N concurrent loopback calls against a callbridge process")]
struct Args {
    /// Comma-separated call counts, one run each.
    #[arg(long, default_value = "50,200,500", value_delimiter = ',')]
    calls: Vec<usize>,
    /// Length of each call, in seconds (at least 10).
    #[arg(long, default_value_t = 20)]
    secs: u64,
    /// The bridge binary (default: `callbridge` next to this binary).
    #[arg(long)]
    bridge: Option<PathBuf>,
    /// Seconds over which the calls of one run are started.
    #[arg(long, default_value_t = 3)]
    ramp_secs: u64,
}

struct RunResult {
    calls: usize,
    completed: usize,
    inbound: Percentiles,
    outbound: Percentiles,
    inbound_sent: u64,
    inbound_received: u64,
    outbound_sent_by_bridge: u64,
    outbound_received: u64,
    bridge_dropped: u64,
    cpu_pct_per_call: f64,
    cpu_pct_total: f64,
    rss_mb_per_call: f64,
    rss_baseline_mb: f64,
}

#[derive(Default)]
struct Percentiles {
    p50_ms: f64,
    p99_ms: f64,
    samples: usize,
}

fn percentiles(mut us: Vec<u64>) -> Percentiles {
    if us.is_empty() {
        return Percentiles::default();
    }
    us.sort_unstable();
    let at = |q: f64| us[((us.len() - 1) as f64 * q).round() as usize] as f64 / 1000.0;
    Percentiles {
        p50_ms: at(0.50),
        p99_ms: at(0.99),
        samples: us.len(),
    }
}

fn proc_cpu_ticks(pid: u32) -> anyhow::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11).context("utime")?.parse()?;
    let stime: u64 = fields.get(12).context("stime")?.parse()?;
    Ok(utime + stime)
}

fn proc_rss_kb(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .context("VmRSS")?;
    Ok(line
        .split_whitespace()
        .nth(1)
        .context("VmRSS value")?
        .parse()?)
}

fn clock_ticks_per_sec() -> f64 {
    // Linux reports CPU times in USER_HZ, which is 100 on every supported architecture.
    100.0
}

fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or(0)
}

async fn run(args: &Args, bridge_bin: &PathBuf, calls: usize) -> anyhow::Result<RunResult> {
    let epoch = Instant::now();
    let call_ms = args.secs * 1000;
    let realtime = FakeRealtime::start(Behaviour {
        script: vec![Turn::Say {
            ms: call_ms + 60_000,
            byte: 0x40,
            text: "load".into(),
        }],
        delta_ms: 100,
        speedup: 1,
        late_deltas: 0,
        vad: false,
        stamp_audio: Some(epoch),
        record_audio: false,
        ..Behaviour::default()
    })
    .await;

    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0")?;
        probe.local_addr()?.port()
    };
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse()?;
    let public_url = format!("http://{addr}");
    let mut child = tokio::process::Command::new(bridge_bin)
        .env_clear()
        .env("PUBLIC_URL", &public_url)
        .env("CALLBRIDGE_LISTEN", addr.to_string())
        .env("TWILIO_ACCOUNT_SID", ACCOUNT_SID)
        .env("TWILIO_AUTH_TOKEN", AUTH_TOKEN)
        .env("OPENAI_API_KEY", "sk-load")
        .env("OPENAI_REALTIME_URL", realtime.url())
        .env("DATABASE_URL", "sqlite::memory:")
        .env("CALLBRIDGE_LOG", "warn")
        .env("CALLBRIDGE_SILENCE_TIMEOUT_SECS", "3600")
        .env("CALLBRIDGE_MAX_CALL_SECS", "3600")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {}", bridge_bin.display()))?;
    let pid = child.id().context("bridge pid")?;
    let mut ready = false;
    for _ in 0..100 {
        if http_get(addr, "/healthz").await.is_ok() {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    anyhow::ensure!(ready, "bridge did not come up on {addr}");
    let baseline_kb = proc_rss_kb(pid)?;

    let twilio = FakeTwilio {
        bridge: addr,
        public_url,
        auth_token: AUTH_TOKEN.into(),
        account_sid: ACCOUNT_SID.into(),
    };
    let ramp = Duration::from_millis(args.ramp_secs * 1000 / calls.max(1) as u64);
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..calls {
        let twilio = twilio.clone();
        tasks.spawn(async move {
            twilio
                .call(
                    &format!("CA{i:032x}"),
                    CallScript {
                        hang_up_after_ms: Some(call_ms),
                        max_ms: call_ms + 15_000,
                        stamp: Some(epoch),
                        ..CallScript::default()
                    },
                )
                .await
        });
        tokio::time::sleep(ramp).await;
    }
    // Steady window: from 2 s after the last call started until 2 s before the first ends.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let window = Duration::from_millis(
        call_ms
            .saturating_sub(args.ramp_secs * 1000 + 4_000)
            .max(2_000),
    );
    let cpu_start = proc_cpu_ticks(pid)?;
    let window_start = Instant::now();
    let mut peak_kb = proc_rss_kb(pid)?;
    while window_start.elapsed() < window {
        tokio::time::sleep(Duration::from_millis(250)).await;
        peak_kb = peak_kb.max(proc_rss_kb(pid)?);
    }
    let cpu_secs = (proc_cpu_ticks(pid)? - cpu_start) as f64 / clock_ticks_per_sec();
    let cpu_pct_total = cpu_secs / window_start.elapsed().as_secs_f64() * 100.0;

    let mut outbound_us = Vec::new();
    let mut completed = 0;
    let mut inbound_sent = 0;
    let mut outbound_received = 0;
    while let Some(result) = tasks.join_next().await {
        match result {
            Ok(Ok(report)) => {
                completed += 1;
                inbound_sent += report.frames_sent;
                outbound_received += report.outbound_latency_us.len() as u64;
                outbound_us.extend(report.outbound_latency_us);
            }
            Ok(Err(e)) => eprintln!("call failed: {e:#}"),
            Err(e) => eprintln!("call task failed: {e}"),
        }
    }
    let (_, metrics) = http_get(addr, "/metrics").await?;
    let sessions = realtime.recorder.sessions();
    let inbound_received: u64 = sessions.iter().map(|s| s.appended_count as u64).sum();
    let inbound_us: Vec<u64> = sessions
        .iter()
        .flat_map(|s| s.inbound_latency_us.iter().copied())
        .collect();
    let _ = child.kill().await;

    Ok(RunResult {
        calls,
        completed,
        inbound: percentiles(inbound_us),
        outbound: percentiles(outbound_us),
        inbound_sent,
        inbound_received,
        outbound_sent_by_bridge: metric(&metrics, "callbridge_frames_out_total"),
        outbound_received,
        bridge_dropped: metric(&metrics, "callbridge_frames_dropped_total"),
        cpu_pct_per_call: cpu_pct_total / calls as f64,
        cpu_pct_total,
        rss_mb_per_call: (peak_kb.saturating_sub(baseline_kb)) as f64 / 1024.0 / calls as f64,
        rss_baseline_mb: baseline_kb as f64 / 1024.0,
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(args.secs >= 10, "--secs must be at least 10");
    anyhow::ensure!(
        args.calls.iter().all(|&n| (1..=2_000).contains(&n)),
        "--calls: each count must be between 1 and 2000"
    );
    let bridge_bin = match &args.bridge {
        Some(path) => path.clone(),
        None => std::env::current_exe()?
            .parent()
            .context("binary directory")?
            .join("callbridge"),
    };
    anyhow::ensure!(
        bridge_bin.exists(),
        "{} not found: build it first (cargo build --release --bin callbridge) or pass --bridge",
        bridge_bin.display()
    );
    println!(
        "loadgen: {}s calls, bridge {}, {} cores",
        args.secs,
        bridge_bin.display(),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!(
        "| calls | completed | in p50 / p99 ms | out p50 / p99 ms | in not delivered | out not delivered | bridge dropped | CPU % of a core per call (total) | RSS MB per call (baseline) |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for &calls in &args.calls {
        let r = run(&args, &bridge_bin, calls).await?;
        println!(
            "| {} | {} | {:.2} / {:.2} | {:.2} / {:.2} | {} of {} | {} of {} | {} | {:.3} ({:.1}) | {:.3} ({:.1}) |",
            r.calls,
            r.completed,
            r.inbound.p50_ms,
            r.inbound.p99_ms,
            r.outbound.p50_ms,
            r.outbound.p99_ms,
            r.inbound_sent.saturating_sub(r.inbound_received),
            r.inbound_sent,
            r.outbound_sent_by_bridge
                .saturating_sub(r.outbound_received),
            r.outbound_sent_by_bridge,
            r.bridge_dropped,
            r.cpu_pct_per_call,
            r.cpu_pct_total,
            r.rss_mb_per_call,
            r.rss_baseline_mb,
        );
        eprintln!(
            "  ({} inbound and {} outbound latency samples)",
            r.inbound.samples, r.outbound.samples
        );
    }
    Ok(())
}
