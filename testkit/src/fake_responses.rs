//! A fake OpenAI Responses API (`POST /v1/responses`) on 127.0.0.1 for post-call analysis tests.
//!
//! Each request is checked against the request shape callbridge relies on, as the Responses API
//! documents it: a bearer key, `model`, `instructions` and `input` strings, `store`, and
//! `text.format` `{type: "json_schema", name (^[a-zA-Z0-9_-]{1,64}$), schema (an object), strict}`;
//! any other top-level field, a missing one or a wrong type is recorded as a violation and answered
//! 400. Answers are scripted per request: an output text in a completed `message` item, or an
//! HTTP error. Nothing here is part of the product.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};

/// One scripted answer.
#[derive(Debug, Clone)]
pub enum Reply {
    /// A completed response whose output text is this.
    Text(String),
    /// An HTTP error with an OpenAI error body.
    Status(u16),
}

#[derive(Default)]
struct State_ {
    replies: VecDeque<Reply>,
    requests: Vec<Value>,
    violations: Vec<String>,
}

/// The running fake. Dropping it stops the server.
pub struct FakeResponses {
    pub addr: SocketAddr,
    /// The base URL to configure (`…/v1`).
    pub base_url: String,
    state: Arc<Mutex<State_>>,
    key: String,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeResponses {
    fn drop(&mut self) {
        self.task.abort();
    }
}

const ALLOWED: &[&str] = &["model", "instructions", "input", "store", "text"];

fn check(body: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let Some(object) = body.as_object() else {
        return vec!["body is not a JSON object".into()];
    };
    for key in object.keys() {
        if !ALLOWED.contains(&key.as_str()) {
            problems.push(format!("unexpected field {key}"));
        }
    }
    for key in ["model", "instructions", "input"] {
        if !body[key].is_string() {
            problems.push(format!("{key} must be a string"));
        }
    }
    if !body["store"].is_boolean() {
        problems.push("store must be a boolean".into());
    }
    let format = &body["text"]["format"];
    if format["type"] != "json_schema" {
        problems.push("text.format.type must be json_schema".into());
    }
    let name_ok = format["name"].as_str().is_some_and(|n| {
        !n.is_empty()
            && n.len() <= 64
            && n.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    });
    if !name_ok {
        problems.push("text.format.name must match ^[a-zA-Z0-9_-]{1,64}$".into());
    }
    if !format["schema"].is_object() {
        problems.push("text.format.schema must be an object".into());
    }
    if !format["strict"].is_boolean() && !format["strict"].is_null() {
        problems.push("text.format.strict must be a boolean".into());
    }
    problems
}

async fn respond(
    State((state, key)): State<(Arc<Mutex<State_>>, String)>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let mut s = state
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let authorised = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == format!("Bearer {key}"));
    if !authorised {
        s.violations.push("missing or wrong bearer key".into());
        return (
            StatusCode::UNAUTHORIZED,
            axum::Json(
                json!({"error": {"message": "Incorrect API key", "type": "invalid_request_error"}}),
            ),
        )
            .into_response();
    }
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        s.violations.push("body is not JSON".into());
        return StatusCode::BAD_REQUEST.into_response();
    };
    let problems = check(&body);
    s.requests.push(body.clone());
    if !problems.is_empty() {
        s.violations.extend(problems.iter().cloned());
        return (
            StatusCode::BAD_REQUEST,
            axum::Json(
                json!({"error": {"message": problems.join("; "), "type": "invalid_request_error"}}),
            ),
        )
            .into_response();
    }
    match s.replies.pop_front() {
        Some(Reply::Text(text)) => axum::Json(json!({
            "id": format!("resp_{}", s.requests.len()),
            "object": "response",
            "status": "completed",
            "model": body["model"],
            "output": [{
                "type": "message",
                "id": format!("msg_{}", s.requests.len()),
                "status": "completed",
                "role": "assistant",
                "content": [{"type": "output_text", "text": text, "annotations": []}],
            }],
        }))
        .into_response(),
        Some(Reply::Status(code)) => (
            StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            axum::Json(
                json!({"error": {"message": "The server had an error", "type": "server_error"}}),
            ),
        )
            .into_response(),
        None => {
            s.violations
                .push("a request nobody scripted an answer for".into());
            StatusCode::SERVICE_UNAVAILABLE.into_response()
        }
    }
}

impl FakeResponses {
    /// Starts the fake accepting `key` as the bearer key.
    pub async fn start(key: &str) -> anyhow::Result<Self> {
        let state = Arc::new(Mutex::new(State_::default()));
        let app = Router::new()
            .route("/v1/responses", post(respond))
            .with_state((state.clone(), key.to_owned()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self {
            addr,
            base_url: format!("http://{addr}/v1"),
            state,
            key: key.to_owned(),
            task,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State_> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Queues answers for the next requests, in order.
    pub fn script(&self, replies: impl IntoIterator<Item = Reply>) {
        self.lock().replies.extend(replies);
    }

    /// Every request body received.
    pub fn requests(&self) -> Vec<Value> {
        self.lock().requests.clone()
    }

    pub fn violations(&self) -> Vec<String> {
        self.lock().violations.clone()
    }

    /// The bearer key it accepts.
    pub fn key(&self) -> &str {
        &self.key
    }
}
