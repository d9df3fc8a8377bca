//! Load generator: N concurrent loopback calls (fake Twilio + fake provider in this process) against
//! a real bridge process, measuring what the bridge adds.
//!
//! For each N it starts a fresh `callbridge` child process (so its memory baseline is clean),
//! places N calls, streams audio both ways at real time for the call length, then reports: one-way
//! latency added per direction (p50/p99), frames not delivered, the bridge's CPU (% of one core per
//! call, from /proc over the steady window) and RSS per call (peak minus the idle baseline). All
//! traffic stays on 127.0.0.1; every loop is bounded in count and time.
//!
//! `--provider openai` (default): passthrough μ-law calls to the default agent; caller frames and
//! agent audio carry a send timestamp, so latency is from the fake that sent a frame to the fake
//! that received it. `--provider gemini`: calls to a tenant's Gemini agent (provisioned in a
//! temporary SQLite store the bridge opens), so the bridge transcodes both ways (μ-law 8 kHz ⇄
//! PCM16 16 kHz in / 24 kHz out). Transcoded audio cannot carry a stamp, so inbound latency is each
//! chunk's arrival at the fake Gemini against the fake Twilio's 20 ms send clock, above the
//! fastest chunk of the same call; outbound latency is not measured (the fake Twilio only reads
//! stamps).
//!
//! `--pin`: the bridge runs on core 1 (`taskset -c 1`) and this generator on core 0 (every thread,
//! `taskset -a -p -c 0`), so what the bridge can carry is not hidden by the generator's own load;
//! after the runs it names the largest N whose p99 added latency is at most 5 ms both ways with no
//! caller frame lost. `--tool-turns K`: each call first makes K `get_current_time` tool calls in a
//! row (the fake model times `function_call_arguments.done` → `function_call_output`), then talks.
//! `--callgrind-window`: with `--bridge` a script that execs the bridge under
//! `valgrind --tool=callgrind`, the bridge's counters are zeroed when the steady window opens and
//! dumped when it closes (instruction counts repeat under load, where wall-clock does not).

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Parser;

use callbridge_testkit::fake_gemini::{self, FakeGemini};
use callbridge_testkit::fake_realtime::{self, FakeRealtime};
use callbridge_testkit::fake_twilio::{CallScript, FakeTwilio, http_get};
use callbridge_testkit::{ACCOUNT_SID, AUTH_TOKEN, agent_spec, provision_agent};

/// Twilio sends one caller frame every 20 ms.
const FRAME_US: u64 = 20_000;
/// Inbound chunks this soon after a call's first one are left out of the transcoded latency (the
/// bridge holds caller audio until the provider session is ready).
const SETTLE_US: u64 = 2_000_000;

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Provider {
    /// Passthrough μ-law to the default agent (OpenAI Realtime dialect).
    Openai,
    /// A tenant's Gemini Live agent: transcoded both ways.
    Gemini,
}

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
    /// Which provider the calls go to.
    #[arg(long, value_enum, default_value_t = Provider::Openai)]
    provider: Provider,
    /// Pin the bridge to core 1 and this generator to core 0 (needs `taskset` and two cores).
    #[arg(long)]
    pin: bool,
    /// Tool calls (`get_current_time`) each call makes before the agent talks (OpenAI only).
    #[arg(long, default_value_t = 0)]
    tool_turns: usize,
    /// The bridge runs under `valgrind --tool=callgrind` (through a `--bridge` wrapper script):
    /// zero its counters when the steady window opens and dump them when it closes, so the
    /// profile's instruction count is the steady window's alone.
    #[arg(long)]
    callgrind_window: bool,
}

/// The capacity criterion of a pinned run: p99 added latency at most this, both ways.
const CAPACITY_P99_MS: f64 = 5.0;
const BRIDGE_CORE: &str = "1";
/// A generator this busy (% of its core) no longer keeps its own timing.
const GENERATOR_SATURATED_PCT: f64 = 90.0;
const GENERATOR_CORE: &str = "0";

struct RunResult {
    calls: usize,
    completed: usize,
    inbound: Percentiles,
    outbound: Percentiles,
    tools: Percentiles,
    inbound_sent: u64,
    inbound_received: u64,
    outbound_sent_by_bridge: u64,
    outbound_received: u64,
    bridge_dropped: u64,
    cpu_pct_per_call: f64,
    cpu_pct_total: f64,
    /// The kernel's share of the bridge's CPU (syscalls, wake-ups, loopback TCP), in %.
    kernel_share_pct: f64,
    /// This generator's own CPU over the window, % of one core: near 100 with `--pin` means the
    /// generator, not the bridge, set the pace.
    generator_cpu_pct: f64,
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

/// "p50 / p99" in ms, or "n/a" without samples.
fn latency_cell(p: &Percentiles) -> String {
    if p.samples == 0 {
        "n/a".into()
    } else {
        format!("{:.2} / {:.2}", p.p50_ms, p.p99_ms)
    }
}

fn proc_cpu_ticks(pid: u32) -> anyhow::Result<u64> {
    let (user, system) = proc_cpu_split(pid)?;
    Ok(user + system)
}

/// A process's CPU time so far in clock ticks: (user, kernel).
fn proc_cpu_split(pid: u32) -> anyhow::Result<(u64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11).context("utime")?.parse()?;
    let stime: u64 = fields.get(12).context("stime")?.parse()?;
    Ok((utime, stime))
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

/// Runs `callgrind_control <action> <pid>` against the bridge running under callgrind.
fn callgrind_control(pid: u32, action: &str) -> anyhow::Result<()> {
    let status = std::process::Command::new("callgrind_control")
        .arg(action)
        .arg(pid.to_string())
        .stdout(Stdio::null())
        .status()
        .context("running callgrind_control")?;
    anyhow::ensure!(status.success(), "callgrind_control {action} failed");
    Ok(())
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

/// The fake provider of a run, serving on 127.0.0.1.
enum ProviderFake {
    OpenAi(FakeRealtime),
    /// The Gemini fake and the store (with the tenant's Gemini agent) the bridge opens.
    Gemini(FakeGemini, tempfile::TempDir),
}

impl ProviderFake {
    /// Starts the fake with one answer per call, longer than the call, streamed at real time.
    async fn start(
        provider: Provider,
        calls: usize,
        call_ms: u64,
        epoch: Instant,
        tool_turns: usize,
    ) -> anyhow::Result<Self> {
        let answer_ms = call_ms + 60_000;
        Ok(match provider {
            Provider::Openai => Self::OpenAi(
                FakeRealtime::start(fake_realtime::Behaviour {
                    script: std::iter::repeat_n(
                        fake_realtime::Turn::CallTools(vec![(
                            "get_current_time".into(),
                            serde_json::json!({}),
                        )]),
                        tool_turns,
                    )
                    .chain([fake_realtime::Turn::Say {
                        ms: answer_ms,
                        byte: 0x40,
                        text: "load".into(),
                    }])
                    .collect(),
                    delta_ms: 100,
                    speedup: 1,
                    late_deltas: 0,
                    vad: false,
                    stamp_audio: Some(epoch),
                    record_audio: false,
                    ..fake_realtime::Behaviour::default()
                })
                .await,
            ),
            Provider::Gemini => {
                let store_dir = tempfile::tempdir()?;
                let store_url = sqlite_url(&store_dir);
                let store = callbridge::store::SqlStore::open(&store_url).await?;
                let mut agent = agent_spec("gemini", "gemini-live-load", "Puck");
                agent.max_duration_s = 3_600;
                agent.silence_timeout_s = 3_600;
                provision_agent(&store, "load", agent).await;
                drop(store);
                let answer = fake_gemini::Turn::Say {
                    ms: answer_ms,
                    level: 1_500,
                    text: "load".into(),
                };
                let gemini = FakeGemini::start(fake_gemini::Behaviour {
                    // The fake's script is shared by its connections: one answer for each call.
                    script: vec![answer; calls],
                    chunk_ms: 100,
                    speedup: 1,
                    log_arrivals_since: Some(epoch),
                    ..fake_gemini::Behaviour::default()
                })
                .await;
                Self::Gemini(gemini, store_dir)
            }
        })
    }

    /// The bridge's environment for this provider.
    fn bridge_env(&self) -> Vec<(&'static str, String)> {
        match self {
            Self::OpenAi(realtime) => vec![
                ("OPENAI_REALTIME_URL", realtime.url()),
                ("DATABASE_URL", "sqlite::memory:".into()),
            ],
            Self::Gemini(gemini, store_dir) => vec![
                ("OPENAI_REALTIME_URL", "ws://127.0.0.1:9/unused".into()),
                ("GEMINI_API_KEY", "gm-load".into()),
                ("GEMINI_LIVE_URL", gemini.url()),
                ("DATABASE_URL", sqlite_url(store_dir)),
            ],
        }
    }

    /// Whether caller frames carry a send stamp (only passthrough audio keeps it intact).
    fn stamps_caller_audio(&self) -> bool {
        matches!(self, Self::OpenAi(_))
    }

    /// Tool round trips seen by the fake model, in µs.
    fn tool_latencies(&self) -> Vec<u64> {
        match self {
            Self::OpenAi(realtime) => realtime
                .recorder
                .sessions()
                .iter()
                .flat_map(|s| s.tool_latency_us.iter().copied())
                .collect(),
            Self::Gemini(..) => Vec::new(),
        }
    }

    /// Caller frames that reached the provider, and their one-way latencies in µs.
    fn inbound(&self) -> (u64, Vec<u64>) {
        match self {
            Self::OpenAi(realtime) => {
                let sessions = realtime.recorder.sessions();
                let received = sessions.iter().map(|s| s.appended_count as u64).sum();
                let latencies = sessions
                    .iter()
                    .flat_map(|s| s.inbound_latency_us.iter().copied())
                    .collect();
                (received, latencies)
            }
            Self::Gemini(gemini, _) => {
                let connections = gemini.connections();
                let received = connections.iter().map(|c| c.audio_chunks as u64).sum();
                let latencies = connections
                    .iter()
                    .flat_map(|c| delay_above_fastest(&c.audio_arrivals_us))
                    .collect();
                (received, latencies)
            }
        }
    }
}

fn sqlite_url(dir: &tempfile::TempDir) -> String {
    format!("sqlite://{}?mode=rwc", dir.path().join("load.db").display())
}

/// For chunks sent on a 20 ms clock, each one's arrival delay above the fastest chunk's: the
/// arrival minus its slot on the clock, less the smallest such difference. Chunks in the first
/// [`SETTLE_US`] are left out (held while the provider session was set up).
fn delay_above_fastest(arrivals_us: &[u64]) -> Vec<u64> {
    let Some(&first) = arrivals_us.first() else {
        return Vec::new();
    };
    let offsets: Vec<i64> = arrivals_us
        .iter()
        .enumerate()
        .filter(|(_, at)| **at >= first + SETTLE_US)
        .map(|(n, at)| *at as i64 - (n as u64 * FRAME_US) as i64)
        .collect();
    let Some(&fastest) = offsets.iter().min() else {
        return Vec::new();
    };
    offsets.iter().map(|o| (o - fastest) as u64).collect()
}

async fn run(args: &Args, bridge_bin: &PathBuf, calls: usize) -> anyhow::Result<RunResult> {
    let epoch = Instant::now();
    let call_ms = args.secs * 1000;
    let fake = ProviderFake::start(args.provider, calls, call_ms, epoch, args.tool_turns).await?;

    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0")?;
        probe.local_addr()?.port()
    };
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse()?;
    let public_url = format!("http://{addr}");
    let mut command = if args.pin {
        // `taskset` execs the bridge: the child's pid is the bridge's.
        let mut command = tokio::process::Command::new("taskset");
        command.arg("-c").arg(BRIDGE_CORE).arg(bridge_bin);
        command
    } else {
        tokio::process::Command::new(bridge_bin)
    };
    let mut child = command
        .env_clear()
        .env("PUBLIC_URL", &public_url)
        .env("CALLBRIDGE_LISTEN", addr.to_string())
        .env("TWILIO_ACCOUNT_SID", ACCOUNT_SID)
        .env("TWILIO_AUTH_TOKEN", AUTH_TOKEN)
        .env("OPENAI_API_KEY", "sk-load")
        .envs(fake.bridge_env())
        // The fake provider is a plain ws:// server on loopback: the bridge refuses both (TLS
        // only, no internal addresses) unless the operator allows the host explicitly.
        .env("CALLBRIDGE_EGRESS_ALLOW", "127.0.0.1")
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
    // Up to 30 s: a bridge started under a profiler takes a while.
    for _ in 0..600 {
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
    let stamp = fake.stamps_caller_audio().then_some(epoch);
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
                        stamp,
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
    if args.callgrind_window {
        callgrind_control(pid, "--zero")?;
    }
    let (user_start, system_start) = proc_cpu_split(pid)?;
    let generator_start = proc_cpu_ticks(std::process::id())?;
    let window_start = Instant::now();
    let mut peak_kb = proc_rss_kb(pid)?;
    while window_start.elapsed() < window {
        tokio::time::sleep(Duration::from_millis(250)).await;
        peak_kb = peak_kb.max(proc_rss_kb(pid)?);
    }
    let (user_end, system_end) = proc_cpu_split(pid)?;
    let system_ticks = system_end - system_start;
    let cpu_ticks = user_end - user_start + system_ticks;
    let cpu_secs = cpu_ticks as f64 / clock_ticks_per_sec();
    let generator_secs =
        (proc_cpu_ticks(std::process::id())? - generator_start) as f64 / clock_ticks_per_sec();
    if args.callgrind_window {
        callgrind_control(pid, "--dump=steady")?;
        println!(
            "  callgrind: steady window of {:.1} s with {calls} calls dumped",
            window_start.elapsed().as_secs_f64()
        );
    }
    let cpu_pct_total = cpu_secs / window_start.elapsed().as_secs_f64() * 100.0;
    let generator_cpu_pct = generator_secs / window_start.elapsed().as_secs_f64() * 100.0;

    let mut outbound_us = Vec::new();
    let mut completed = 0;
    let mut inbound_sent = 0;
    let mut outbound_received = 0;
    while let Some(result) = tasks.join_next().await {
        match result {
            Ok(Ok(report)) => {
                completed += 1;
                inbound_sent += report.frames_sent;
                outbound_received += if stamp.is_some() {
                    report.outbound_latency_us.len() as u64
                } else {
                    report.media().count() as u64
                };
                outbound_us.extend(report.outbound_latency_us);
            }
            Ok(Err(e)) => eprintln!("call failed: {e:#}"),
            Err(e) => eprintln!("call task failed: {e}"),
        }
    }
    let (_, metrics) = http_get(addr, "/metrics").await?;
    let (inbound_received, inbound_us) = fake.inbound();
    // SIGTERM first, so a bridge run under a profiler (`--bridge` may be a wrapper script that
    // execs `valgrind --tool=callgrind …`) shuts down and writes its profile; then make sure.
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    if tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .is_err()
    {
        let _ = child.kill().await;
    }

    Ok(RunResult {
        calls,
        completed,
        inbound: percentiles(inbound_us),
        outbound: percentiles(outbound_us),
        tools: percentiles(fake.tool_latencies()),
        inbound_sent,
        inbound_received,
        outbound_sent_by_bridge: metric(&metrics, "callbridge_frames_out_total"),
        outbound_received,
        bridge_dropped: metric(&metrics, "callbridge_frames_dropped_total"),
        cpu_pct_per_call: cpu_pct_total / calls as f64,
        cpu_pct_total,
        kernel_share_pct: system_ticks as f64 * 100.0 / cpu_ticks.max(1) as f64,
        generator_cpu_pct,
        rss_mb_per_call: (peak_kb.saturating_sub(baseline_kb)) as f64 / 1024.0 / calls as f64,
        rss_baseline_mb: baseline_kb as f64 / 1024.0,
    })
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(args.secs >= 10, "--secs must be at least 10");
    anyhow::ensure!(
        args.calls.iter().all(|&n| (1..=2_000).contains(&n)),
        "--calls: each count must be between 1 and 2000"
    );
    if args.pin {
        // Pinned before the runtime starts, so it sizes itself for that one core: one worker.
        // (Two workers time-sliced on one core hold each other's tasks for a scheduler slice,
        // which showed up as a p99 of about 20 ms in some runs and not in others.)
        let status = std::process::Command::new("taskset")
            .args(["-p", "-c", GENERATOR_CORE])
            .arg(std::process::id().to_string())
            .stdout(Stdio::null())
            .status()
            .context("running taskset (util-linux) for --pin")?;
        anyhow::ensure!(status.success(), "taskset could not pin the generator");
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?
        .block_on(generate(args))
}

async fn generate(args: Args) -> anyhow::Result<()> {
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
        "loadgen: {} calls of {}s, bridge {}, {} cores",
        match args.provider {
            Provider::Openai => "passthrough (openai)",
            Provider::Gemini => "transcoded (gemini)",
        },
        args.secs,
        bridge_bin.display(),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!(
        "| calls | completed | in p50 / p99 ms | out p50 / p99 ms | in not delivered | out not delivered | bridge dropped | CPU % of a core per call (total) | RSS MB per call (baseline) |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    let mut capacity = None;
    // Pinned runs the generator could not drive at full speed: their latency is partly its own.
    let mut generator_bound = Vec::new();
    for &calls in &args.calls {
        let r = run(&args, &bridge_bin, calls).await?;
        let lost = r.inbound_sent.saturating_sub(r.inbound_received) + r.bridge_dropped;
        if r.completed == r.calls
            && lost == 0
            && r.inbound.p99_ms <= CAPACITY_P99_MS
            && r.outbound.p99_ms <= CAPACITY_P99_MS
        {
            capacity = capacity.max(Some(calls));
        }
        println!(
            "| {} | {} | {} | {} | {} of {} | {} of {} | {} | {:.3} ({:.1}) | {:.3} ({:.1}) |",
            r.calls,
            r.completed,
            latency_cell(&r.inbound),
            latency_cell(&r.outbound),
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
        println!(
            "  bridge CPU in the kernel: {:.0} % of its total (syscalls, wake-ups, loopback TCP)",
            r.kernel_share_pct
        );
        // Whether the generator kept real time: a call sends one caller frame per 20 ms and its
        // fake model speaks for the whole call, so each side should carry calls × secs × 50.
        let expected = (r.calls as u64) * args.secs * 1000 / (FRAME_US / 1000);
        println!(
            "  generator real time: caller frames sent {} of {expected} expected ({:.1} %); agent frames the bridge sent {} ({:.1} %); generator CPU {:.0} % of a core",
            r.inbound_sent,
            r.inbound_sent as f64 * 100.0 / expected as f64,
            r.outbound_sent_by_bridge,
            r.outbound_sent_by_bridge as f64 * 100.0 / expected as f64,
            r.generator_cpu_pct,
        );
        if r.generator_cpu_pct >= GENERATOR_SATURATED_PCT {
            generator_bound.push(r.calls.to_string());
        }
        if r.tools.samples > 0 {
            println!(
                "  tool path (function_call_arguments.done -> function_call_output) p50 / p99 ms: {} ({} calls)",
                latency_cell(&r.tools),
                r.tools.samples
            );
        }
    }
    if args.pin {
        match capacity {
            Some(n) => println!(
                "pinned capacity: {n} calls (largest N run with p99 <= {CAPACITY_P99_MS} ms both ways and no caller frame lost)"
            ),
            None => println!(
                "pinned capacity: no N run met p99 <= {CAPACITY_P99_MS} ms both ways with no caller frame lost"
            ),
        }
        if !generator_bound.is_empty() {
            println!(
                "  the generator used >= {GENERATOR_SATURATED_PCT} % of its core at N = {}: there it, not only the bridge, set the latency",
                generator_bound.join(", ")
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transcoded_latency_is_the_delay_above_the_fastest_chunk_after_settling() {
        // Held audio arrives in a burst at 1.5 s; the steady chunks arrive 300 µs after their
        // slot, except one 5 ms late.
        let mut arrivals: Vec<u64> = (0..75).map(|_| 1_500_000).collect();
        arrivals.extend((75..300).map(|n| n * FRAME_US + 300));
        arrivals[200] += 5_000;
        let delays = delay_above_fastest(&arrivals);
        assert_eq!(delays.len(), 300 - 175);
        assert_eq!(delays.iter().filter(|&&d| d == 0).count(), delays.len() - 1);
        assert_eq!(delays.iter().max(), Some(&5_000));
        assert!(delay_above_fastest(&[]).is_empty());
        assert!(delay_above_fastest(&[10, 20]).is_empty());
    }
}
