//! Tools outside a call — `POST /api/v1/tools/{tool}/invoke`, `callbridge tools invoke`,
//! `callbridge tools list`, `callbridge doctor` — go through the same runtime as a call: the tenant's
//! connector (a local mock, reached by the real connector code), its sealed credentials, the ledger.

use std::process::Command;

use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use callbridge::store::{ConnectorSpec, NewTenant, SqlStore, Store, TenantId};
use callbridge::tenant::vault::{Keyring, MasterKey, Vault};
use callbridge_testkit::TestBridge;
use callbridge_testkit::fake_realtime::{Behaviour, FakeRealtime};
use secrecy::SecretString;

const BOOKING: &str = r#"{"status": "success", "data": {"id": 7, "uid": "bk-9", "status": "accepted",
  "start": "2050-09-05T14:00:00.000Z", "end": "2050-09-05T14:30:00.000Z", "eventTypeId": 100,
  "attendees": [{"name": "Ann Lee", "email": "ann@example.com", "timeZone": "America/New_York"}]}}"#;

async fn calendar() -> MockServer {
    let server = MockServer::start().await;
    callbridge_testkit::vendor_mocks::calcom_event_type(&server, 100, 30, &[]).await;
    Mock::given(method("POST"))
        .and(path("/v2/bookings"))
        .respond_with(
            ResponseTemplate::new(201)
                .set_body_json(serde_json::from_str::<Value>(BOOKING).unwrap()),
        )
        .mount(&server)
        .await;
    server
}

async fn tenant_with_calcom(
    store: &SqlStore,
    vault: &Vault<SqlStore>,
    id: &str,
    base: &str,
) -> TenantId {
    let tenant = TenantId::parse(id).unwrap();
    store
        .create_tenant(&NewTenant {
            id: tenant.clone(),
            name: id.into(),
            time_zone: "America/New_York".into(),
        })
        .await
        .unwrap();
    vault
        .put(
            &tenant,
            "cal",
            "calcom",
            &SecretString::from(r#"{"api_key": "cal_live_test_key", "event_type_id": 100}"#),
        )
        .await
        .unwrap();
    store
        .put_connector(
            &tenant,
            &ConnectorSpec {
                vendor: "calcom".into(),
                base_url: Some(base.into()),
                secret_name: Some("cal".into()),
            },
        )
        .await
        .unwrap();
    tenant
}

async fn post_json(addr: std::net::SocketAddr, path: &str, key: &str, body: &str) -> (u16, Value) {
    send_json(addr, "POST", path, key, body).await
}

async fn send_json(
    addr: std::net::SocketAddr,
    verb: &str,
    path: &str,
    key: &str,
    body: &str,
) -> (u16, Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "{verb} {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {key}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b)
        .unwrap_or_default();
    // Bodies here are small and sent with Content-Length.
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

#[tokio::test]
async fn the_invoke_endpoint_runs_the_tenants_tool_and_respects_isolation() {
    let realtime = FakeRealtime::start(Behaviour::default()).await;
    let admin_key = "admin-key-for-tests-0123456789";
    let bridge = TestBridge::start(&realtime.url(), |a| a.admin_key = Some(admin_key.into())).await;
    let cal = calendar().await;
    let acme = tenant_with_calcom(&bridge.store, &bridge.vault(), "acme", &cal.uri()).await;
    let globex = TenantId::parse("globex").unwrap();
    bridge
        .store
        .create_tenant(&NewTenant {
            id: globex.clone(),
            name: "Globex".into(),
            time_zone: "Europe/Paris".into(),
        })
        .await
        .unwrap();
    let args = json!({"arguments": {"start": "2050-09-05T14:00:00Z", "name": "Ann Lee", "email": "ann@example.com"}});

    let (status, body) = post_json(
        bridge.addr,
        "/api/v1/tools/book_appointment/invoke?tenant=acme",
        admin_key,
        &args.to_string(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["outcome"], "ok");
    assert_eq!(body["output"]["result"]["booking_id"], "bk-9");
    let bookings = cal
        .received_requests()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.url.path() == "/v2/bookings")
        .count();
    assert_eq!(bookings, 1);

    // Globex has no calendar: the tool is not available to it (and says why).
    let (status, body) = post_json(
        bridge.addr,
        "/api/v1/tools/book_appointment/invoke?tenant=globex",
        admin_key,
        &args.to_string(),
    )
    .await;
    assert_eq!(status, 409, "{body}");
    // A tenant that does not exist is a 404, like every other object.
    let (status, _) = post_json(
        bridge.addr,
        "/api/v1/tools/book_appointment/invoke?tenant=nobody",
        admin_key,
        &args.to_string(),
    )
    .await;
    assert_eq!(status, 404);
    let (status, _) = post_json(
        bridge.addr,
        "/api/v1/tools/book_appointment/invoke",
        "wrong",
        "{}",
    )
    .await;
    assert_eq!(status, 401);
    let _ = acme;
}

/// Issue 21 (SSRF): with the product's default (strict) egress policy, a tenant cannot make the
/// bridge send a request to an internal address — not by setting a connector's base URL in any
/// spelling of an internal address (refused when written), not through a name that resolves to
/// loopback or a row written before the guard existed (refused at send time, including by the
/// resolver at connect time), not through a Google `token_uri` in its own secret. The listener on
/// 127.0.0.1 that would have answered receives nothing, and the tenant reads "refused by egress
/// policy".
#[tokio::test]
async fn internal_addresses_are_refused_by_the_egress_guard() {
    const REFUSED: &str = "refused by egress policy";
    let admin_key = "admin-key-for-tests-0123456789";
    // No call is placed, so the provider is never dialled; under the strict policy its endpoint
    // must be wss:// (plain ws:// only for an allow-listed host).
    let bridge = TestBridge::start("wss://realtime.invalid/v1/realtime", |a| {
        a.admin_key = Some(admin_key.into());
        // The product's default: nothing but public https hosts.
        a.egress_allow = None;
    })
    .await;
    let listener = calendar().await;
    let port = listener.address().port();
    let acme = tenant_with_calcom(
        &bridge.store,
        &bridge.vault(),
        "acme",
        "https://api.cal.com/",
    )
    .await;
    let connector_path = "/api/v1/tenants/acme/connectors/calcom";
    let internal = [
        "http://169.254.169.254/latest/meta-data/".to_owned(),
        "https://169.254.169.254/".to_owned(),
        "http://10.0.0.1/".to_owned(),
        "https://10.0.0.1/".to_owned(),
        format!("http://127.0.0.1:{port}/"),
        format!("https://127.0.0.1:{port}/"),
        format!("https://[::1]:{port}/"),
        format!("https://[::ffff:127.0.0.1]:{port}/"),
        format!("https://2130706433:{port}/"),
        format!("https://0177.0.0.1:{port}/"),
        format!("https://0x7f.0.0.1:{port}/"),
    ];
    for url in &internal {
        let body = json!({"base_url": url, "secret_name": "cal"}).to_string();
        let (status, reply) = send_json(bridge.addr, "PUT", connector_path, admin_key, &body).await;
        assert_eq!(status, 400, "{url} accepted: {reply}");
        assert!(reply.to_string().contains(REFUSED), "{url}: {reply}");
    }

    let args = json!({"arguments": {"start": "2050-09-05T14:00:00Z", "name": "Ann Lee", "email": "ann@example.com"}}).to_string();
    let invoke = "/api/v1/tools/book_appointment/invoke?tenant=acme";
    // A name is judged when it is resolved: `localhost` passes the write check and is refused at
    // connect time.
    let body = json!({"base_url": format!("https://localhost:{port}/"), "secret_name": "cal"});
    let (status, reply) = send_json(
        bridge.addr,
        "PUT",
        connector_path,
        admin_key,
        &body.to_string(),
    )
    .await;
    assert_eq!(status, 200, "{reply}");
    let (status, reply) = post_json(bridge.addr, invoke, admin_key, &args).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["outcome"], "failed", "{reply}");
    assert!(
        reply["error_detail"]
            .as_str()
            .unwrap_or_default()
            .contains(REFUSED),
        "{reply}"
    );
    assert!(
        !reply["output"].to_string().contains(REFUSED),
        "the model is told no detail"
    );

    // Rows that skipped the write check (written before the guard existed) are refused when sent.
    for url in &internal {
        bridge
            .store
            .put_connector(
                &acme,
                &ConnectorSpec {
                    vendor: "calcom".into(),
                    base_url: Some(url.clone()),
                    secret_name: Some("cal".into()),
                },
            )
            .await
            .unwrap();
        let (status, reply) = post_json(bridge.addr, invoke, admin_key, &args).await;
        assert_eq!(status, 200, "{url}: {reply}");
        assert!(
            reply["error_detail"]
                .as_str()
                .unwrap_or_default()
                .contains(REFUSED),
            "{url}: {reply}"
        );
    }

    // A Google token endpoint taken from the tenant's own secret goes through the same guard.
    let globex = TenantId::parse("globex").unwrap();
    bridge
        .store
        .create_tenant(&NewTenant {
            id: globex.clone(),
            name: "Globex".into(),
            time_zone: "America/New_York".into(),
        })
        .await
        .unwrap();
    for token_uri in [
        format!("http://127.0.0.1:{port}/token"),
        format!("https://127.0.0.1:{port}/token"),
        format!("https://[::ffff:7f00:1]:{port}/token"),
    ] {
        let secret = json!({
            "client_id": "id.apps.googleusercontent.com",
            "client_secret": "not-a-real-secret",
            "refresh_token": "not-a-real-token",
            "token_uri": token_uri,
        });
        bridge
            .vault()
            .put(
                &globex,
                "google",
                "google_calendar",
                &SecretString::from(secret.to_string()),
            )
            .await
            .unwrap();
        bridge
            .store
            .put_connector(
                &globex,
                &ConnectorSpec {
                    vendor: "google_calendar".into(),
                    base_url: None,
                    secret_name: Some("google".into()),
                },
            )
            .await
            .unwrap();
        let (status, reply) = post_json(
            bridge.addr,
            "/api/v1/tools/book_appointment/invoke?tenant=globex",
            admin_key,
            &args,
        )
        .await;
        // Refused when the connector is built: the tool is unavailable, and says why.
        assert_eq!(status, 409, "{token_uri}: {reply}");
        assert!(reply.to_string().contains(REFUSED), "{token_uri}: {reply}");
    }

    assert!(
        listener.received_requests().await.unwrap().is_empty(),
        "a request reached the loopback listener"
    );
}

fn cli(db: &str, master_key: &str, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_callbridge"))
        .env_clear()
        .env("DATABASE_URL", db)
        .env(
            "CALLBRIDGE_EGRESS_ALLOW",
            callbridge_testkit::LOOPBACK_EGRESS,
        )
        .env("CALLBRIDGE_MASTER_KEY", master_key)
        .args(args)
        .output()
        .unwrap()
}

#[tokio::test]
async fn the_cli_lists_invokes_and_checks_tools_against_the_same_database() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}?mode=rwc", dir.path().join("cb.db").display());
    let key = MasterKey::generate();
    let key_b64 = secrecy::ExposeSecret::expose_secret(&key.to_base64()).to_owned();
    let store = SqlStore::open(&db).await.unwrap();
    let vault = Vault::new(store.clone(), Keyring::new(key));
    let cal = calendar().await;
    Mock::given(method("GET"))
        .and(path("/v2/me"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"status": "success", "data": {"id": 1}})),
        )
        .mount(&cal)
        .await;
    tenant_with_calcom(&store, &vault, "acme", &cal.uri()).await;
    store.close().await;

    let out = cli(&db, &key_b64, &["tools", "list", "--tenant", "acme"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listing = String::from_utf8_lossy(&out.stdout);
    assert!(
        listing
            .lines()
            .any(|l| l.starts_with("book_appointment") && l.contains("yes")),
        "{listing}"
    );
    assert!(
        listing
            .lines()
            .any(|l| l.starts_with("order_status") && l.contains("no")),
        "{listing}"
    );

    let out = cli(
        &db,
        &key_b64,
        &[
            "tools",
            "invoke",
            "book_appointment",
            "--tenant",
            "acme",
            "--args",
            r#"{"start": "2050-09-05T14:00:00Z", "name": "Ann Lee", "email": "ann@example.com"}"#,
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let output: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(output["result"]["booking_id"], "bk-9");
    let bookings = cal
        .received_requests()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.url.path() == "/v2/bookings")
        .count();
    assert_eq!(bookings, 1);

    let out = cli(
        &db,
        &key_b64,
        &[
            "tools",
            "invoke",
            "book_appointment",
            "--tenant",
            "acme",
            "--args",
            "{oops",
        ],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--args is not valid JSON"));

    // A vendor failure: stdout has what the model would hear, stderr the connector's real error
    // (status and the vendor's error code).
    Mock::given(method("POST"))
        .and(path("/v2/bookings/bk-gone/cancel"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({
            "status": "error",
            "error": {"code": "BadRequestException", "message": "Booking already cancelled"}
        })))
        .mount(&cal)
        .await;
    let out = cli(
        &db,
        &key_b64,
        &[
            "tools",
            "invoke",
            "cancel_appointment",
            "--tenant",
            "acme",
            "--args",
            r#"{"booking_id": "bk-gone"}"#,
        ],
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cancel_appointment failed") && stderr.contains("BadRequestException"),
        "{stderr}"
    );
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("BadRequestException"),
        "the model's output holds no vendor detail"
    );

    let out = cli(&db, &key_b64, &["doctor"]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("acme") && table.contains("calcom"),
        "{table}"
    );
    assert!(
        !table.contains("cal_live_test_key"),
        "no secret in the report"
    );
}
