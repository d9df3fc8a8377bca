//! The bridge's edges: as a real `callbridge serve` process, what it writes to its log at the most
//! verbose level with a real call going through it (fake Twilio and fake realtime provider on
//! 127.0.0.1, in this test process); and its HTTP listener's limits (slow and idle connections,
//! the connection cap, the failed-authentication throttle) on real sockets.

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
    let database = format!("sqlite://{}?mode=rwc", dir.join("bridge.db").display());
    start_bridge_on(dir, realtime_url, &database, env).await
}

/// [`start_bridge`] on the database at `database`.
async fn start_bridge_on(
    dir: &Path,
    realtime_url: &str,
    database: &str,
    env: &[(&str, &str)],
) -> Bridge {
    let addr = free_addr();
    let stdout = std::fs::File::create(dir.join("stdout.log")).expect("stdout file");
    let stderr = std::fs::File::create(dir.join("stderr.log")).expect("stderr file");
    let mut command = Command::new(env!("CARGO_BIN_EXE_callbridge"));
    command
        .env_clear()
        .env("PUBLIC_URL", format!("http://{addr}"))
        .env("CALLBRIDGE_LISTEN", addr.to_string())
        .env("TWILIO_ACCOUNT_SID", ACCOUNT_SID)
        .env("TWILIO_AUTH_TOKEN", AUTH_TOKEN)
        .env("OPENAI_API_KEY", PROVIDER_KEY)
        .env("OPENAI_REALTIME_URL", realtime_url)
        .env("DATABASE_URL", database)
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

// --- HTTP listener limits -------------------------------------------------------------------

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// Reads until the peer closes (or fails); returns what was read and when it closed, or `None`
/// when it was still open after `limit`.
async fn closed_within(stream: &mut TcpStream, limit: Duration) -> Option<(Vec<u8>, Duration)> {
    let started = Instant::now();
    let mut seen = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        let left = limit.checked_sub(started.elapsed())?;
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some((seen, started.elapsed())),
            Ok(Ok(n)) => seen.extend_from_slice(&buf[..n]),
        }
    }
}

async fn limited_bridge(
    header_secs: u64,
    idle_secs: u64,
    max: usize,
) -> callbridge_testkit::TestBridge {
    callbridge_testkit::TestBridge::start("ws://127.0.0.1:9/v1/realtime", |args| {
        args.http_header_timeout_secs = Some(header_secs);
        args.http_idle_timeout_secs = Some(idle_secs);
        args.http_max_connections = Some(max);
        args.admin_key = Some(ADMIN_KEY.into());
    })
    .await
}

/// Slowloris: a request head trickled in a byte at a time (so the socket is never idle) is cut
/// off at the header-read timeout.
#[tokio::test]
async fn a_slowly_trickled_request_head_is_cut_off() {
    let bridge = limited_bridge(1, 30, 64).await;
    let mut stream = TcpStream::connect(bridge.addr).await.expect("connect");
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: a\r\n")
        .await
        .expect("write");
    let trickle = async {
        for i in 0..40 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if stream
                .write_all(format!("X-{i}: b\r\n").as_bytes())
                .await
                .is_err()
            {
                return Instant::now();
            }
        }
        Instant::now()
    };
    let started = Instant::now();
    let stopped = trickle.await;
    let after = stopped - started;
    assert!(
        after < Duration::from_secs(4),
        "the trickling client was served for {after:?}"
    );
}

/// A kept-alive connection that sends no next request is closed (header timeout), and one that
/// stalls mid-body is closed by the idle timeout.
#[tokio::test]
async fn idle_and_stalled_connections_are_closed() {
    let bridge = limited_bridge(1, 1, 64).await;
    let mut stream = TcpStream::connect(bridge.addr).await.expect("connect");
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .expect("write");
    let (seen, after) = closed_within(&mut stream, Duration::from_secs(5))
        .await
        .expect("an idle keep-alive connection is closed");
    assert!(
        String::from_utf8_lossy(&seen).starts_with("HTTP/1.1 200"),
        "answered first"
    );
    assert!(
        after >= Duration::from_millis(900),
        "closed after {after:?}"
    );

    let mut stalled = TcpStream::connect(bridge.addr).await.expect("connect");
    stalled
        .write_all(b"POST /twilio/voice HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\nCallSid=")
        .await
        .expect("write");
    let (_, after) = closed_within(&mut stalled, Duration::from_secs(5))
        .await
        .expect("a stalled upload is closed");
    assert!(after < Duration::from_secs(4), "closed after {after:?}");
}

/// Past the connection cap a new connection is closed at once and counted; once others close,
/// connections are served again.
#[tokio::test]
async fn connections_over_the_cap_are_closed_and_counted() {
    let bridge = limited_bridge(30, 30, 2).await;
    let first = TcpStream::connect(bridge.addr).await.expect("connect");
    let second = TcpStream::connect(bridge.addr).await.expect("connect");
    let mut third = TcpStream::connect(bridge.addr).await.expect("connect");
    let closed = closed_within(&mut third, Duration::from_secs(3)).await;
    assert!(closed.is_some(), "the connection over the cap was served");
    assert_eq!(bridge.metrics.errors_of("http_connection_limit"), 1);
    drop((first, second));
    let mut served = false;
    for _ in 0..100 {
        if let Ok((200, _)) =
            callbridge_testkit::fake_twilio::http_get(bridge.addr, "/healthz").await
        {
            served = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(served, "served again once connections closed");
}

/// Failed authentications are counted; past the limit the address gets 429 with Retry-After,
/// even with the right key, until the window ends.
#[tokio::test]
async fn failed_authentications_are_throttled() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let bridge = limited_bridge(10, 60, 64).await;
    let client = reqwest::Client::new();
    let get = |key: &'static str| {
        client
            .get(format!("http://{}/api/v1/tenants", bridge.addr))
            .bearer_auth(key)
            .send()
    };
    assert_eq!(get(ADMIN_KEY).await.expect("send").status().as_u16(), 200);
    for _ in 0..10 {
        let status = get("cbk_0123456789ab_wrong").await.expect("send").status();
        assert_eq!(status.as_u16(), 401);
    }
    let throttled = get("cbk_0123456789ab_wrong").await.expect("send");
    assert_eq!(throttled.status().as_u16(), 429);
    let retry_after: u64 = throttled
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("Retry-After");
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    assert_eq!(
        get(ADMIN_KEY).await.expect("send").status().as_u16(),
        429,
        "the address is throttled whatever key it sends"
    );
    assert_eq!(bridge.metrics.errors_of("api_auth_failed"), 10);
    assert_eq!(bridge.metrics.errors_of("api_auth_throttled"), 2);
}

// --- crash recovery ---------------------------------------------------------------------------

/// `kill -9` mid-call, then a restart under the same node id: the call left `in-progress` is
/// settled with Twilio's final status and end reason `bridge_restart`, and its `call.ended`
/// webhook is queued exactly once (a later sweep finds nothing).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_orphaned_by_kill_9_is_settled_at_restart() {
    use callbridge::store::{CallStatus, SqlStore, Store, WebhookSettingsSpec};
    use callbridge_testkit::fake_twilio_rest::{FakeTwilioRest, calls_spec};
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().expect("temp dir");
    let database = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("bridge.db").display()
    );
    let store = SqlStore::open(&database).await.expect("store");
    let tenant = callbridge_testkit::provision_agent(
        &store,
        "acme",
        callbridge_testkit::agent_spec("openai", "gpt-realtime", "alloy"),
    )
    .await;
    // The bridge only queues the webhook (no worker runs without a master key): any sealed
    // secret satisfies the reference.
    store
        .put_sealed_secret(
            &tenant,
            &callbridge::store::NewSealedSecret {
                name: "webhook-signing".into(),
                vendor: "webhook".into(),
                ciphertext: vec![1, 2, 3, 4, 5, 6, 7, 8],
                key_id: "k1".into(),
                last4: "wxyz".into(),
            },
        )
        .await
        .expect("secret");
    store
        .put_webhook_settings(
            &tenant,
            &WebhookSettingsSpec {
                url: "https://hooks.example.com/calls".into(),
                secret_name: "webhook-signing".into(),
                enabled: true,
            },
        )
        .await
        .expect("webhook settings");
    let realtime = FakeRealtime::start(Behaviour {
        script: vec![Turn::Say {
            ms: 20_000,
            byte: 0x44,
            text: "A very long answer.".into(),
        }],
        ..Behaviour::default()
    })
    .await;
    let fake = FakeTwilioRest::start(&calls_spec().expect("spec"), ACCOUNT_SID, AUTH_TOKEN)
        .await
        .expect("fake Twilio REST");
    let sid = "CA00000000000000000000000000000066";
    fake.add_call(sid, "in-progress");
    let env = [
        ("CALLBRIDGE_NODE_ID", "node-a"),
        ("TWILIO_API_BASE", fake.base_url.as_str()),
    ];
    let logs = tempfile::tempdir().expect("log dir");
    let first = start_bridge_on(logs.path(), &realtime.url(), &database, &env).await;
    let twilio = FakeTwilio {
        bridge: first.addr,
        public_url: format!("http://{}", first.addr),
        auth_token: AUTH_TOKEN.into(),
        account_sid: ACCOUNT_SID.into(),
    };
    let caller = tokio::spawn(async move {
        twilio
            .call(
                sid,
                CallScript {
                    max_ms: 15_000,
                    ..CallScript::default()
                },
            )
            .await
    });
    let mut live = None;
    for _ in 0..250 {
        if let Ok(call) = store.call_by_twilio_sid(&tenant, sid).await {
            live = Some(call);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let live = live.expect("the call was recorded");
    assert_eq!(live.status, CallStatus::InProgress);

    // SIGKILL: nothing of the driver's ending runs. Twilio ends the call once its stream drops.
    drop(first);
    let _ = caller.await;
    fake.set_status(sid, "completed");
    let after_kill = store.call(&tenant, &live.id).await.expect("call");
    assert_eq!(
        after_kill.status,
        CallStatus::InProgress,
        "left in progress"
    );

    let second = start_bridge_on(logs.path(), &realtime.url(), &database, &env).await;
    let mut settled = None;
    for _ in 0..250 {
        let call = store.call(&tenant, &live.id).await.expect("call");
        if call.ended_at.is_some() {
            settled = Some(call);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let settled = settled.expect("the orphaned call was settled at restart");
    assert_eq!(
        settled.status,
        CallStatus::Completed,
        "Twilio's final status"
    );
    assert_eq!(settled.end_reason.as_deref(), Some("bridge_restart"));
    let outbox = store.list_outbox(&tenant, 10).await.expect("outbox");
    assert_eq!(outbox.len(), 1, "one call.ended webhook");
    assert_eq!(outbox[0].event_type, "call.ended");
    assert!(outbox[0].payload.contains("bridge_restart"));

    // Another node's sweep (the first is alive) finds nothing more to settle.
    drop(second);
    let recovery = callbridge::call::recovery::Recovery {
        store: store.clone(),
        metrics: std::sync::Arc::default(),
        twilio: None,
        node_id: "node-b".into(),
        started_at_ms: jiff::Timestamp::now().as_millisecond(),
    };
    assert_eq!(recovery.sweep().await.expect("sweep"), 0);
    assert_eq!(
        store.list_outbox(&tenant, 10).await.expect("outbox").len(),
        1
    );
}
