//! Tools the model may call during a call: the seam between the call actor and whatever does the
//! work (built-ins here; capability tools over business connectors plug in through [`Tool`]).
//!
//! Owns declaration (name, description, JSON schema), argument parsing, the per-call deadline and
//! turning every outcome — success, bad arguments, failure, timeout, unknown tool — into a JSON
//! document the model can speak about. It must not know about sockets or the call state machine;
//! `end_call` is declared here but carried out by the call session itself.

pub mod capabilities;
pub mod coupon_slots;
pub mod doctor;
pub mod invoke;
pub mod ledger;
pub mod meeting_links;
pub mod resolver;
pub mod send_message;
pub mod store_ledger;
pub mod support;

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde_json::{Value, json};

use crate::realtime::END_CALL_TOOL;
use crate::realtime::ToolDeclaration;

/// Largest tool output handed to the model, in bytes of JSON.
pub const MAX_TOOL_OUTPUT: usize = 8 * 1024;

/// Who is asking, for tools that need it.
#[derive(Debug, Clone)]
pub struct ToolContext {
    pub call_sid: String,
    pub caller: String,
    pub called: String,
    pub tool_call_id: String,
    /// When the call started (a phone call's stream start); `None` outside a call (MCP, invoke).
    pub call_started: Option<DateTime<Utc>>,
    /// `Some(true)` on a call the customer made, `Some(false)` on one made to them; `None` when
    /// unknown or outside a call.
    pub inbound: Option<bool>,
}

/// How a tool failed; the message is spoken about by the model, so it must not contain secrets.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ToolError {
    #[error("invalid arguments: {0}")]
    InvalidArguments(String),
    #[error("{0}")]
    Failed(String),
}

pub type ToolFuture = Pin<Box<dyn Future<Output = Result<Value, ToolError>> + Send + 'static>>;

/// A tool the model can call.
pub trait Tool: Send + Sync + 'static {
    fn declaration(&self) -> ToolDeclaration;
    fn invoke(&self, context: ToolContext, arguments: Value) -> ToolFuture;
}

/// The tools offered on a call, with the deadline each call gets.
#[derive(Clone)]
pub struct ToolRegistry {
    tools: BTreeMap<String, Arc<dyn Tool>>,
    /// Declared here, carried out by the call session (`send_digits`).
    session_tools: Vec<ToolDeclaration>,
    deadline: Duration,
}

impl std::fmt::Debug for ToolRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ToolRegistry")
            .field("tools", &self.tools.keys().collect::<Vec<_>>())
            .field("deadline", &self.deadline)
            .finish()
    }
}

impl ToolRegistry {
    pub fn new(deadline: Duration) -> Self {
        Self {
            tools: BTreeMap::new(),
            session_tools: Vec::new(),
            deadline,
        }
    }

    pub fn register(&mut self, tool: Arc<dyn Tool>) {
        self.tools.insert(tool.declaration().name, tool);
    }

    /// Declares a tool the call session carries out itself (never run through [`Self::run`]).
    pub fn declare_session_tool(&mut self, declaration: ToolDeclaration) {
        if !self
            .session_tools
            .iter()
            .any(|d| d.name == declaration.name)
        {
            self.session_tools.push(declaration);
        }
    }

    pub fn deadline(&self) -> Duration {
        self.deadline
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tools.keys().map(String::as_str)
    }

    /// Everything declared to the model: the registered tools and the built-in `end_call`.
    pub fn declarations(&self) -> Vec<ToolDeclaration> {
        let mut declarations: Vec<_> = self.tools.values().map(|t| t.declaration()).collect();
        declarations.extend(self.session_tools.iter().cloned());
        declarations.push(end_call_declaration());
        declarations
    }

    /// Runs one tool call to completion within the deadline and returns the JSON output for the
    /// model, plus a label for metrics (`ok`, `invalid_arguments`, `failed`, `timeout`,
    /// `unknown_tool`, `too_large`). Never fails: every failure becomes an output the model can
    /// speak about.
    pub async fn run(
        &self,
        context: ToolContext,
        name: &str,
        arguments: &str,
    ) -> (String, &'static str) {
        let Some(tool) = self.tools.get(name) else {
            return error_output("unknown_tool", &format!("There is no tool called {name}."));
        };
        let arguments: Value = if arguments.trim().is_empty() {
            json!({})
        } else {
            match serde_json::from_str(arguments) {
                Ok(value) => value,
                Err(e) => {
                    return error_output(
                        "invalid_arguments",
                        &format!("The arguments were not valid JSON: {e}"),
                    );
                }
            }
        };
        match tokio::time::timeout(self.deadline, tool.invoke(context, arguments)).await {
            Ok(Ok(value)) => {
                let text = json!({ "ok": true, "result": value }).to_string();
                if text.len() > MAX_TOOL_OUTPUT {
                    error_output(
                        "too_large",
                        "The tool returned more than can be read out; ask a narrower question.",
                    )
                } else {
                    (text, "ok")
                }
            }
            Ok(Err(ToolError::InvalidArguments(message))) => {
                error_output("invalid_arguments", &message)
            }
            Ok(Err(ToolError::Failed(message))) => error_output("failed", &message),
            Err(_) => error_output(
                "timeout",
                "The system did not answer in time. Apologise and offer to try again.",
            ),
        }
    }
}

tokio::task_local! {
    /// The failure details of the tool calls run inside [`with_diagnostics`].
    static DIAGNOSTICS: std::cell::RefCell<Vec<String>>;
}

/// Notes the real cause of a tool failure (connector error with status and vendor code) for an
/// operator running the tool by hand; a no-op during calls. The detail is redacted here, and never
/// reaches the model.
pub fn record_diagnostic(detail: &str) {
    let detail = crate::connectors::http::redact::snippet(detail, 500);
    let _ = DIAGNOSTICS.try_with(|d| d.borrow_mut().push(detail));
}

/// Runs `work` and returns, beside its output, the failure details recorded while it ran (see
/// [`record_diagnostic`]).
pub async fn with_diagnostics<F: Future>(work: F) -> (F::Output, Vec<String>) {
    DIAGNOSTICS
        .scope(std::cell::RefCell::new(Vec::new()), async move {
            let output = work.await;
            let details = DIAGNOSTICS.with(|d| d.take());
            (output, details)
        })
        .await
}

fn error_output(code: &'static str, message: &str) -> (String, &'static str) {
    (
        json!({ "ok": false, "error": { "code": code, "message": message } }).to_string(),
        code,
    )
}

/// The built-in `send_digits`: keypad tones into the call, for phone menus.
pub fn send_digits_declaration() -> ToolDeclaration {
    ToolDeclaration {
        name: crate::realtime::SEND_DIGITS_TOOL.into(),
        description: "Press keys on the phone keypad, to navigate an automated phone menu (IVR). \
                      Use it only when a recorded menu asks for a key press or a number. \
                      The keys are sent as tones; wait for the menu's next prompt afterwards."
            .into(),
        parameters: json!({
            "type": "object",
            "properties": {
                "digits": {
                    "type": "string",
                    "description": "Keys to press, in order: 0-9, * and #; w waits half a second.",
                    "pattern": "^[0-9*#A-Dw ]{1,32}$"
                }
            },
            "required": ["digits"]
        }),
    }
}

fn end_call_declaration() -> ToolDeclaration {
    ToolDeclaration {
        name: END_CALL_TOOL.into(),
        description: "End the phone call. Use it when the caller says goodbye or the conversation \
                      is clearly finished. Say a short goodbye before calling it."
            .into(),
        parameters: json!({
            "type": "object",
            "properties": {
                "reason": {"type": "string", "description": "Why the call is ending, in a few words."}
            }
        }),
    }
}

/// Built-in: the current date and time in the business's zone (and the caller's, when the
/// model knows it) as well as UTC, so the model never guesses today's date or works it out from
/// UTC by hand.
#[derive(Debug)]
pub struct CurrentTime {
    business_zone: Tz,
}

impl CurrentTime {
    pub fn new(business_zone: Tz) -> Self {
        Self { business_zone }
    }
}

impl Default for CurrentTime {
    /// Without a tenant (the single-business quick start) the business zone is UTC.
    fn default() -> Self {
        Self::new(Tz::UTC)
    }
}

/// One instant as read in `zone`: what the model needs to talk about "today" and "now".
fn local_time_json(now: DateTime<Utc>, zone: Tz) -> Value {
    let local = now.with_timezone(&zone);
    json!({
        "time_zone": zone.name(),
        "date": local.format("%Y-%m-%d").to_string(),
        "weekday": local.format("%A").to_string(),
        "time": local.format("%H:%M").to_string(),
        "utc_offset": local.format("%:z").to_string(),
        "spoken": format!("{} ({})", local.format("%A %-d %B %Y, %-I:%M %p %Z"), zone.name()),
    })
}

/// The `get_current_time` answer at `now`.
fn current_time_json(now: DateTime<Utc>, business_zone: Tz, caller_zone: Option<Tz>) -> Value {
    let mut out = json!({
        "utc": now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "business": local_time_json(now, business_zone),
    });
    if let Some(zone) = caller_zone.filter(|zone| *zone != business_zone) {
        out["caller"] = local_time_json(now, zone);
    }
    out
}

impl Tool for CurrentTime {
    fn declaration(&self) -> ToolDeclaration {
        ToolDeclaration {
            name: "get_current_time".into(),
            description: "Get today's date, the weekday and the time where the business is (and \
                          UTC). Use it before talking about dates such as today or tomorrow. If \
                          the caller said they are in another time zone, pass it to get their \
                          local time too."
                .into(),
            parameters: json!({
                "type": "object",
                "properties": {
                    "caller_time_zone": {"type": "string", "description": capabilities::CALLER_ZONE_SCHEMA}
                }
            }),
        }
    }

    fn invoke(&self, _context: ToolContext, arguments: Value) -> ToolFuture {
        let business_zone = self.business_zone;
        Box::pin(async move {
            let caller_zone = capabilities::optional_zone(
                "caller_time_zone",
                arguments.get("caller_time_zone").and_then(Value::as_str),
            )?;
            Ok(current_time_json(Utc::now(), business_zone, caller_zone))
        })
    }
}

/// `opt_out`: the person on the line asked not to be called again. Bound to one tenant when the
/// call is planned; the person's number is whichever side of the call is not one of the tenant's
/// own numbers (the callee of an outbound call, the caller of an inbound one), so the tool needs
/// nothing beyond the standard [`ToolContext`]. The number is on the do-not-call list before the
/// tool answers.
pub struct OptOut {
    store: crate::store::SqlStore,
    tenant: crate::store::TenantId,
}

/// The `opt_out` tool for `tenant`'s calls.
pub fn opt_out(store: crate::store::SqlStore, tenant: crate::store::TenantId) -> Arc<dyn Tool> {
    Arc::new(OptOut { store, tenant })
}

impl Tool for OptOut {
    fn declaration(&self) -> ToolDeclaration {
        ToolDeclaration {
            name: "opt_out".into(),
            description: "The person asked not to be called again. Call this immediately when \
                          they say so; afterwards confirm they will not be called and end politely."
                .into(),
            parameters: json!({"type": "object", "properties": {}}),
        }
    }

    fn invoke(&self, context: ToolContext, _arguments: Value) -> ToolFuture {
        use crate::store::{E164, Store};
        let store = self.store.clone();
        let tenant = self.tenant.clone();
        Box::pin(async move {
            let unavailable = |_| ToolError::Failed("The request could not be saved.".into());
            let own: Vec<String> = store
                .list_numbers(&tenant)
                .await
                .map_err(unavailable)?
                .into_iter()
                .map(|n| n.e164.as_str().to_owned())
                .collect();
            let person = if own.contains(&context.caller) {
                &context.called
            } else {
                &context.caller
            };
            let number = E164::parse(person).map_err(|_| {
                ToolError::Failed("The caller's number is unknown, so it cannot be blocked.".into())
            })?;
            store
                .add_do_not_call(&tenant, &number, "opt_out")
                .await
                .map_err(unavailable)?;
            crate::notify::emit_opt_out(&store, &tenant, number.as_str(), "during a call").await;
            Ok(json!({ "opted_out": true }))
        })
    }
}

/// The built-in tools by name, for configuration without a tenant (times in UTC).
pub fn builtin(name: &str) -> Option<Arc<dyn Tool>> {
    builtin_in_zone(name, Tz::UTC)
}

/// The built-in tools by name, for a business in `business_zone`.
pub fn builtin_in_zone(name: &str, business_zone: Tz) -> Option<Arc<dyn Tool>> {
    match name {
        "get_current_time" => Some(Arc::new(CurrentTime::new(business_zone))),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Slow;
    impl Tool for Slow {
        fn declaration(&self) -> ToolDeclaration {
            ToolDeclaration {
                name: "slow".into(),
                description: "never answers in time".into(),
                parameters: json!({"type": "object"}),
            }
        }
        fn invoke(&self, _c: ToolContext, _a: Value) -> ToolFuture {
            Box::pin(async {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                Ok(json!(null))
            })
        }
    }

    struct Echo;
    impl Tool for Echo {
        fn declaration(&self) -> ToolDeclaration {
            ToolDeclaration {
                name: "echo".into(),
                description: "echoes".into(),
                parameters: json!({"type": "object"}),
            }
        }
        fn invoke(&self, _c: ToolContext, a: Value) -> ToolFuture {
            Box::pin(async move {
                match a.get("fail") {
                    Some(_) => Err(ToolError::Failed("the calendar is down".into())),
                    None => Ok(a),
                }
            })
        }
    }

    fn context() -> ToolContext {
        ToolContext {
            call_sid: "CA1".into(),
            caller: "+14155551234".into(),
            called: "+15005550006".into(),
            tool_call_id: "call_1".into(),
            call_started: None,
            inbound: None,
        }
    }

    fn registry() -> ToolRegistry {
        let mut r = ToolRegistry::new(Duration::from_millis(500));
        r.register(Arc::new(Echo));
        r.register(Arc::new(Slow));
        r
    }

    fn parse(output: &str) -> Value {
        serde_json::from_str(output).unwrap()
    }

    #[tokio::test]
    async fn outcomes_become_structured_outputs() {
        let r = registry();
        let (out, label) = r.run(context(), "echo", r#"{"x":1}"#).await;
        assert_eq!(
            (parse(&out), label),
            (json!({"ok": true, "result": {"x": 1}}), "ok")
        );
        let (out, label) = r.run(context(), "echo", r#"{"fail":1}"#).await;
        assert_eq!(label, "failed");
        assert_eq!(parse(&out)["error"]["message"], "the calendar is down");
        let (out, label) = r.run(context(), "nope", "{}").await;
        assert_eq!(label, "unknown_tool");
        assert_eq!(parse(&out)["ok"], false);
        let (_, label) = r.run(context(), "echo", "{oops").await;
        assert_eq!(label, "invalid_arguments");
        let (_, label) = r
            .run(
                context(),
                "echo",
                r#"{"big":"$"}"#.replace('$', &"x".repeat(MAX_TOOL_OUTPUT)).as_str(),
            )
            .await;
        assert_eq!(label, "too_large");
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_tool_times_out() {
        let (out, label) = registry().run(context(), "slow", "{}").await;
        assert_eq!(label, "timeout");
        assert_eq!(parse(&out)["error"]["code"], "timeout");
    }

    #[test]
    fn the_time_is_given_in_the_business_zone_and_the_callers() {
        let now = DateTime::parse_from_rfc3339("2025-03-09T06:30:00Z")
            .expect("valid")
            .with_timezone(&Utc);
        let out = current_time_json(
            now,
            chrono_tz::America::Los_Angeles,
            Some(chrono_tz::Europe::London),
        );
        assert_eq!(out["utc"], "2025-03-09T06:30:00Z");
        // Still Saturday evening in California, before that night's switch to summer time.
        assert_eq!(
            out["business"],
            json!({
                "time_zone": "America/Los_Angeles",
                "date": "2025-03-08",
                "weekday": "Saturday",
                "time": "22:30",
                "utc_offset": "-08:00",
                "spoken": "Saturday 8 March 2025, 10:30 PM PST (America/Los_Angeles)",
            })
        );
        assert_eq!(out["caller"]["date"], "2025-03-09");
        assert_eq!(out["caller"]["weekday"], "Sunday");
        assert_eq!(out["caller"]["time"], "06:30");
        let same = current_time_json(
            now,
            chrono_tz::Europe::London,
            Some(chrono_tz::Europe::London),
        );
        assert!(same.get("caller").is_none(), "{same}");
    }

    #[tokio::test]
    async fn a_bad_caller_zone_is_explained() {
        let tool = CurrentTime::new(chrono_tz::Europe::Berlin);
        let err = tool
            .invoke(context(), json!({"caller_time_zone": "Pacific time"}))
            .await
            .expect_err("refused");
        assert!(matches!(err, ToolError::InvalidArguments(_)), "{err:?}");
        let out = tool.invoke(context(), json!({})).await.expect("time");
        assert_eq!(out["business"]["time_zone"], "Europe/Berlin");
    }

    #[test]
    fn end_call_is_always_declared() {
        let names: Vec<_> = registry()
            .declarations()
            .into_iter()
            .map(|d| d.name)
            .collect();
        assert_eq!(names, vec!["echo", "slow", "end_call"]);
    }
}
