//! The shared HTTP policy against local servers on 127.0.0.1: retries, Retry-After, timeouts,
//! connection resets, the breaker, the concurrency cap, the deadline, idempotency and body limits.
//! Backoff sleeps go through a virtual clock, so no test waits for a real backoff.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use callbridge::connectors::http::{
    BreakerState, Clock, ConnectorProfile, HttpPolicy, PolicyConfig, PolicyError, Replay,
    RequestContext,
};
use callbridge::egress::EgressPolicy;
use futures_util::future::BoxFuture;
use reqwest::header::HeaderName;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::time::Instant;
use wiremock::matchers::{header, header_exists, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// Real time plus a virtual offset: sleeps return at once and move the offset, and tests can
/// jump ahead (breaker cool-downs). Records every sleep.
#[derive(Debug, Default)]
struct VirtualClock {
    offset: Mutex<Duration>,
    sleeps: Mutex<Vec<Duration>>,
}

impl VirtualClock {
    fn advance(&self, by: Duration) {
        *self.offset.lock().expect("clock lock") += by;
    }
    fn sleeps(&self) -> Vec<Duration> {
        self.sleeps.lock().expect("clock lock").clone()
    }
}

impl Clock for VirtualClock {
    fn now(&self) -> Instant {
        Instant::now() + *self.offset.lock().expect("clock lock")
    }
    fn sleep(&self, duration: Duration) -> BoxFuture<'static, ()> {
        self.sleeps.lock().expect("clock lock").push(duration);
        self.advance(duration);
        Box::pin(async {})
    }
}

fn fast_config() -> PolicyConfig {
    PolicyConfig {
        attempt_timeout: Duration::from_millis(300),
        max_attempts: 4,
        backoff_base: Duration::from_millis(50),
        backoff_max: Duration::from_millis(400),
        breaker_failure_threshold: 50,
        breaker_cool_down: Duration::from_secs(30),
        max_concurrency: 4,
        max_body_bytes: 64 * 1024,
        egress: EgressPolicy::allow_loopback(),
        ..PolicyConfig::default()
    }
}

fn policy(config: PolicyConfig) -> (HttpPolicy, Arc<VirtualClock>) {
    let clock = Arc::new(VirtualClock::default());
    let policy = HttpPolicy::with_clock(config, clock.clone()).expect("policy builds");
    (policy, clock)
}

fn ctx(clock: &VirtualClock, budget: Duration) -> RequestContext {
    RequestContext::new("tenant-a", "call_1", clock.now() + budget)
}

fn get(policy: &HttpPolicy, url: &str) -> reqwest::Request {
    policy.client().get(url).build().expect("request builds")
}

async fn received(server: &MockServer) -> usize {
    server
        .received_requests()
        .await
        .map_or(0, |requests| requests.len())
}

#[tokio::test]
async fn retries_429_after_the_retry_after_delay_then_succeeds() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/slots"))
        .respond_with(ResponseTemplate::new(429).insert_header("Retry-After", "2"))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/slots"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({"ok": true})))
        .mount(&server)
        .await;
    let (policy, clock) = policy(fast_config());
    let profile = ConnectorProfile::new("test");
    let response = policy
        .send(
            &ctx(&clock, Duration::from_secs(10)),
            &profile,
            get(&policy, &format!("{}/slots", server.uri())),
            Replay::ByMethod,
        )
        .await
        .expect("second attempt succeeds");
    assert_eq!(response.status, 200);
    assert_eq!(response.attempts, 2);
    assert_eq!(
        clock.sleeps(),
        vec![Duration::from_secs(2)],
        "slept exactly what Retry-After said"
    );
}

#[tokio::test]
async fn retry_after_past_the_deadline_is_not_waited_for() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(429).insert_header("Retry-After", "30"))
        .mount(&server)
        .await;
    let (policy, clock) = policy(fast_config());
    let err = policy
        .send(
            &ctx(&clock, Duration::from_secs(5)),
            &ConnectorProfile::new("test"),
            get(&policy, &server.uri()),
            Replay::ByMethod,
        )
        .await
        .expect_err("gives up");
    assert!(
        matches!(err, PolicyError::Status { code: 429, retry_after: Some(d), .. } if d == Duration::from_secs(30)),
        "{err:?}"
    );
    assert_eq!(received(&server).await, 1);
    assert!(clock.sleeps().is_empty());
}

#[tokio::test]
async fn a_burst_of_503_is_ridden_out_with_growing_jittered_backoff() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(3)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&server)
        .await;
    let (policy, clock) = policy(fast_config());
    let response = policy
        .send(
            &ctx(&clock, Duration::from_secs(10)),
            &ConnectorProfile::new("test"),
            get(&policy, &server.uri()),
            Replay::ByMethod,
        )
        .await
        .expect("fourth attempt succeeds");
    assert_eq!(response.attempts, 4);
    let sleeps = clock.sleeps();
    assert_eq!(sleeps.len(), 3);
    for (index, slept) in sleeps.iter().enumerate() {
        let ceiling = Duration::from_millis(50) * (1 << index);
        assert!(
            *slept <= ceiling,
            "sleep {index} = {slept:?} above {ceiling:?}"
        );
    }
}

#[tokio::test]
async fn max_attempts_bounds_a_persistent_503_and_reports_the_status() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(
            ResponseTemplate::new(503)
                .set_body_string("upstream overloaded, contact ops@vendor.example"),
        )
        .mount(&server)
        .await;
    let (policy, clock) = policy(fast_config());
    let err = policy
        .send(
            &ctx(&clock, Duration::from_secs(10)),
            &ConnectorProfile::new("test"),
            get(&policy, &server.uri()),
            Replay::ByMethod,
        )
        .await
        .expect_err("all attempts fail");
    let PolicyError::Status {
        code, body_snippet, ..
    } = &err
    else {
        panic!("{err:?}")
    };
    assert_eq!(*code, 503);
    assert!(
        !body_snippet.contains("ops@vendor.example"),
        "snippet is redacted: {body_snippet}"
    );
    assert_eq!(received(&server).await, 4);
    assert_eq!(err.speakable(), "The system we use had an error.");
}

#[tokio::test]
async fn client_errors_and_501_are_not_retried() {
    for code in [400u16, 404, 422, 501] {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .respond_with(ResponseTemplate::new(code))
            .mount(&server)
            .await;
        let (policy, clock) = policy(fast_config());
        let err = policy
            .send(
                &ctx(&clock, Duration::from_secs(10)),
                &ConnectorProfile::new("test"),
                get(&policy, &server.uri()),
                Replay::ByMethod,
            )
            .await
            .expect_err("error status");
        assert_eq!(err.status(), Some(code));
        assert_eq!(received(&server).await, 1, "status {code} was retried");
    }
}

#[tokio::test]
async fn a_slow_attempt_times_out_and_the_retry_succeeds() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(5)))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_body_string("fast"))
        .mount(&server)
        .await;
    let (policy, clock) = policy(PolicyConfig {
        attempt_timeout: Duration::from_millis(150),
        ..fast_config()
    });
    let response = policy
        .send(
            &ctx(&clock, Duration::from_secs(10)),
            &ConnectorProfile::new("test"),
            get(&policy, &server.uri()),
            Replay::ByMethod,
        )
        .await
        .expect("retry after the timeout succeeds");
    assert_eq!(response.body, b"fast");
    assert_eq!(response.attempts, 2);
}

#[tokio::test]
async fn an_attempt_never_outlives_the_overall_deadline() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(5)))
        .mount(&server)
        .await;
    // The per-attempt timeout is generous; the deadline is what must cut the attempt short.
    let real = HttpPolicy::new(PolicyConfig {
        attempt_timeout: Duration::from_secs(30),
        ..fast_config()
    })
    .expect("policy builds");
    let context = RequestContext::new(
        "tenant-a",
        "call_1",
        Instant::now() + Duration::from_millis(200),
    );
    let err = real
        .send(
            &context,
            &ConnectorProfile::new("test"),
            get(&real, &server.uri()),
            Replay::ByMethod,
        )
        .await
        .expect_err("deadline hits");
    assert!(
        matches!(err, PolicyError::Timeout { attempts: 1, .. }),
        "{err:?}"
    );
    assert!(Instant::now() >= context.deadline);
    assert_eq!(received(&server).await, 1);
}

#[tokio::test]
async fn retries_stop_at_the_deadline_even_with_attempts_left() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(503))
        .mount(&server)
        .await;
    let config = PolicyConfig {
        max_attempts: 1_000,
        backoff_base: Duration::from_millis(200),
        backoff_max: Duration::from_millis(800),
        ..fast_config()
    };
    let (policy, clock) = policy(config);
    let context = ctx(&clock, Duration::from_secs(3));
    let err = policy
        .send(
            &context,
            &ConnectorProfile::new("test"),
            get(&policy, &server.uri()),
            Replay::ByMethod,
        )
        .await
        .expect_err("runs out of time");
    assert_eq!(err.status(), Some(503));
    assert!(
        clock.now() < context.deadline,
        "a backoff slept past the deadline"
    );
    let attempts = received(&server).await;
    assert!(attempts > 1 && attempts < 1_000, "attempts = {attempts}");
}

/// A server that accepts and immediately drops the first `resets` connections, then answers
/// each later request with a fixed 200.
async fn resetting_server(resets: usize) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let seen = counter.fetch_add(1, Ordering::SeqCst);
            if seen < resets {
                // Abort the connection with an RST rather than a clean FIN.
                let _ = socket.set_zero_linger();
                drop(socket);
                continue;
            }
            tokio::spawn(async move {
                let mut buffer = vec![0u8; 4096];
                let _ = tokio::io::AsyncReadExt::read(&mut socket, &mut buffer).await;
                let _ = socket
                    .write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
                    )
                    .await;
            });
        }
    });
    (format!("http://{address}/"), accepted)
}

#[tokio::test]
async fn connection_resets_are_retried() {
    let (url, accepted) = resetting_server(2).await;
    let (policy, clock) = policy(fast_config());
    let response = policy
        .send(
            &ctx(&clock, Duration::from_secs(10)),
            &ConnectorProfile::new("test"),
            get(&policy, &url),
            Replay::ByMethod,
        )
        .await
        .expect("third connection answers");
    assert_eq!(response.body, b"ok");
    assert_eq!(accepted.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn persistent_resets_end_in_a_transport_error() {
    let (url, accepted) = resetting_server(usize::MAX).await;
    let (policy, clock) = policy(fast_config());
    let err = policy
        .send(
            &ctx(&clock, Duration::from_secs(10)),
            &ConnectorProfile::new("test"),
            get(&policy, &url),
            Replay::ByMethod,
        )
        .await
        .expect_err("never answers");
    assert!(matches!(err, PolicyError::Transport { .. }), "{err:?}");
    assert_eq!(accepted.load(Ordering::SeqCst), 4);
    assert_eq!(
        err.speakable(),
        "The system we use is unavailable right now."
    );
}

#[tokio::test]
async fn a_post_without_idempotency_key_is_sent_once() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(503))
        .mount(&server)
        .await;
    let (policy, clock) = policy(fast_config());
    let profile = ConnectorProfile::new("test")
        .with_idempotency_header(HeaderName::from_static("idempotency-key"));
    let request = policy
        .client()
        .post(server.uri())
        .body("{}")
        .build()
        .expect("request builds");
    let err = policy
        .send(
            &ctx(&clock, Duration::from_secs(10)),
            &profile,
            request,
            Replay::ByMethod,
        )
        .await
        .expect_err("503");
    assert_eq!(err.status(), Some(503));
    assert_eq!(received(&server).await, 1);
}

#[tokio::test]
async fn a_post_with_an_honoured_idempotency_key_is_retried_with_the_same_key() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(header("idempotency-key", "key-123"))
        .respond_with(ResponseTemplate::new(502))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(header("idempotency-key", "key-123"))
        .respond_with(ResponseTemplate::new(201))
        .mount(&server)
        .await;
    let (policy, clock) = policy(fast_config());
    let profile = ConnectorProfile::new("test")
        .with_idempotency_header(HeaderName::from_static("idempotency-key"));
    let request = policy
        .client()
        .post(server.uri())
        .body("{}")
        .build()
        .expect("request builds");
    let context = ctx(&clock, Duration::from_secs(10)).with_idempotency_key("key-123");
    let response = policy
        .send(&context, &profile, request, Replay::ByMethod)
        .await
        .expect("retried");
    assert_eq!(response.status, 201);
    assert_eq!(received(&server).await, 2);
}

#[tokio::test]
async fn a_key_without_a_vendor_header_does_not_make_a_post_retryable() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(500))
        .mount(&server)
        .await;
    let (policy, clock) = policy(fast_config());
    let request = policy
        .client()
        .post(server.uri())
        .body("{}")
        .build()
        .expect("request builds");
    let context = ctx(&clock, Duration::from_secs(10)).with_idempotency_key("key-123");
    let _ = policy
        .send(
            &context,
            &ConnectorProfile::new("test"),
            request,
            Replay::ByMethod,
        )
        .await;
    assert_eq!(received(&server).await, 1);
    let requests = server.received_requests().await.unwrap_or_default();
    assert!(
        requests
            .iter()
            .all(|r| !r.headers.contains_key("idempotency-key"))
    );
}

#[tokio::test]
async fn breaker_opens_fails_fast_half_opens_and_closes() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(500))
        .up_to_n_times(4)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&server)
        .await;
    let config = PolicyConfig {
        max_attempts: 1,
        breaker_failure_threshold: 3,
        breaker_cool_down: Duration::from_secs(20),
        ..fast_config()
    };
    let (policy, clock) = policy(config);
    let profile = ConnectorProfile::new("flaky");
    let call = || async {
        let context = ctx(&clock, Duration::from_secs(5));
        policy
            .send(
                &context,
                &profile,
                get(&policy, &server.uri()),
                Replay::ByMethod,
            )
            .await
    };

    for _ in 0..3 {
        assert_eq!(call().await.expect_err("500").status(), Some(500));
    }
    assert!(matches!(
        policy.breaker_state("tenant-a", "flaky"),
        BreakerState::Open { .. }
    ));
    let err = call().await.expect_err("open breaker");
    assert!(matches!(err, PolicyError::CircuitOpen { .. }), "{err:?}");
    assert_eq!(
        received(&server).await,
        3,
        "an open breaker must not reach the vendor"
    );

    // Other tenants are not affected by this tenant's breaker.
    assert!(matches!(
        policy.breaker_state("tenant-b", "flaky"),
        BreakerState::Closed { .. }
    ));

    // After the cool-down one probe goes through; it fails (the 4th 500), so the breaker reopens.
    clock.advance(Duration::from_secs(21));
    assert_eq!(call().await.expect_err("probe fails").status(), Some(500));
    assert!(matches!(call().await, Err(PolicyError::CircuitOpen { .. })));

    // Next probe succeeds and closes the breaker.
    clock.advance(Duration::from_secs(21));
    call().await.expect("probe succeeds");
    assert_eq!(
        policy.breaker_state("tenant-a", "flaky"),
        BreakerState::Closed {
            consecutive_failures: 0
        }
    );
    call().await.expect("closed again");
    assert_eq!(received(&server).await, 6);
}

#[tokio::test]
async fn the_concurrency_cap_fails_with_overloaded_at_the_deadline() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_millis(800)))
        .mount(&server)
        .await;
    let config = PolicyConfig {
        max_concurrency: 1,
        attempt_timeout: Duration::from_secs(5),
        ..fast_config()
    };
    let (policy, clock) = policy(config);
    let profile = ConnectorProfile::new("capped");
    let slow = {
        let policy = policy.clone();
        let profile = profile.clone();
        let context = ctx(&clock, Duration::from_secs(5));
        let request = get(&policy, &server.uri());
        tokio::spawn(async move {
            policy
                .send(&context, &profile, request, Replay::ByMethod)
                .await
        })
    };
    // Wait until the first request holds the only permit.
    while received(&server).await == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let err = policy
        .send(
            &ctx(&clock, Duration::from_millis(100)),
            &profile,
            get(&policy, &server.uri()),
            Replay::ByMethod,
        )
        .await
        .expect_err("no permit in time");
    assert!(
        matches!(
            err,
            PolicyError::Overloaded {
                connector: "capped"
            }
        ),
        "{err:?}"
    );
    assert_eq!(err.speakable(), "The system we use is busy right now.");
    slow.await
        .expect("task joins")
        .expect("first request completes");
    // Waiting for a permit is not a vendor failure.
    assert_eq!(
        policy.breaker_state("tenant-a", "capped"),
        BreakerState::Closed {
            consecutive_failures: 0
        }
    );
}

#[tokio::test]
async fn oversized_bodies_are_refused() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_body_bytes(vec![b'x'; 10_000]))
        .mount(&server)
        .await;
    let (policy, clock) = policy(PolicyConfig {
        max_body_bytes: 4_096,
        ..fast_config()
    });
    let err = policy
        .send(
            &ctx(&clock, Duration::from_secs(5)),
            &ConnectorProfile::new("test"),
            get(&policy, &server.uri()),
            Replay::ByMethod,
        )
        .await
        .expect_err("too large");
    assert!(
        matches!(err, PolicyError::BodyTooLarge { limit: 4_096, .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn oversized_chunked_bodies_without_length_are_refused() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move {
        if let Ok((mut socket, _)) = listener.accept().await {
            let mut buffer = vec![0u8; 4096];
            let _ = tokio::io::AsyncReadExt::read(&mut socket, &mut buffer).await;
            let _ = socket
                .write_all(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
                .await;
            let chunk = format!("{:x}\r\n{}\r\n", 1024, "y".repeat(1024));
            for _ in 0..64 {
                if socket.write_all(chunk.as_bytes()).await.is_err() {
                    return;
                }
            }
            let _ = socket.write_all(b"0\r\n\r\n").await;
        }
    });
    let (policy, clock) = policy(PolicyConfig {
        max_body_bytes: 8_192,
        ..fast_config()
    });
    let err = policy
        .send(
            &ctx(&clock, Duration::from_secs(5)),
            &ConnectorProfile::new("test"),
            get(&policy, &format!("http://{address}/")),
            Replay::ByMethod,
        )
        .await
        .expect_err("too large");
    assert!(matches!(err, PolicyError::BodyTooLarge { .. }), "{err:?}");
}

#[tokio::test]
async fn the_auth_header_reaches_the_vendor_untouched() {
    // Redaction applies to logs only, never to what is sent.
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(header("authorization", "Bearer live-secret"))
        .and(header_exists("user-agent"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&server)
        .await;
    let (policy, clock) = policy(fast_config());
    let request = policy
        .client()
        .get(server.uri())
        .bearer_auth("live-secret")
        .build()
        .expect("request builds");
    policy
        .send(
            &ctx(&clock, Duration::from_secs(5)),
            &ConnectorProfile::new("test"),
            request,
            Replay::ByMethod,
        )
        .await
        .expect("authorised");
}
