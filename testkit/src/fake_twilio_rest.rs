//! A fake Twilio REST API on 127.0.0.1 for outbound-call tests and the dispatch benchmark:
//! `CreateCall`, `ListCall`, `FetchCall` and `UpdateCall` on
//! `/2010-04-01/Accounts/{AccountSid}/Calls…`.
//!
//! For campaign tests it can also lose the answer to a `CreateCall` it did carry out (a 2xx with
//! a cut-off body), delay its answers (so a process killed mid-request leaves a placed call whose
//! SID it never learned), and end every call by itself after a delay with a scripted status per
//! number, posting the status callback and reporting that status to `FetchCall`.
//!
//! Every request is checked against the request schema of its operation in an OpenAPI document
//! loaded at start (the Calls subset of Twilio's spec in `fixtures/vendors/twilio/`): unknown
//! fields, missing required fields, repeated non-array fields, bad enum values and non-integers
//! answer 400 and are recorded as violations, so a test can assert that none happened. Answers are
//! Call resources carrying every property of the spec's `api.v2010.account.call` schema. It can post
//! signed status callbacks back to the bridge. Nothing here is part of the product.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine;
use serde_json::{Value, json};

const CALLS_PATH: &str = "/2010-04-01/Accounts/{AccountSid}/Calls.json";
const CALL_PATH: &str = "/2010-04-01/Accounts/{AccountSid}/Calls/{Sid}.json";

/// One request field schema: whether it repeats, its type and allowed values.
#[derive(Clone, Debug)]
struct FieldSchema {
    array: bool,
    integer: bool,
    allowed: Option<Vec<String>>,
}

/// The request schema of one operation, read from the spec.
#[derive(Clone, Debug, Default)]
pub struct OperationSchema {
    required: Vec<String>,
    fields: HashMap<String, FieldSchema>,
}

impl OperationSchema {
    /// The form schema of `path`'s POST in `spec` (Twilio's form-encoded operations).
    pub fn from_spec(spec: &Value, path: &str) -> anyhow::Result<Self> {
        let schema = &spec["paths"][path]["post"]["requestBody"]["content"]["application/x-www-form-urlencoded"]
            ["schema"];
        let properties = schema["properties"]
            .as_object()
            .ok_or_else(|| anyhow::anyhow!("spec has no request properties for {path}"))?;
        let mut fields = HashMap::new();
        for (name, property) in properties {
            let resolved = resolve(spec, property);
            let kind = resolved["type"].as_str().unwrap_or("string");
            let allowed = resolved["enum"].as_array().map(|values| {
                values
                    .iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            });
            fields.insert(
                name.clone(),
                FieldSchema {
                    array: kind == "array",
                    integer: kind == "integer",
                    allowed,
                },
            );
        }
        let required = schema["required"]
            .as_array()
            .map(|r| {
                r.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        Ok(Self { required, fields })
    }

    /// The violations of a form body against this schema (empty when valid).
    pub fn check(&self, form: &[(String, String)]) -> Vec<String> {
        let mut problems = Vec::new();
        let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
        for (key, value) in form {
            *seen.entry(key).or_default() += 1;
            let Some(field) = self.fields.get(key) else {
                problems.push(format!("unknown parameter {key}"));
                continue;
            };
            if field.integer && value.parse::<i64>().is_err() {
                problems.push(format!("{key}={value:?} is not an integer"));
            }
            if let Some(allowed) = &field.allowed
                && !allowed.contains(value)
            {
                problems.push(format!("{key}={value:?} is not one of {allowed:?}"));
            }
        }
        for (key, count) in &seen {
            if *count > 1 && self.fields.get(*key).is_some_and(|f| !f.array) {
                problems.push(format!("{key} repeated but is not an array"));
            }
        }
        for key in &self.required {
            if !seen.contains_key(key.as_str()) {
                problems.push(format!("missing required parameter {key}"));
            }
        }
        problems
    }
}

fn resolve<'a>(spec: &'a Value, schema: &'a Value) -> &'a Value {
    match schema["$ref"].as_str() {
        Some(reference) => {
            let pointer = reference.trim_start_matches('#');
            spec.pointer(pointer).unwrap_or(schema)
        }
        None => schema,
    }
}

/// A call the fake has accepted.
#[derive(Clone, Debug)]
pub struct FakeCall {
    pub sid: String,
    pub created: std::time::SystemTime,
    pub form: Vec<(String, String)>,
    pub status: String,
    pub updates: Vec<Vec<(String, String)>>,
}

impl FakeCall {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.form
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Default)]
struct FakeState {
    calls: Vec<FakeCall>,
    violations: Vec<String>,
    /// Canned error responses for the next CreateCall requests: (status, body, Retry-After).
    create_errors: Vec<(u16, String, Option<String>)>,
    /// CreateCall requests still to carry out but answer with an unreadable body.
    lose_answers: usize,
    create_delay: std::time::Duration,
    auto_end: Option<AutoEnd>,
    /// Notified when an UpdateCall redirects a call (new `Twiml` or `Url`).
    redirect_notify: Option<Arc<tokio::sync::Notify>>,
}

/// Calls end by themselves: after `after`, with the next scripted status for their `To` (or
/// `default`).
#[derive(Clone, Debug)]
struct AutoEnd {
    after: std::time::Duration,
    default: String,
    scripts: HashMap<String, std::collections::VecDeque<String>>,
}

struct Shared {
    account_sid: String,
    auth_token: String,
    create: OperationSchema,
    update: OperationSchema,
    /// Query parameter names `ListCall` accepts.
    list_parameters: Vec<String>,
    call_properties: Vec<String>,
    state: Mutex<FakeState>,
}

/// The running fake. Dropping it stops the server.
pub struct FakeTwilioRest {
    pub addr: SocketAddr,
    pub base_url: String,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeTwilioRest {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The Calls subset of Twilio's OpenAPI document shipped in `fixtures/`.
pub fn calls_spec() -> anyhow::Result<Value> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../fixtures/vendors/twilio/calls_openapi.json"
    );
    Ok(serde_json::from_str(&std::fs::read_to_string(path)?)?)
}

impl FakeTwilioRest {
    /// Starts the fake for `account_sid`/`auth_token`, validating against `spec`.
    pub async fn start(spec: &Value, account_sid: &str, auth_token: &str) -> anyhow::Result<Self> {
        let call_properties = spec["components"]["schemas"]["api.v2010.account.call"]["properties"]
            .as_object()
            .ok_or_else(|| anyhow::anyhow!("spec has no Call resource schema"))?
            .keys()
            .cloned()
            .collect();
        let shared = Arc::new(Shared {
            account_sid: account_sid.to_owned(),
            auth_token: auth_token.to_owned(),
            create: OperationSchema::from_spec(spec, CALLS_PATH)?,
            update: OperationSchema::from_spec(spec, CALL_PATH)?,
            list_parameters: spec["paths"][CALLS_PATH]["get"]["parameters"]
                .as_array()
                .ok_or_else(|| anyhow::anyhow!("spec has no ListCall parameters"))?
                .iter()
                .map(|p| resolve(spec, p))
                .filter(|p| p["in"] == "query")
                .filter_map(|p| p["name"].as_str().map(str::to_owned))
                .collect(),
            call_properties,
            state: Mutex::new(FakeState::default()),
        });
        let app = Router::new()
            .route(
                "/2010-04-01/Accounts/{account}/Calls.json",
                post(create_call).get(list_calls),
            )
            .route(
                "/2010-04-01/Accounts/{account}/Calls/{sid_json}",
                post(update_call).get(fetch_call),
            )
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self {
            addr,
            base_url: format!("http://{addr}"),
            shared,
            task,
        })
    }

    /// Calls accepted so far, in order.
    pub fn calls(&self) -> Vec<FakeCall> {
        self.lock().calls.clone()
    }

    /// Schema violations seen so far (each also answered 400).
    pub fn violations(&self) -> Vec<String> {
        self.lock().violations.clone()
    }

    /// The next CreateCall answers `status` with `body` (and an optional Retry-After).
    pub fn fail_next_create(&self, status: u16, body: &str, retry_after: Option<&str>) {
        self.lock()
            .create_errors
            .push((status, body.to_owned(), retry_after.map(str::to_owned)));
    }

    /// The next `n` CreateCall requests place the call but answer with a cut-off body.
    pub fn lose_next_answers(&self, n: usize) {
        self.lock().lose_answers = n;
    }

    /// Every CreateCall answer waits this long after the call is placed.
    pub fn set_create_delay(&self, delay: std::time::Duration) {
        self.lock().create_delay = delay;
    }

    /// Every call placed from now on ends by itself `after` its creation with `default` status
    /// (`completed`, `busy`, `no-answer`, `failed`), unless a script for its number says otherwise.
    pub fn auto_end(&self, after: std::time::Duration, default: &str) {
        let mut state = self.lock();
        let scripts = state.auto_end.take().map(|a| a.scripts).unwrap_or_default();
        state.auto_end = Some(AutoEnd {
            after,
            default: default.to_owned(),
            scripts,
        });
    }

    /// The statuses successive calls to `to` end with (needs [`FakeTwilioRest::auto_end`]).
    pub fn script_outcomes(&self, to: &str, statuses: &[&str]) {
        if let Some(auto) = self.lock().auto_end.as_mut() {
            auto.scripts.insert(
                to.to_owned(),
                statuses.iter().map(|s| (*s).to_owned()).collect(),
            );
        }
    }

    /// Registers a call Twilio knows without a `CreateCall` (an inbound call), for FetchCall.
    pub fn add_call(&self, sid: &str, status: &str) {
        self.lock().calls.push(FakeCall {
            sid: sid.to_owned(),
            created: std::time::SystemTime::now(),
            form: Vec::new(),
            status: status.to_owned(),
            updates: Vec::new(),
        });
    }

    /// Notifies `notify` whenever an UpdateCall redirects a call (as Twilio then ends its media
    /// stream: pass the same `Notify` as `CallScript::stop_when`).
    pub fn notify_on_redirect(&self, notify: Arc<tokio::sync::Notify>) {
        self.lock().redirect_notify = Some(notify);
    }

    /// Sets a call's status as FetchCall reports it.
    pub fn set_status(&self, sid: &str, status: &str) {
        if let Some(call) = self.lock().calls.iter_mut().find(|c| c.sid == sid) {
            call.status = status.to_owned();
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, FakeState> {
        self.shared
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Posts a signed status callback for `sid` to the `StatusCallback` URL the call was created
    /// with; returns the HTTP status the bridge answered.
    pub async fn send_status(
        &self,
        sid: &str,
        call_status: &str,
        sequence: u32,
        extra: &[(&str, &str)],
    ) -> anyhow::Result<u16> {
        post_status(&self.shared, sid, call_status, sequence, extra).await
    }

    /// Posts a signed AsyncAmd callback for `sid`.
    pub async fn send_amd(&self, sid: &str, answered_by: &str) -> anyhow::Result<u16> {
        let call = self
            .calls()
            .into_iter()
            .find(|c| c.sid == sid)
            .ok_or_else(|| anyhow::anyhow!("no call {sid}"))?;
        let url = call
            .param("AsyncAmdStatusCallback")
            .ok_or_else(|| anyhow::anyhow!("call {sid} has no AsyncAmdStatusCallback"))?
            .to_owned();
        let params: Vec<(String, String)> = vec![
            ("AccountSid".into(), self.shared.account_sid.clone()),
            ("CallSid".into(), sid.into()),
            ("AnsweredBy".into(), answered_by.into()),
            ("MachineDetectionDuration".into(), "2400".into()),
        ];
        post_signed(&url, &self.shared.auth_token, &params).await
    }

    /// Posts a signed form to one of the bridge's callback URLs (a `<Gather>` action, a call's
    /// `Url` with extra fields such as `AnsweredBy`), as Twilio would for call `sid`; returns status
    /// and body.
    pub async fn post_callback(
        &self,
        url: &str,
        sid: &str,
        extra: &[(&str, &str)],
    ) -> anyhow::Result<(u16, String)> {
        let mut params: Vec<(String, String)> = vec![
            ("AccountSid".into(), self.shared.account_sid.clone()),
            ("CallSid".into(), sid.into()),
            ("CallStatus".into(), "in-progress".into()),
            ("Direction".into(), "outbound-api".into()),
        ];
        params.extend(extra.iter().map(|(k, v)| ((*k).into(), (*v).into())));
        post_signed_body(url, &self.shared.auth_token, &params).await
    }

    /// Posts the signed voice webhook Twilio would send when the callee answers (the `Url` the call
    /// was created with); returns status and TwiML body.
    pub async fn answer(&self, sid: &str) -> anyhow::Result<(u16, String)> {
        let call = self
            .calls()
            .into_iter()
            .find(|c| c.sid == sid)
            .ok_or_else(|| anyhow::anyhow!("no call {sid}"))?;
        let url = call
            .param("Url")
            .ok_or_else(|| anyhow::anyhow!("call {sid} has no Url"))?
            .to_owned();
        let params: Vec<(String, String)> = vec![
            ("AccountSid".into(), self.shared.account_sid.clone()),
            ("CallSid".into(), sid.into()),
            ("CallStatus".into(), "in-progress".into()),
            ("Direction".into(), "outbound-api".into()),
            ("From".into(), call.param("From").unwrap_or_default().into()),
            ("To".into(), call.param("To").unwrap_or_default().into()),
        ];
        post_signed_body(&url, &self.shared.auth_token, &params).await
    }
}

/// Posts a signed status callback for `sid` to the `StatusCallback` URL the call was created with
/// (after recording the status for FetchCall); returns the HTTP status the bridge answered.
async fn post_status(
    shared: &Shared,
    sid: &str,
    call_status: &str,
    sequence: u32,
    extra: &[(&str, &str)],
) -> anyhow::Result<u16> {
    let call = {
        let mut state = shared
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let call = state
            .calls
            .iter_mut()
            .find(|c| c.sid == sid)
            .ok_or_else(|| anyhow::anyhow!("no call {sid}"))?;
        call.status = call_status.to_owned();
        call.clone()
    };
    let url = call
        .param("StatusCallback")
        .ok_or_else(|| anyhow::anyhow!("call {sid} has no StatusCallback"))?
        .to_owned();
    let mut params: Vec<(String, String)> = vec![
        ("AccountSid".into(), shared.account_sid.clone()),
        ("CallSid".into(), sid.into()),
        ("CallStatus".into(), call_status.into()),
        ("Direction".into(), "outbound-api".into()),
        ("From".into(), call.param("From").unwrap_or_default().into()),
        ("To".into(), call.param("To").unwrap_or_default().into()),
        ("SequenceNumber".into(), sequence.to_string()),
        ("CallbackSource".into(), "call-progress-events".into()),
    ];
    params.extend(extra.iter().map(|(k, v)| ((*k).into(), (*v).into())));
    post_signed(&url, &shared.auth_token, &params).await
}

async fn post_signed(url: &str, token: &str, params: &[(String, String)]) -> anyhow::Result<u16> {
    Ok(post_signed_body(url, token, params).await?.0)
}

async fn post_signed_body(
    url: &str,
    token: &str,
    params: &[(String, String)],
) -> anyhow::Result<(u16, String)> {
    let signature = callbridge::twilio::signature::compute(token, url, params);
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| anyhow::anyhow!("callback URL {url} is not http://"))?;
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let addr: SocketAddr = host.parse()?;
    let body = serde_urlencoded::to_string(params)?;
    crate::fake_twilio::http_post(addr, path, Some(&signature), &body).await
}

fn twilio_error(status: StatusCode, code: i64, message: &str) -> Response {
    (
        status,
        axum::Json(json!({
            "code": code,
            "message": message,
            "more_info": format!("https://www.twilio.com/docs/errors/{code}"),
            "status": status.as_u16(),
        })),
    )
        .into_response()
}

fn authorised(shared: &Shared, account: &str, headers: &HeaderMap) -> bool {
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD
            .encode(format!("{}:{}", shared.account_sid, shared.auth_token))
    );
    account == shared.account_sid
        && headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v == expected)
}

fn resource(shared: &Shared, call: &FakeCall) -> Value {
    let mut object = serde_json::Map::new();
    for property in &shared.call_properties {
        object.insert(property.clone(), Value::Null);
    }
    object.insert("sid".into(), json!(call.sid));
    object.insert("account_sid".into(), json!(shared.account_sid));
    object.insert("status".into(), json!(call.status));
    object.insert("direction".into(), json!("outbound-api"));
    object.insert("api_version".into(), json!("2010-04-01"));
    object.insert("to".into(), json!(call.param("To")));
    object.insert(
        "date_created".into(),
        json!(chrono::DateTime::<chrono::Utc>::from(call.created).to_rfc2822()),
    );
    object.insert("from".into(), json!(call.param("From")));
    object.insert(
        "uri".into(),
        json!(format!(
            "/2010-04-01/Accounts/{}/Calls/{}.json",
            shared.account_sid, call.sid
        )),
    );
    Value::Object(object)
}

async fn create_call(
    State(shared): State<Arc<Shared>>,
    Path(account): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !authorised(&shared, &account, &headers) {
        return twilio_error(StatusCode::UNAUTHORIZED, 20003, "Authenticate");
    }
    let Ok(form) = serde_urlencoded::from_bytes::<Vec<(String, String)>>(&body) else {
        return twilio_error(StatusCode::BAD_REQUEST, 21000, "body is not form-encoded");
    };
    let (body, delay, lose) = match accept_create(&shared, form) {
        Ok(accepted) => accepted,
        Err(response) => return *response,
    };
    // Placed before the (possibly slow or lost) answer, like the real service.
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    if lose {
        let text = body.to_string();
        let cut = text.get(..text.len() / 2).unwrap_or_default().to_owned();
        return (
            StatusCode::CREATED,
            [("content-type", "application/json")],
            cut,
        )
            .into_response();
    }
    (StatusCode::CREATED, axum::Json(body)).into_response()
}

/// Validates and records a CreateCall; returns the resource, the answer delay and whether to
/// lose the answer, or the error response.
fn accept_create(
    shared: &Arc<Shared>,
    form: Vec<(String, String)>,
) -> Result<(Value, std::time::Duration, bool), Box<Response>> {
    let problems = shared.create.check(&form);
    let mut state = shared
        .state
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if !problems.is_empty() {
        state.violations.extend(problems.iter().cloned());
        return Err(Box::new(twilio_error(
            StatusCode::BAD_REQUEST,
            21000,
            &problems.join("; "),
        )));
    }
    if !state.create_errors.is_empty() {
        let (status, body, retry_after) = state.create_errors.remove(0);
        let mut response = (
            StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            [("content-type", "application/json")],
            body,
        )
            .into_response();
        if let Some(value) = retry_after
            && let Ok(value) = value.parse()
        {
            response.headers_mut().insert("retry-after", value);
        }
        return Err(Box::new(response));
    }
    let sid = format!("CA{:032x}", state.calls.len() as u128 + 1);
    let call = FakeCall {
        sid: sid.clone(),
        created: std::time::SystemTime::now(),
        form,
        status: "queued".into(),
        updates: Vec::new(),
    };
    let body = resource(shared, &call);
    let to = call.param("To").unwrap_or_default().to_owned();
    state.calls.push(call);
    let lose = state.lose_answers > 0;
    state.lose_answers = state.lose_answers.saturating_sub(1);
    if let Some(auto) = state.auto_end.as_mut() {
        let status = auto
            .scripts
            .get_mut(&to)
            .and_then(|script| script.pop_front())
            .unwrap_or_else(|| auto.default.clone());
        let after = auto.after;
        let shared = shared.clone();
        tokio::spawn(async move {
            tokio::time::sleep(after).await;
            // The bridge may be down (crash tests): FetchCall still reports the status.
            let _ = post_status(&shared, &sid, &status, 1, &[]).await;
        });
    }
    Ok((body, state.create_delay, lose))
}

/// `ListCall`: calls filtered by `To` and `From`, newest first. Query parameters are checked
/// against the operation's parameters in the spec.
async fn list_calls(
    State(shared): State<Arc<Shared>>,
    Path(account): Path<String>,
    headers: HeaderMap,
    axum::extract::RawQuery(query): axum::extract::RawQuery,
) -> Response {
    if !authorised(&shared, &account, &headers) {
        return twilio_error(StatusCode::UNAUTHORIZED, 20003, "Authenticate");
    }
    let params: Vec<(String, String)> =
        serde_urlencoded::from_str(query.as_deref().unwrap_or_default()).unwrap_or_default();
    let mut state = shared
        .state
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let unknown: Vec<String> = params
        .iter()
        .filter(|(k, _)| !shared.list_parameters.contains(k))
        .map(|(k, _)| format!("ListCall: unknown parameter {k}"))
        .collect();
    if !unknown.is_empty() {
        state.violations.extend(unknown.iter().cloned());
        return twilio_error(StatusCode::BAD_REQUEST, 21000, &unknown.join("; "));
    }
    let wanted = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let calls: Vec<Value> = state
        .calls
        .iter()
        .rev()
        .filter(|c| wanted("To").is_none_or(|to| c.param("To") == Some(to)))
        .filter(|c| wanted("From").is_none_or(|from| c.param("From") == Some(from)))
        .map(|c| resource(&shared, c))
        .collect();
    drop(state);
    let page_size = calls.len();
    (
        StatusCode::OK,
        axum::Json(json!({
            "calls": calls,
            "page": 0,
            "page_size": page_size,
            "start": 0,
            "end": page_size.saturating_sub(1),
            "first_page_uri": format!("/2010-04-01/Accounts/{}/Calls.json?Page=0", shared.account_sid),
            "next_page_uri": null,
            "previous_page_uri": null,
            "uri": format!("/2010-04-01/Accounts/{}/Calls.json", shared.account_sid),
        })),
    )
        .into_response()
}

fn sid_of(sid_json: &str) -> Option<&str> {
    sid_json.strip_suffix(".json")
}

async fn update_call(
    State(shared): State<Arc<Shared>>,
    Path((account, sid_json)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !authorised(&shared, &account, &headers) {
        return twilio_error(StatusCode::UNAUTHORIZED, 20003, "Authenticate");
    }
    let Ok(form) = serde_urlencoded::from_bytes::<Vec<(String, String)>>(&body) else {
        return twilio_error(StatusCode::BAD_REQUEST, 21000, "body is not form-encoded");
    };
    let problems = shared.update.check(&form);
    let mut state = shared
        .state
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if !problems.is_empty() {
        state.violations.extend(problems.iter().cloned());
        return twilio_error(StatusCode::BAD_REQUEST, 21000, &problems.join("; "));
    }
    let sid = sid_of(&sid_json).unwrap_or_default();
    let Some(call) = state.calls.iter_mut().find(|c| c.sid == sid) else {
        return twilio_error(
            StatusCode::NOT_FOUND,
            20404,
            "The requested resource was not found",
        );
    };
    if let Some((_, status)) = form.iter().find(|(k, _)| k == "Status") {
        call.status = status.clone();
    }
    let redirect = form.iter().any(|(k, _)| k == "Twiml" || k == "Url");
    call.updates.push(form);
    let call = call.clone();
    if redirect && let Some(notify) = &state.redirect_notify {
        notify.notify_one();
    }
    drop(state);
    (StatusCode::OK, axum::Json(resource(&shared, &call))).into_response()
}

async fn fetch_call(
    State(shared): State<Arc<Shared>>,
    Path((account, sid_json)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if !authorised(&shared, &account, &headers) {
        return twilio_error(StatusCode::UNAUTHORIZED, 20003, "Authenticate");
    }
    let sid = sid_of(&sid_json).unwrap_or_default();
    let state = shared
        .state
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    match state.calls.iter().find(|c| c.sid == sid) {
        Some(call) => (StatusCode::OK, axum::Json(resource(&shared, call))).into_response(),
        None => twilio_error(
            StatusCode::NOT_FOUND,
            20404,
            "The requested resource was not found",
        ),
    }
}
