//! `callbridge campaign …` run as the real binary against a temporary SQLite file: creating from a
//! CSV file (rejected rows printed with their lines), status in plain text and JSON, `--watch`
//! printing plain lines when stdout is not a terminal, pause/resume/cancel, export to a file and
//! the tenant's dial limits. No dispatcher runs: nothing is dialled.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use callbridge::store::SqlStore;
use callbridge_testkit::{agent_spec, provision_agent};
use serde_json::Value;

struct Cli {
    dir: tempfile::TempDir,
}

impl Cli {
    async fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let cli = Self { dir };
        let store = SqlStore::open(&cli.url()).await.expect("open store");
        provision_agent(
            &store,
            "acme",
            agent_spec("openai", "gpt-realtime", "marin"),
        )
        .await;
        cli
    }

    fn url(&self) -> String {
        format!(
            "sqlite://{}?mode=rwc",
            self.dir.path().join("cb.db").display()
        )
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_callbridge"));
        command
            .env_clear()
            .env("DATABASE_URL", self.url())
            .args(args)
            .stdin(Stdio::null());
        command
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run callbridge")
    }

    /// A contacts file with a bad row on line 3; returns its path.
    fn contacts_file(&self) -> String {
        let path = self.path("contacts.csv");
        std::fs::write(
            &path,
            "phone,name\n+14155552671,Ana\n12345,Bob\n+442079460958,Jo\n",
        )
        .expect("write csv");
        path.to_str().expect("utf-8 path").to_owned()
    }

    /// `campaign create` for tenant `acme` and its agent from `csv`, with `extra` flags.
    fn create(&self, csv: &str, extra: &[&str]) -> Output {
        let mut args = vec![
            "campaign",
            "create",
            "--tenant",
            "acme",
            "--agent",
            "front-desk",
            "--csv",
            csv,
        ];
        args.extend_from_slice(extra);
        self.run(&args)
    }

    /// Runs, expects success, parses stdout as JSON.
    fn json(&self, args: &[&str]) -> Value {
        let out = self.run(args);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{args:?}: {e}"))
    }
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn create_status_watch_pause_export_and_limits() {
    let cli = Cli::new().await;
    let csv = cli.contacts_file();

    // Create: the bad row is printed with its line; defaults and flags land in the campaign.
    let out = cli.create(
        &csv,
        &[
            "--cps",
            "2",
            "--retry-delay",
            "30m",
            "--days",
            "mon-fri",
            "--voicemail-hangup",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("with 2 contact(s); 1 row(s) rejected"),
        "{err}"
    );
    assert!(err.contains("line 3: invalid phone number"), "{err}");
    let view: Value = serde_json::from_slice(&out.stdout).expect("JSON view");
    let id = view["id"].as_str().expect("id").to_owned();
    assert_eq!(view["name"], "contacts");
    assert_eq!(view["dial_interval_ms"], 500);
    assert_eq!(view["retry_delay_secs"], 1800);
    assert_eq!(view["window"]["days"], "mon-fri");
    assert_eq!(view["voicemail"]["action"], "hangup");

    // Status, plain and JSON.
    let out = cli.run(&["campaign", "status", &id]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("status:   active"), "{text}");
    assert!(
        text.contains("contacts: 2 total: 2 pending, 0 dialing, 0 in call, 0 done"),
        "{text}"
    );
    assert!(text.contains("outcomes: none yet"), "{text}");
    assert!(text.contains("rejected: 1 row(s)\n  line 3:"), "{text}");
    let json = cli.json(&["campaign", "status", &id, "--json"]);
    assert_eq!(json["counts"]["pending"], 2);

    // Pause, a refused second pause, resume.
    assert_eq!(cli.json(&["campaign", "pause", &id])["status"], "paused");
    let again = cli.run(&["campaign", "pause", &id]);
    assert_eq!(again.status.code(), Some(1), "{}", stderr(&again));
    assert!(stderr(&again).contains("is paused"), "{}", stderr(&again));
    assert_eq!(cli.json(&["campaign", "resume", &id])["status"], "active");

    // --watch with stdout on a pipe: plain lines, one per change, until the campaign is cancelled.
    let mut watcher = cli
        .command(&["campaign", "status", &id, "--watch"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn watcher");
    let (lines_tx, lines) = mpsc::channel();
    let reader = BufReader::new(watcher.stdout.take().expect("stdout"));
    std::thread::spawn(move || {
        for line in reader.lines().map_while(Result::ok) {
            let _ = lines_tx.send(line);
        }
    });
    let first = lines
        .recv_timeout(Duration::from_secs(30))
        .expect("first watch line");
    assert_eq!(first, "active: 0/2 done, 2 pending, 0 dialing, 0 in call");
    // Several refreshes with nothing changed print nothing more.
    std::thread::sleep(Duration::from_millis(2_500));
    assert_eq!(
        cli.json(&["campaign", "cancel", &id])["status"],
        "cancelled"
    );
    let last = lines
        .recv_timeout(Duration::from_secs(30))
        .expect("line after the cancel");
    assert_eq!(
        last,
        "cancelled: 2/2 done, 0 pending, 0 dialing, 0 in call; cancelled 2"
    );
    let mut exited = None;
    for _ in 0..100 {
        if let Some(status) = watcher.try_wait().expect("watcher status") {
            exited = Some(status);
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let Some(status) = exited else {
        let _ = watcher.kill();
        panic!("--watch did not stop when the campaign was cancelled");
    };
    assert!(status.success());
    assert!(
        lines.try_recv().is_err(),
        "one line per change, nothing after the end"
    );

    // Export to a file.
    let export = cli.path("results.csv");
    let export_arg = export.to_str().expect("utf-8 path");
    let out = cli.run(&["campaign", "export", &id, "--out", export_arg]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("exported 2 contact(s)"),
        "{}",
        stderr(&out)
    );
    let written = std::fs::read_to_string(&export).expect("export file");
    let mut rows = written.lines();
    assert_eq!(
        rows.next(),
        Some(
            "line,phone,state,outcome,attempts,last_status,answered_by,call_id,dialed_by,\
             last_error,waiting_reason,next_attempt_at,var.name"
        )
    );
    assert_eq!(
        rows.next(),
        Some("2,+14155552671,done,cancelled,0,,,,,,,,Ana")
    );
    assert_eq!(
        rows.next(),
        Some("4,+442079460958,done,cancelled,0,,,,,,,,Jo")
    );
    assert_eq!(rows.next(), None);

    let listed = cli.json(&["campaign", "list", "--tenant", "acme"]);
    assert_eq!(listed.as_array().map(Vec::len), Some(1));
    assert_eq!(listed[0]["status"], "cancelled");

    // Limits: shown, set, and one changed while the other stays.
    let limits = cli.json(&["campaign", "limits", "--tenant", "acme"]);
    assert_eq!(limits["max_concurrent"], 10);
    let limits = cli.json(&[
        "campaign",
        "limits",
        "--tenant",
        "acme",
        "--max-concurrent",
        "4",
        "--cps",
        "0.5",
    ]);
    assert_eq!(
        (
            limits["max_concurrent"].clone(),
            limits["dial_interval_ms"].clone()
        ),
        (4.into(), 2000.into())
    );
    let limits = cli.json(&["campaign", "limits", "--tenant", "acme", "--cps", "1"]);
    assert_eq!(
        (
            limits["max_concurrent"].clone(),
            limits["dial_interval_ms"].clone()
        ),
        (4.into(), 1000.into())
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn refusals_are_clear_with_the_usual_exit_codes() {
    let cli = Cli::new().await;
    let csv = cli.contacts_file();

    // Strict: every bad row with its line, then the reason; nothing is created.
    let out = cli.create(&csv, &["--strict"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("  line 3: invalid phone number"), "{err}");
    assert!(
        err.trim_end()
            .lines()
            .last()
            .is_some_and(|l| l.starts_with("callbridge: invalid csv:") && l.contains("strict")),
        "{err}"
    );
    assert_eq!(
        cli.json(&["campaign", "list", "--tenant", "acme"]),
        Value::Array(vec![])
    );

    // A missing file is a usage error (2); a bad setting or an unknown id is refused (1).
    let out = cli.create("/nonexistent/contacts.csv", &[]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("--csv"), "{}", stderr(&out));
    let out = cli.create(&csv, &["--cps", "500"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("calls_per_second"),
        "{}",
        stderr(&out)
    );
    let out = cli.create(&csv, &["--hours", "9-5"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("invalid window"), "{}", stderr(&out));
    let out = cli.create(&csv, &["--retry-delay", "soon"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let out = cli.run(&["campaign", "status", "cmp_missing"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("campaign cmp_missing not found"),
        "{}",
        stderr(&out)
    );
}
