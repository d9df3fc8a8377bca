//! MCP (issue 18), against the SDK's real client and server on 127.0.0.1: the bridge's `/mcp`
//! serves each tenant exactly its own tools and calls (an isolation matrix over keys, tools and
//! call resources), and runs a tool through the same runtime as a phone call (the tenant's
//! connector, reached by the real connector code on a loopback mock, and the ledger).

use rmcp::ServiceExt;
use rmcp::model::{CallToolRequestParams, ReadResourceRequestParams};
use rmcp::service::{RoleClient, RunningService};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use callbridge::store::{
    CallDirection, CallEventKind, CallStatus, ConnectorSpec, NewCall, NewTenant, SqlStore, Store,
    TenantId,
};
use callbridge::tenant::api_keys::issue_api_key;
use callbridge_testkit::fake_realtime::{Behaviour, FakeRealtime};
use callbridge_testkit::{TestBridge, agent_spec};

const ADMIN_KEY: &str = "admin-key-for-mcp-tests-0123456789";

const BOOKING: &str = r#"{"status": "success", "data": {"id": 7, "uid": "bk-9", "status": "accepted",
  "start": "2050-09-05T14:00:00.000Z", "end": "2050-09-05T14:30:00.000Z", "eventTypeId": 100,
  "attendees": [{"name": "Ann Lee", "email": "ann@example.com", "timeZone": "America/New_York"}]}}"#;

type Client = RunningService<RoleClient, ()>;

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

/// A tenant with one agent and one finished call whose transcript says `said`.
async fn tenant_with_call(store: &SqlStore, id: &str, said: &str) -> (TenantId, String) {
    let tenant = TenantId::parse(id).unwrap();
    store
        .create_tenant(&NewTenant {
            id: tenant.clone(),
            name: id.into(),
            time_zone: "America/New_York".into(),
        })
        .await
        .unwrap();
    let agent = store
        .create_agent(&tenant, &agent_spec("openai", "gpt-realtime", "alloy"), &[])
        .await
        .unwrap();
    let call = store
        .create_call(&NewCall {
            tenant_id: tenant.clone(),
            agent_id: agent.id,
            direction: CallDirection::Inbound,
            from: "+14155550100".into(),
            to: "+14155550199".into(),
            twilio_call_sid: None,
            status: CallStatus::InProgress,
        })
        .await
        .unwrap();
    store
        .append_call_event(
            &tenant,
            &call.id,
            CallEventKind::Transcript,
            &json!({"speaker": "caller", "text": said}),
        )
        .await
        .unwrap();
    (tenant, call.id)
}

async fn connect(bridge: &TestBridge, key: &str, query: &str) -> Result<Client, String> {
    let config =
        StreamableHttpClientTransportConfig::with_uri(format!("{}/mcp{query}", bridge.public_url))
            .auth_header(key.to_owned());
    let transport = StreamableHttpClientTransport::from_config(config);
    tokio::time::timeout(std::time::Duration::from_secs(10), ().serve(transport))
        .await
        .map_err(|_| "handshake timed out".to_owned())?
        .map_err(|e| e.to_string())
}

async fn tool_names(client: &Client) -> Vec<String> {
    let mut names: Vec<String> = client
        .list_all_tools()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name.to_string())
        .collect();
    names.sort();
    names
}

fn booking_arguments() -> serde_json::Map<String, Value> {
    json!({"start": "2050-09-05T14:00:00Z", "name": "Ann Lee", "email": "ann@example.com"})
        .as_object()
        .unwrap()
        .clone()
}

#[tokio::test]
async fn each_key_lists_calls_and_reads_only_its_own_tenants_tools_and_calls() {
    let realtime = FakeRealtime::start(Behaviour::default()).await;
    let bridge = TestBridge::start(&realtime.url(), |a| a.admin_key = Some(ADMIN_KEY.into())).await;
    let cal = calendar().await;
    let (acme, acme_call) = tenant_with_call(&bridge.store, "acme", "acme secret words").await;
    let (globex, globex_call) =
        tenant_with_call(&bridge.store, "globex", "globex secret words").await;
    bridge
        .vault()
        .put(
            &acme,
            "cal",
            "calcom",
            &SecretString::from(r#"{"api_key": "cal_live_test_key", "event_type_id": 100}"#),
        )
        .await
        .unwrap();
    bridge
        .store
        .put_connector(
            &acme,
            &ConnectorSpec {
                vendor: "calcom".into(),
                base_url: Some(cal.uri()),
                secret_name: Some("cal".into()),
            },
        )
        .await
        .unwrap();
    let acme_key = issue_api_key(&bridge.store, &acme).await.unwrap().secret;
    let globex_key = issue_api_key(&bridge.store, &globex).await.unwrap().secret;

    let as_acme = connect(&bridge, acme_key.expose_secret(), "")
        .await
        .unwrap();
    let as_globex = connect(&bridge, globex_key.expose_secret(), "")
        .await
        .unwrap();
    let admin_as_acme = connect(&bridge, ADMIN_KEY, "?tenant=acme").await.unwrap();

    // tools/list: the calendar tools only where the calendar is configured; the time built-in for
    // everyone; nothing that needs a phone line (end_call, send_digits, opt_out, transfer_call).
    let acme_tools = tool_names(&as_acme).await;
    assert_eq!(
        acme_tools,
        [
            "book_appointment",
            "cancel_appointment",
            "check_availability",
            "get_current_time",
            "reschedule_appointment"
        ]
    );
    assert_eq!(tool_names(&admin_as_acme).await, acme_tools);
    assert_eq!(tool_names(&as_globex).await, ["get_current_time"]);
    let listed = as_acme.list_all_tools().await.unwrap();
    let book = listed
        .iter()
        .find(|t| t.name == "book_appointment")
        .unwrap();
    assert!(book.description.as_deref().unwrap_or("").len() > 20);
    assert_eq!(book.input_schema["type"], "object");
    assert!(
        book.input_schema["properties"].get("start").is_some(),
        "{:?}",
        book.input_schema
    );

    // tools/call runs the tenant's connector once, through the ledger: the same request retried
    // under the same session books once.
    let result = as_acme
        .call_tool(
            CallToolRequestParams::new("book_appointment").with_arguments(booking_arguments()),
        )
        .await
        .unwrap();
    assert_ne!(result.is_error, Some(true), "{result:?}");
    let output = result.structured_content.clone().unwrap();
    assert_eq!(output["result"]["booking_id"], "bk-9", "{output}");
    let bookings = || async {
        cal.received_requests()
            .await
            .unwrap()
            .into_iter()
            .filter(|r| r.url.path() == "/v2/bookings")
            .count()
    };
    assert_eq!(bookings().await, 1);

    // Globex cannot call Acme's calendar tool: it answers like a tool that does not exist, and
    // the vendor hears nothing.
    let refused = as_globex
        .call_tool(
            CallToolRequestParams::new("book_appointment").with_arguments(booking_arguments()),
        )
        .await
        .unwrap_err();
    assert!(refused.to_string().contains("no tool called"), "{refused}");
    assert_eq!(bookings().await, 1);
    // A tool that fails is a tool error the client shows, not a protocol error.
    let bad = as_globex
        .call_tool(
            CallToolRequestParams::new("get_current_time").with_arguments(
                json!({"caller_time_zone": "Pacific time"})
                    .as_object()
                    .unwrap()
                    .clone(),
            ),
        )
        .await
        .unwrap();
    assert_eq!(bad.is_error, Some(true), "{bad:?}");
    assert_eq!(
        bad.structured_content.unwrap()["error"]["code"],
        "invalid_arguments"
    );

    // Resources: each key sees its own calls and transcripts, never the other tenant's.
    let resources: Vec<String> = as_acme
        .list_all_resources()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.uri)
        .collect();
    assert!(
        resources.contains(&"callbridge://calls".to_owned()),
        "{resources:?}"
    );
    assert!(
        resources.contains(&format!("callbridge://calls/{acme_call}/transcript")),
        "{resources:?}"
    );
    assert!(
        !resources.iter().any(|r| r.contains(&globex_call)),
        "{resources:?}"
    );
    let read = |client: &Client, uri: String| {
        let peer = client.peer().clone();
        async move {
            peer.read_resource(ReadResourceRequestParams::new(uri))
                .await
                .map(|r| serde_json::to_value(&r.contents).unwrap().to_string())
                .map_err(|e| e.to_string())
        }
    };
    let transcript = read(
        &as_acme,
        format!("callbridge://calls/{acme_call}/transcript"),
    )
    .await
    .unwrap();
    assert!(transcript.contains("acme secret words"), "{transcript}");
    let calls = read(&as_globex, "callbridge://calls".into()).await.unwrap();
    assert!(
        calls.contains(&globex_call) && !calls.contains(&acme_call),
        "{calls}"
    );
    for (client, other_call) in [(&as_acme, &globex_call), (&as_globex, &acme_call)] {
        let err = read(
            client,
            format!("callbridge://calls/{other_call}/transcript"),
        )
        .await
        .unwrap_err();
        assert!(err.contains("not found"), "{err}");
        assert!(!err.contains("secret words"), "{err}");
    }

    // A tenant key cannot name another tenant, an unknown tenant is the same answer, a wrong
    // key is refused, and the admin key must name a tenant.
    for (key, query) in [
        (acme_key.expose_secret(), "?tenant=globex"),
        (ADMIN_KEY, "?tenant=nobody"),
        ("cb_wrong_key", ""),
        (ADMIN_KEY, ""),
    ] {
        let err = connect(&bridge, key, query).await.err();
        assert!(err.is_some(), "{query} connected");
    }

    // A session opened by one tenant cannot be used with another tenant's key.
    let session = session_of(&bridge, acme_key.expose_secret()).await;
    let status = raw_tools_list(&bridge, globex_key.expose_secret(), &session).await;
    assert!(!status.contains("book_appointment"), "{status}");
    assert!(status.contains("another tenant"), "{status}");

    // The same tools/call request sent twice on one session (a client's retry) books once: the
    // ledger knows it by session and request id, as it knows a model's repeated tool call.
    let session = session_of(&bridge, acme_key.expose_secret()).await;
    let retry = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
        "params": {"name": "book_appointment", "arguments": booking_arguments()}});
    let before = bookings().await;
    for _ in 0..2 {
        let answer = raw_request(&bridge, acme_key.expose_secret(), &session, &retry).await;
        assert!(answer.contains("bk-9"), "{answer}");
    }
    assert_eq!(bookings().await, before + 1);
}

/// Opens a session with a raw `initialize` and returns its `Mcp-Session-Id`.
async fn session_of(bridge: &TestBridge, key: &str) -> String {
    let client = reqwest_client();
    let response = client
        .post(format!("{}/mcp", bridge.public_url))
        .bearer_auth(key)
        .header("accept", "application/json, text/event-stream")
        .json(
            &json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {},
            "clientInfo": {"name": "raw", "version": "1"}}}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let session = response.headers()["mcp-session-id"]
        .to_str()
        .unwrap()
        .to_owned();
    client
        .post(format!("{}/mcp", bridge.public_url))
        .bearer_auth(key)
        .header("accept", "application/json, text/event-stream")
        .header("mcp-session-id", &session)
        .header("mcp-protocol-version", "2025-06-18")
        .json(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
        .send()
        .await
        .unwrap();
    session
}

/// `tools/list` on `session` with `key`; the whole answer body.
async fn raw_tools_list(bridge: &TestBridge, key: &str, session: &str) -> String {
    raw_request(
        bridge,
        key,
        session,
        &json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}),
    )
    .await
}

/// One JSON-RPC request (id 2) on `session` with `key`; the answer's SSE body.
async fn raw_request(bridge: &TestBridge, key: &str, session: &str, body: &Value) -> String {
    let response = reqwest_client()
        .post(format!("{}/mcp", bridge.public_url))
        .bearer_auth(key)
        .header("accept", "application/json, text/event-stream")
        .header("mcp-session-id", session)
        .header("mcp-protocol-version", "2025-06-18")
        .json(body)
        .send()
        .await
        .unwrap();
    let mut body = String::new();
    let mut response = response;
    // The answer is one SSE event; the stream stays open, so read until it arrived.
    while let Ok(Ok(Some(chunk))) =
        tokio::time::timeout(std::time::Duration::from_secs(5), response.chunk()).await
    {
        body.push_str(&String::from_utf8_lossy(&chunk));
        if body.contains("\"id\":2") {
            break;
        }
    }
    body
}

fn reqwest_client() -> reqwest::Client {
    callbridge::egress::install_tls_provider();
    reqwest::Client::builder().build().unwrap()
}
