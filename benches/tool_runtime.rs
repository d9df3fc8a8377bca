//! The tool runtime's own overhead, from the provider's `response.function_call_arguments.done`
//! text to the JSON output handed back to the model:
//! - `in_process/*`: decode the event, `ToolRegistry::run`, argument validation, ledger, result
//!   trimming and output JSON, with the vendor call replaced by an in-bench stub (a trivial
//!   `Tool`, or a `Calendar` answering from memory);
//! - `local_mock/*/until_request_arrives`: from the event text until a local vendor mock that
//!   answers instantly has read the whole request (policy, connector request building, reqwest and
//!   loopback transit included);
//! - `local_mock/*/response_to_output`: from that moment until the output JSON is ready (response
//!   written and read, vendor JSON mapped, tool result built).
//!
//! Run: `cargo bench --bench tool_runtime`.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::runtime::Runtime;
use tokio::sync::mpsc;

use callbridge::connectors::calcom::{Calcom, CalcomConfig};
use callbridge::connectors::http::{HttpPolicy, PolicyConfig, RequestContext};
use callbridge::connectors::{
    Attendee, Booking, BookingStatus, Calendar, ConnectorError, Slot, TimeWindow,
};
use callbridge::egress::EgressPolicy;
use callbridge::realtime::openai::OpenAiDialect;
use callbridge::realtime::{Dialect, LlmEvent, ToolDeclaration};
use callbridge::tools::capabilities::{BookAppointment, CapabilityEnv, CheckAvailability};
use callbridge::tools::ledger::InMemoryLedger;
use callbridge::tools::{Tool, ToolContext, ToolError, ToolFuture, ToolRegistry};

const SLOTS: &str = include_str!("../fixtures/vendors/calcom/slots_range.json");
const BOOKING: &str = include_str!("../fixtures/vendors/calcom/booking.json");

const AVAILABILITY_EVENT: &str = r#"{"type":"response.function_call_arguments.done","response_id":"resp_1","item_id":"item_1","output_index":0,"call_id":"call_1","name":"check_availability","arguments":"{\"date\":\"2050-09-05\",\"days\":2,\"duration_minutes\":60}"}"#;
const BOOK_EVENT: &str = r#"{"type":"response.function_call_arguments.done","response_id":"resp_1","item_id":"item_1","output_index":0,"call_id":"call_1","name":"book_appointment","arguments":"{\"start\":\"2050-09-05T14:00:00Z\",\"name\":\"Ann Lee\",\"email\":\"ann@example.com\"}"}"#;
const ECHO_EVENT: &str = r#"{"type":"response.function_call_arguments.done","response_id":"resp_1","item_id":"item_1","output_index":0,"call_id":"call_1","name":"echo","arguments":"{\"department\":\"sales\",\"note\":\"caller wants a quote\"}"}"#;

/// The trivial tool: hands its arguments back.
struct Echo;

impl Tool for Echo {
    fn declaration(&self) -> ToolDeclaration {
        ToolDeclaration {
            name: "echo".into(),
            description: "echoes".into(),
            parameters: json!({"type": "object"}),
        }
    }
    fn invoke(&self, _context: ToolContext, arguments: Value) -> ToolFuture {
        Box::pin(async move { Ok::<_, ToolError>(arguments) })
    }
}

/// A calendar answering from memory: what the capability layer costs without a vendor.
struct MemoryCalendar {
    slots: Vec<Slot>,
}

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .map(|at| at.with_timezone(&Utc))
        .unwrap_or_default()
}

#[async_trait]
impl Calendar for MemoryCalendar {
    async fn availability(
        &self,
        _ctx: &RequestContext,
        _window: TimeWindow,
        _duration: chrono::Duration,
        zone: Tz,
    ) -> Result<Vec<Slot>, ConnectorError> {
        Ok(self
            .slots
            .iter()
            .map(|slot| Slot { zone, ..*slot })
            .collect())
    }
    async fn book(
        &self,
        _ctx: &RequestContext,
        slot: &Slot,
        _attendee: &Attendee,
        idempotency_key: &str,
    ) -> Result<Booking, ConnectorError> {
        Ok(Booking {
            id: idempotency_key.to_owned(),
            slot: *slot,
            status: BookingStatus::Confirmed,
            link: None,
        })
    }
    async fn reschedule(
        &self,
        _ctx: &RequestContext,
        _booking_id: &str,
        new_slot: &Slot,
        idempotency_key: &str,
    ) -> Result<Booking, ConnectorError> {
        Ok(Booking {
            id: idempotency_key.to_owned(),
            slot: *new_slot,
            status: BookingStatus::Confirmed,
            link: None,
        })
    }
    async fn cancel(
        &self,
        _ctx: &RequestContext,
        _booking_id: &str,
        _reason: Option<&str>,
    ) -> Result<(), ConnectorError> {
        Ok(())
    }
    async fn health_check(&self, _ctx: &RequestContext) -> Result<(), ConnectorError> {
        Ok(())
    }
}

/// A vendor mock that answers every request at once and reports when each request was read.
async fn instant_vendor() -> (String, mpsc::UnboundedReceiver<Instant>) {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let address = listener.local_addr().expect("address");
    let (arrivals, received) = mpsc::unbounded_channel();
    let mut booking: Value = serde_json::from_str(BOOKING).expect("fixture");
    booking["data"]["start"] = json!("2050-09-05T14:00:00.000Z");
    booking["data"]["end"] = json!("2050-09-05T14:30:00.000Z");
    let booking = Arc::new(booking.to_string());
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let arrivals = arrivals.clone();
            let booking = Arc::clone(&booking);
            tokio::spawn(async move {
                let (read, mut write) = socket.into_split();
                let mut reader = BufReader::new(read);
                loop {
                    let mut request_line = String::new();
                    if reader.read_line(&mut request_line).await.unwrap_or(0) == 0 {
                        return;
                    }
                    let mut length = 0usize;
                    loop {
                        let mut line = String::new();
                        if reader.read_line(&mut line).await.unwrap_or(0) == 0 {
                            return;
                        }
                        let line = line.trim_end();
                        if line.is_empty() {
                            break;
                        }
                        if let Some((name, value)) = line.split_once(':')
                            && name.eq_ignore_ascii_case("content-length")
                        {
                            length = value.trim().parse().unwrap_or(0);
                        }
                    }
                    let mut body = vec![0; length];
                    if reader.read_exact(&mut body).await.is_err() {
                        return;
                    }
                    let _ = arrivals.send(Instant::now());
                    let (status, answer) = if request_line.starts_with("GET /v2/slots") {
                        ("200 OK", SLOTS)
                    } else {
                        ("201 Created", booking.as_str())
                    };
                    let response = format!(
                        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{answer}",
                        answer.len()
                    );
                    if write.write_all(response.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (format!("http://{address}/"), received)
}

fn env(ledger_retention: Duration) -> Arc<CapabilityEnv> {
    Arc::new(CapabilityEnv {
        tenant: Arc::from("acme-dental"),
        business_zone: chrono_tz::America::New_York,
        ledger: Arc::new(InMemoryLedger::new(ledger_retention)),
        coupon_slots: None,
        deadline: Duration::from_secs(5),
    })
}

/// A registry with its own empty ledger: each iteration measures a fresh side effect on a quiet
/// node, not a scan of every earlier iteration's entries.
fn registry_over(calendar: &Arc<dyn Calendar>) -> ToolRegistry {
    let calendar = Arc::clone(calendar);
    let env = env(Duration::from_secs(2 * 60 * 60));
    let mut registry = ToolRegistry::new(Duration::from_secs(5));
    registry.register(Arc::new(CheckAvailability {
        calendar: Arc::clone(&calendar),
        env: Arc::clone(&env),
    }));
    registry.register(Arc::new(BookAppointment {
        calendar,
        crm: None,
        env,
    }));
    registry.register(Arc::new(Echo));
    registry
}

/// Decode the provider event and run the tool it names, as the call driver does.
async fn dispatch(
    dialect: &OpenAiDialect,
    registry: &ToolRegistry,
    event: &str,
    call_sid: String,
) -> String {
    let Ok(Some(LlmEvent::ToolCall {
        call_id,
        name,
        arguments,
        ..
    })) = dialect.decode(event)
    else {
        panic!("the bench event decodes to a tool call");
    };
    let context = ToolContext {
        call_sid,
        caller: "+14155550100".into(),
        called: "+12025550101".into(),
        tool_call_id: call_id,
        call_started: None,
        inbound: None,
    };
    let (output, label) = registry.run(context, &name, &arguments).await;
    assert_eq!(label, "ok", "{output}");
    output
}

/// The event as a new tool call of a new phone call, so every booking is a fresh side effect
/// rather than a ledger hit (prepared outside the measured time).
fn fresh_call(event: &str, calls: &mut u64) -> (String, String) {
    *calls += 1;
    (
        event.replace("\"call_1\"", &format!("\"call_{calls}\"")),
        format!("CA{calls}"),
    )
}

fn tool_runtime(c: &mut Criterion) {
    let runtime = Runtime::new().expect("tokio runtime");
    let dialect = OpenAiDialect::new("ws://127.0.0.1:9/", "gpt-realtime", "sk-bench");
    let memory_slots: Vec<Slot> = (0..8)
        .map(|hour| {
            let start = at("2050-09-05T13:00:00Z") + chrono::Duration::hours(hour);
            Slot {
                start,
                end: start + chrono::Duration::minutes(60),
                zone: chrono_tz::UTC,
            }
        })
        .collect();
    let in_memory: Arc<dyn Calendar> = Arc::new(MemoryCalendar {
        slots: memory_slots,
    });

    let (base_url, mut arrivals) = runtime.block_on(instant_vendor());
    let policy = HttpPolicy::new(PolicyConfig {
        egress: EgressPolicy::allow_loopback(),
        ..PolicyConfig::default()
    })
    .expect("policy");
    let calcom = Calcom::new(
        policy,
        CalcomConfig {
            base_url: base_url.parse().expect("url"),
            api_key: secrecy::SecretString::from("cal_live_bench_key"),
            event_type_id: 100,
            max_slots: 8,
        },
    );
    let over_http: Arc<dyn Calendar> = Arc::new(calcom);

    let mut group = c.benchmark_group("tool_runtime");
    group.measurement_time(Duration::from_secs(4));

    let mut calls: u64 = 0;
    for (label, event) in [
        ("in_process/stub_tool", ECHO_EVENT),
        ("in_process/check_availability", AVAILABILITY_EVENT),
        ("in_process/book_appointment_with_ledger", BOOK_EVENT),
    ] {
        group.bench_function(label, |b| {
            b.iter_custom(|iters| {
                runtime.block_on(async {
                    let mut measured = Duration::ZERO;
                    for _ in 0..iters {
                        let (event, call_sid) = fresh_call(event, &mut calls);
                        let registry = registry_over(&in_memory);
                        let started = Instant::now();
                        let output = dispatch(&dialect, &registry, &event, call_sid).await;
                        measured += started.elapsed();
                        black_box(output);
                    }
                    measured
                })
            })
        });
    }

    for (name, event) in [
        ("check_availability", AVAILABILITY_EVENT),
        ("book_appointment", BOOK_EVENT),
    ] {
        for half in ["until_request_arrives", "response_to_output"] {
            group.bench_function(format!("local_mock/{name}/{half}"), |b| {
                b.iter_custom(|iters| {
                    runtime.block_on(async {
                        let mut measured = Duration::ZERO;
                        for _ in 0..iters {
                            let (event, call_sid) = fresh_call(event, &mut calls);
                            let registry = registry_over(&over_http);
                            let started = Instant::now();
                            let output = dispatch(&dialect, &registry, &event, call_sid).await;
                            let finished = Instant::now();
                            black_box(output);
                            let arrived = arrivals.try_recv().expect("the vendor saw the request");
                            measured += match half {
                                "until_request_arrives" => arrived - started,
                                _ => finished - arrived,
                            };
                        }
                        measured
                    })
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, tool_runtime);
criterion_main!(benches);
