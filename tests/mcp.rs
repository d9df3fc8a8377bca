//! MCP (issue 18), against the SDK's real client and server on 127.0.0.1: the bridge's `/mcp`
//! serves each tenant exactly its own tools and calls (an isolation matrix over keys, tools and
//! call resources), and runs a tool through the same runtime as a phone call (the tenant's
//! connector, reached by the real connector code on a loopback mock, and the ledger).

use std::sync::Arc;

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
    // Every calendar tool (the table's, whatever it holds) and the time built-in; nothing else.
    let mut calendar: Vec<String> = callbridge::tools::capabilities::TOOLS
        .iter()
        .filter(|spec| spec.capability == callbridge::tools::capabilities::Capability::Calendar)
        .map(|spec| spec.name.to_owned())
        .chain(["get_current_time".to_owned()])
        .collect();
    calendar.sort();
    assert!(calendar.contains(&"book_appointment".to_owned()));
    assert_eq!(acme_tools, calendar);
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

// --- the client: an agent's own MCP servers, used mid-call ---------------------------------------

mod remote {
    //! A business's MCP server, built with the SDK's own server on 127.0.0.1, and one that
    //! accepts connections but never answers.

    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};

    use rmcp::model::{
        CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, ListToolsResult,
        PaginatedRequestParams, ServerCapabilities, ServerConfig, Tool,
    };
    use rmcp::service::RequestContext;
    use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
    use rmcp::transport::streamable_http_server::{
        StreamableHttpServerConfig, StreamableHttpService,
    };
    use rmcp::{ErrorData, RoleServer, ServerHandler};
    use serde_json::json;

    pub const API_KEY: &str = "shop-mcp-key-123";

    #[derive(Clone, Default)]
    pub struct Shop {
        pub refunds: Arc<AtomicUsize>,
        pub idempotency_keys: Arc<Mutex<Vec<String>>>,
    }

    fn tool(name: &'static str, description: &'static str) -> Tool {
        let schema = json!({"type": "object", "properties": {"order_id": {"type": "string"}}});
        Tool::new(
            name,
            description,
            Arc::new(schema.as_object().unwrap().clone()),
        )
    }

    impl ServerHandler for Shop {
        fn get_info(&self) -> ServerConfig {
            ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
        }

        async fn list_tools(
            &self,
            _request: Option<PaginatedRequestParams>,
            _context: RequestContext<RoleServer>,
        ) -> Result<ListToolsResult, ErrorData> {
            Ok(ListToolsResult::with_all_items(vec![
                tool("lookup_order", "Where an order is"),
                tool("refund", "Refund an order"),
                tool("broken", "Always fails"),
                tool("stall", "Never answers"),
                tool("wipe", "Deletes every order"),
            ]))
        }

        async fn call_tool(
            &self,
            request: CallToolRequestParams,
            context: RequestContext<RoleServer>,
        ) -> Result<CallToolResponse, ErrorData> {
            let order = request
                .arguments
                .as_ref()
                .and_then(|a| a.get("order_id"))
                .cloned()
                .unwrap_or_default();
            match request.name.as_ref() {
                "lookup_order" => {
                    let mut result = CallToolResult::success(vec![ContentBlock::text("shipped")]);
                    result.structured_content =
                        Some(json!({"order_id": order, "status": "shipped"}));
                    Ok(result.into())
                }
                "refund" => {
                    self.refunds.fetch_add(1, Ordering::SeqCst);
                    let key = request
                        .meta
                        .as_ref()
                        .and_then(|m| m.0.0.get("io.callbridge/idempotency-key"))
                        .or_else(|| context.meta.0.0.get("io.callbridge/idempotency-key"))
                        .and_then(|v| v.as_str())
                        .unwrap_or_default()
                        .to_owned();
                    self.idempotency_keys.lock().unwrap().push(key);
                    Ok(CallToolResult::success(vec![ContentBlock::text(
                        json!({"refunded": order}).to_string(),
                    )])
                    .into())
                }
                "broken" => Ok(CallToolResult::error(vec![ContentBlock::text(
                    "inventory database offline",
                )])
                .into()),
                "stall" => {
                    std::future::pending::<()>().await;
                    Err(ErrorData::internal_error("unreachable", None))
                }
                _ => Err(ErrorData::invalid_params("no such tool", None)),
            }
        }
    }

    /// Serves `shop` at `http://127.0.0.1:PORT/mcp`, answering 401 without its API key.
    pub async fn serve(shop: Shop) -> String {
        let service = StreamableHttpService::new(
            move || Ok(shop.clone()),
            Arc::new(LocalSessionManager::default()),
            StreamableHttpServerConfig::default(),
        );
        let router =
            axum::Router::new()
                .nest_service("/mcp", service)
                .layer(axum::middleware::from_fn(
                    |request: axum::extract::Request, next: axum::middleware::Next| async move {
                        let key = request
                            .headers()
                            .get("x-api-key")
                            .and_then(|v| v.to_str().ok());
                        if key != Some(API_KEY) {
                            return axum::http::StatusCode::UNAUTHORIZED.into_response();
                        }
                        next.run(request).await
                    },
                ));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
        format!("http://{addr}/mcp")
    }

    use axum::response::IntoResponse;

    /// A server that accepts connections and never says anything.
    pub async fn silent() -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                held.push(socket);
            }
        });
        format!("http://{addr}/mcp")
    }
}

async fn put_servers(bridge: &TestBridge, agent: &str, body: Value) -> (u16, Value) {
    let response = reqwest_client()
        .put(format!(
            "{}/api/v1/tenants/acme/agents/{agent}/mcp-servers",
            bridge.public_url
        ))
        .bearer_auth(ADMIN_KEY)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn an_agents_remote_mcp_tools_are_called_mid_call_and_broken_servers_are_skipped() {
    use callbridge_testkit::fake_realtime::Turn;
    use callbridge_testkit::fake_twilio::CallScript;
    use std::sync::atomic::Ordering;
    use std::time::{Duration, Instant};

    let shop = remote::Shop::default();
    let shop_url = remote::serve(shop.clone()).await;
    let silent_url = remote::silent().await;
    let order = json!({"order_id": "A-1"});
    let realtime = FakeRealtime::start(Behaviour {
        script: vec![
            Turn::CallTools(vec![
                ("shop__lookup_order".into(), order.clone()),
                ("shop__refund".into(), order.clone()),
                ("shop__refund".into(), order.clone()),
                ("shop__broken".into(), order.clone()),
                ("shop__wipe".into(), order.clone()),
                ("shop__stall".into(), order.clone()),
            ]),
            Turn::Say {
                ms: 200,
                byte: 0x31,
                text: "Your order has shipped.".into(),
            },
        ],
        ..Behaviour::default()
    })
    .await;
    let bridge = TestBridge::start(&realtime.url(), |a| {
        a.admin_key = Some(ADMIN_KEY.into());
        a.tool_timeout_ms = Some(1_000);
    })
    .await;
    let tenant = callbridge_testkit::provision_agent(
        &bridge.store,
        "acme",
        agent_spec("openai", "gpt-realtime", "alloy"),
    )
    .await;
    let agent = bridge.store.list_agents(&tenant).await.unwrap()[0]
        .id
        .clone();
    bridge
        .vault()
        .put(
            &tenant,
            "shop-mcp",
            "mcp",
            &SecretString::from(remote::API_KEY),
        )
        .await
        .unwrap();

    bridge
        .vault()
        .put(
            &tenant,
            "stale-key",
            "mcp",
            &SecretString::from("revoked-key-value"),
        )
        .await
        .unwrap();

    // Written through the API: an internal address is refused by the egress guard (the bridge
    // allows loopback only), an unknown secret is refused, then the real list is stored.
    let server = |name: &str, url: &str| {
        json!({"name": name, "url": url, "header_name": "X-Api-Key", "secret_name": "shop-mcp",
               "allowed_tools": ["lookup_order", "refund", "broken", "stall"],
               "side_effect_tools": ["refund"]})
    };
    let (status, body) = put_servers(
        &bridge,
        &agent,
        json!({"servers": [server("lan", "http://10.1.2.3/mcp")]}),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(body.to_string().contains("egress"), "{body}");
    let mut unknown_secret = server("shop", &shop_url);
    unknown_secret["secret_name"] = json!("nope");
    let (status, body) = put_servers(&bridge, &agent, json!({"servers": [unknown_secret]})).await;
    assert_eq!(status, 400, "{body}");
    // The same server with a credential it refuses: its handshake fails (401).
    let mut locked = server("locked", &shop_url);
    locked["secret_name"] = json!("stale-key");
    let (status, body) = put_servers(
        &bridge,
        &agent,
        json!({"servers": [server("shop", &shop_url), server("slow", &silent_url), locked]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["servers"][0]["allowed_tools"][0], "lookup_order");

    let started = Instant::now();
    let report = bridge
        .twilio()
        .call(
            "CA20000000000000000000000000000018",
            CallScript {
                hang_up_after_ms: Some(7_000),
                max_ms: 15_000,
                ..CallScript::default()
            },
        )
        .await
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(14));
    // The call started although one server never answered, and the model's answer was spoken.
    assert!(
        report.played.iter().any(|(_, b)| *b == 0x31),
        "the answer was spoken"
    );
    assert_eq!(bridge.metrics.errors_of("mcp_server_unavailable"), 2);

    let log = &realtime.recorder.sessions()[0];
    let update = log
        .received
        .iter()
        .find(|e| e["type"] == "session.update")
        .unwrap();
    let offered: Vec<&str> = update["session"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    for name in [
        "shop__lookup_order",
        "shop__refund",
        "shop__broken",
        "shop__stall",
    ] {
        assert!(offered.contains(&name), "{name} in {offered:?}");
    }
    // Not allowed by the agent, or from the server that never answered: not offered.
    assert!(
        !offered
            .iter()
            .any(|n| *n == "shop__wipe" || n.starts_with("slow__") || n.starts_with("locked__")),
        "{offered:?}"
    );
    let lookup = update["session"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "shop__lookup_order")
        .unwrap();
    assert_eq!(
        lookup["parameters"]["properties"]["order_id"]["type"],
        "string"
    );

    let outputs: Vec<Value> = log
        .received
        .iter()
        .filter(|e| e["item"]["type"] == "function_call_output")
        .map(|e| serde_json::from_str(e["item"]["output"].as_str().unwrap()).unwrap())
        .collect();
    assert_eq!(outputs.len(), 6, "{outputs:?}");
    let by_code = |code: &str| {
        outputs
            .iter()
            .filter(|o| o["error"]["code"] == code)
            .count()
    };
    assert!(
        outputs
            .iter()
            .any(|o| o["ok"] == true && o["result"]["status"] == "shipped"),
        "{outputs:?}"
    );
    // The side-effecting tool asked twice with the same arguments ran once, with the ledger's key.
    assert_eq!(
        outputs
            .iter()
            .filter(|o| o["ok"] == true && o["result"]["refunded"] == "A-1")
            .count(),
        2,
        "{outputs:?}"
    );
    assert_eq!(shop.refunds.load(Ordering::SeqCst), 1);
    let keys = shop.idempotency_keys.lock().unwrap().clone();
    assert!(keys.len() == 1 && !keys[0].is_empty(), "{keys:?}");
    // The server's error is a failure the model can speak about; the hanging tool hit the deadline.
    assert!(
        outputs.iter().any(|o| o["error"]["code"] == "failed"
            && o["error"]["message"]
                .as_str()
                .unwrap()
                .contains("inventory database offline")),
        "{outputs:?}"
    );
    assert_eq!(by_code("timeout"), 1, "{outputs:?}");
    assert_eq!(by_code("unknown_tool"), 1, "{outputs:?}");

    // The skipped servers are in the call's events, with why.
    let call = callbridge_testkit::ended_call(&bridge.store, &tenant).await;
    let events = bridge.store.call_events(&tenant, &call.id).await.unwrap();
    let skipped: Vec<&Value> = events
        .iter()
        .filter(|e| e.kind == CallEventKind::Error)
        .map(|e| &e.payload)
        .collect();
    assert_eq!(skipped.len(), 2, "{skipped:?}");
    assert!(
        skipped
            .iter()
            .any(|p| p["mcp_server"] == "slow"
                && p["reason"].as_str().unwrap().contains("no answer")),
        "{skipped:?}"
    );
    assert!(!format!("{skipped:?}").contains("revoked-key-value"));

    // doctor: each server's tools, or why not.
    let runtime = callbridge::tools::invoke::ToolRuntime {
        store: bridge.store.clone(),
        keyring: Some(bridge.keyring.clone()),
        policy: callbridge_testkit::loopback_policy(),
        ledger: Arc::new(callbridge::tools::ledger::InMemoryLedger::default()),
        deadline: Duration::from_secs(1),
        oauth: None,
    };
    let rows = callbridge::mcp::doctor::check_mcp_servers(&runtime, Some(&tenant))
        .await
        .unwrap();
    let table = callbridge::mcp::doctor::format_mcp(&rows);
    assert!(
        table.contains("acme/front-desk/shop  ok     tools: shop__lookup_order, shop__refund, shop__broken, shop__stall; not offered: wipe"),
        "{table}"
    );
    assert!(
        table.contains("acme/front-desk/slow  error  no answer within"),
        "{table}"
    );
    assert!(
        table.contains("acme/front-desk/locked  error  the server refused"),
        "{table}"
    );
    assert!(
        !table.contains("revoked-key-value") && !table.contains(remote::API_KEY),
        "{table}"
    );
}

#[tokio::test]
async fn the_cli_prints_what_the_mcp_endpoint_lists_and_checks_the_agents_servers() {
    use callbridge::tenant::vault::{Keyring, MasterKey, Vault};
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}?mode=rwc", dir.path().join("cb.db").display());
    let key = MasterKey::generate();
    let key_b64 = key.to_base64().expose_secret().to_owned();
    let store = SqlStore::open(&db).await.unwrap();
    let vault = Vault::new(store.clone(), Keyring::new(key));
    let (acme, _) = tenant_with_call(&store, "acme", "hello").await;
    vault
        .put(
            &acme,
            "cal",
            "calcom",
            &SecretString::from(r#"{"api_key": "cal_live_test_key", "event_type_id": 100}"#),
        )
        .await
        .unwrap();
    store
        .put_connector(
            &acme,
            &ConnectorSpec {
                vendor: "calcom".into(),
                base_url: Some("http://127.0.0.1:9/".into()),
                secret_name: Some("cal".into()),
            },
        )
        .await
        .unwrap();
    let agent = store.list_agents(&acme).await.unwrap()[0].id.clone();
    let silent = remote::silent().await;
    store
        .put_mcp_servers(
            &acme,
            &agent,
            &[callbridge::store::McpServerSpec {
                name: "slow".into(),
                url: silent,
                header_name: None,
                secret_name: None,
                allowed_tools: vec!["anything".into()],
                side_effect_tools: vec![],
            }],
        )
        .await
        .unwrap();
    store.close().await;
    let cli = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_callbridge"))
            .env_clear()
            .env("DATABASE_URL", &db)
            .env(
                "CALLBRIDGE_EGRESS_ALLOW",
                callbridge_testkit::LOOPBACK_EGRESS,
            )
            .env("CALLBRIDGE_MASTER_KEY", &key_b64)
            .args(args)
            .output()
            .unwrap()
    };

    let out = cli(&["mcp", "tools", "--tenant", "acme", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tools: Value = serde_json::from_slice(&out.stdout).unwrap();
    let names: Vec<&str> = tools
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"book_appointment") && names.contains(&"get_current_time"),
        "{names:?}"
    );
    assert!(!names.contains(&"order_status"), "{names:?}");
    assert_eq!(tools[0]["inputSchema"]["type"], "object");

    let out = cli(&["mcp", "servers", "--tenant", "acme"]);
    assert!(!out.status.success());
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("acme/front-desk/slow  error  no answer within"),
        "{table}"
    );
}
