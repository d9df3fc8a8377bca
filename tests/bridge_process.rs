//! The bridge as a real `callbridge serve` process: what it writes to its log at the most verbose
//! level, with a real call going through it (fake Twilio and fake realtime provider on 127.0.0.1,
//! in this test process).

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use callbridge_testkit::fake_realtime::{Behaviour, FakeRealtime, Turn};
use callbridge_testkit::fake_twilio::{CallScript, FakeTwilio};
use callbridge_testkit::{ACCOUNT_SID, AUTH_TOKEN};

/// A provider key distinctive enough to grep for.
const PROVIDER_KEY: &str = "sk-trace-test-key-4f9c2e7a1b";
const ADMIN_KEY: &str = "cb-admin-trace-test-0a1b2c3d4e5f";

struct Bridge {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Bridge {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_addr() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr")
}

/// Starts `callbridge serve` with `env` on top of the basics; stdout and stderr go to files in
/// `dir`. Waits until it answers `/healthz`.
async fn start_bridge(dir: &Path, realtime_url: &str, env: &[(&str, &str)]) -> Bridge {
    let addr = free_addr();
    let stdout = std::fs::File::create(dir.join("stdout.log")).expect("stdout file");
    let stderr = std::fs::File::create(dir.join("stderr.log")).expect("stderr file");
    let database = format!("sqlite://{}?mode=rwc", dir.join("bridge.db").display());
    let mut command = Command::new(env!("CARGO_BIN_EXE_callbridge"));
    command
        .env_clear()
        .env("PUBLIC_URL", format!("http://{addr}"))
        .env("CALLBRIDGE_LISTEN", addr.to_string())
        .env("TWILIO_ACCOUNT_SID", ACCOUNT_SID)
        .env("TWILIO_AUTH_TOKEN", AUTH_TOKEN)
        .env("OPENAI_API_KEY", PROVIDER_KEY)
        .env("OPENAI_REALTIME_URL", realtime_url)
        .env("DATABASE_URL", &database)
        .env("CALLBRIDGE_CAMPAIGNS", "false")
        .env(
            "CALLBRIDGE_EGRESS_ALLOW",
            callbridge_testkit::LOOPBACK_EGRESS,
        );
    for (k, v) in env {
        command.env(k, v);
    }
    let child = command
        .stdout(Stdio::from(stdout))
        .stderr(Stdio::from(stderr))
        .spawn()
        .expect("start callbridge");
    let mut bridge = Bridge { child, addr };
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok((200, _)) = callbridge_testkit::fake_twilio::http_get(addr, "/healthz").await {
            return bridge;
        }
        if let Ok(Some(status)) = bridge.child.try_wait() {
            let log = std::fs::read_to_string(dir.join("stderr.log")).unwrap_or_default();
            panic!("callbridge exited with {status}: {log}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("callbridge did not start on {addr}");
}

/// At `CALLBRIDGE_LOG=trace` a whole call (Twilio webhook, media socket, the provider WebSocket
/// handshake with its API key, the provider session) writes no secret into the log: the transport
/// crates are capped and configured secrets are scrubbed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trace_logging_of_a_whole_call_writes_no_secret() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let realtime = FakeRealtime::start(Behaviour {
        script: vec![Turn::Say {
            ms: 300,
            byte: 0x21,
            text: "Hello!".into(),
        }],
        ..Behaviour::default()
    })
    .await;
    let dir = tempfile::tempdir().expect("temp dir");
    let bridge = start_bridge(
        dir.path(),
        &realtime.url(),
        &[
            ("CALLBRIDGE_LOG", "trace"),
            ("CALLBRIDGE_ADMIN_KEY", ADMIN_KEY),
        ],
    )
    .await;
    let twilio = FakeTwilio {
        bridge: bridge.addr,
        public_url: format!("http://{}", bridge.addr),
        auth_token: AUTH_TOKEN.into(),
        account_sid: ACCOUNT_SID.into(),
    };
    let report = twilio
        .call(
            "CA00000000000000000000000000000081",
            CallScript {
                hang_up_after_ms: Some(1_200),
                max_ms: 5_000,
                ..CallScript::default()
            },
        )
        .await
        .expect("call");
    assert!(
        report.played.iter().any(|(_, b)| *b == 0x21),
        "the call went through"
    );
    let sessions = realtime.recorder.sessions();
    assert_eq!(
        sessions[0].authorization.as_deref(),
        Some(format!("Bearer {PROVIDER_KEY}").as_str()),
        "the key was sent to the provider"
    );
    // An admin request with the key, so the server side sees it in a header too.
    let _ = reqwest::Client::new()
        .get(format!("http://{}/api/v1/tenants", bridge.addr))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(bridge);

    let log = std::fs::read_to_string(dir.path().join("stdout.log")).expect("log")
        + &std::fs::read_to_string(dir.path().join("stderr.log")).expect("log");
    assert!(
        log.contains("TRACE") || log.contains("DEBUG"),
        "trace logging was on"
    );
    assert!(log.contains("call ended"), "the call was logged");
    for secret in [PROVIDER_KEY, AUTH_TOKEN, ADMIN_KEY] {
        assert!(
            !log.contains(secret),
            "{secret} reached the log:\n{}",
            log.lines()
                .filter(|l| l.contains(secret))
                .take(3)
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    assert!(
        !log.contains("Bearer sk-"),
        "an Authorization header reached the log"
    );
}
