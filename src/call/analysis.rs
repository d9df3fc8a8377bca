//! Post-call analysis: after a call whose agent has analysis settings, a text model reads the
//! transcript and the tool log and returns a summary, the agent's structured fields (its JSON
//! Schema) and whether the call met the agent's stated goal. The reply is validated against the
//! schema; one that does not validate is asked for once more, then the analysis is recorded as
//! failed — never invented, never repaired. The result is stored on the call and goes out in
//! `call.ended` (which waits for it).
//!
//! Durable: the call's end queues a row (`store::analysis`); a worker leases rows (one worker per
//! row across nodes), so a restart loses none. Transient failures (the model unreachable, 5xx)
//! keep the row pending with a backoff, up to [`MAX_TRANSIENT_ATTEMPTS`].
//!
//! A done analysis is written back to the tenant's CRM (when one is configured) as a call note
//! on the caller's contact, once per call through the tool ledger; how that went is kept in the
//! result as `crm_note` (`written`, `no_contact`, `no_crm`, `failed: …`). A CRM failure never
//! fails the analysis nor holds back `call.ended`.
//!
//! It owns the prompt, the envelope schema, validation and the queue's outcomes; it must not
//! speak to the model other than through `connectors::text_llm` (the one outbound policy).

use std::sync::Arc;
use std::time::Duration;

use secrecy::SecretString;
use serde_json::{Value, json};
use tracing::{info, warn};

use crate::connectors::http::{HttpPolicy, RequestContext};
use crate::connectors::text_llm::{self, JsonRequest, TextLlm};
use crate::connectors::{CallNote, CallOutcome, ContactLookup};
use crate::metrics::Metrics;
use crate::oauth::OAuthService;
use crate::store::{
    AnalysisSettings, AnalysisStatus, Call, CallDirection, CallEvent, CallEventKind, CallStatus,
    ClaimedAnalysis, SettledAnalysis, SqlStore, Store, TenantId,
};
use crate::tenant::vault::Vault;
use crate::tools::capabilities::Capability;
use crate::tools::ledger::{self, SharedLedger, ToolInvocation, ToolOutcome};
use crate::tools::resolver::{build_connector_with, configuration_for};

/// How long writing the call note to the CRM (find the contact, add the note) may take.
const CRM_NOTE_DEADLINE: Duration = Duration::from_secs(30);
/// The ledger's tool name for the call note (one per call).
const CRM_NOTE_TOOL: &str = "post_call_crm_note";

/// Requests after which a model that keeps failing (not answering, 5xx) marks the analysis failed.
pub const MAX_TRANSIENT_ATTEMPTS: u32 = 5;
/// Replies that do not validate before the analysis is failed (the first, and one retry).
pub const MAX_INVALID_REPLIES: u32 = 2;
/// Transcript characters sent to the model (the most recent kept).
const MAX_INPUT_CHARS: usize = 60_000;

const INSTRUCTIONS: &str = "You analyse a finished phone call between a caller and an AI voice \
     agent. Reply with one JSON object and nothing else, following the given JSON Schema: \
     \"summary\" (two to four sentences: who called, what they wanted, what was done), \"fields\" \
     (the structured fields; use null only where the schema allows it and the call did not say), \
     and \"success\" ({\"achieved\": true or false, \"reason\": one sentence}) judged against the \
     agent's goal. Use only what the transcript and the tool log say.";

/// The deployment's analysis settings.
#[derive(Clone)]
pub struct AnalysisOptions {
    /// The Responses API base (`https://api.openai.com/v1`, or any OpenAI-compatible server).
    pub base_url: String,
    pub model: String,
    pub api_key: SecretString,
    /// How long a worker holds a row while it asks the model.
    pub lease: Duration,
    /// How often an idle worker looks for queued rows.
    pub poll: Duration,
    /// First backoff after a transient failure (doubles per attempt).
    pub backoff: Duration,
}

impl AnalysisOptions {
    /// From `CALLBRIDGE_ANALYSIS_URL` (default the OpenAI API), `CALLBRIDGE_ANALYSIS_MODEL`
    /// (default [`text_llm::DEFAULT_MODEL`]) and the key `CALLBRIDGE_ANALYSIS_API_KEY`, else
    /// `OPENAI_API_KEY`. `None` without a key.
    pub fn from_env(openai_key: &SecretString) -> Option<Self> {
        use secrecy::ExposeSecret;
        let key = std::env::var("CALLBRIDGE_ANALYSIS_API_KEY")
            .ok()
            .filter(|k| !k.is_empty())
            .map(SecretString::from)
            .or_else(|| (!openai_key.expose_secret().is_empty()).then(|| openai_key.clone()))?;
        Some(Self {
            base_url: std::env::var("CALLBRIDGE_ANALYSIS_URL")
                .ok()
                .filter(|u| !u.is_empty())
                .unwrap_or_else(|| text_llm::DEFAULT_BASE_URL.into()),
            model: std::env::var("CALLBRIDGE_ANALYSIS_MODEL")
                .ok()
                .filter(|m| !m.is_empty())
                .unwrap_or_else(|| text_llm::DEFAULT_MODEL.into()),
            api_key: key,
            lease: Duration::from_secs(300),
            poll: Duration::from_secs(2),
            backoff: Duration::from_secs(30),
        })
    }
}

/// A call ended: queue its analysis when its agent has settings (its `call.ended` then waits
/// for the analysis), else queue `call.ended` now.
pub async fn call_finished(store: &SqlStore, metrics: &Metrics, tenant: &TenantId, call_id: &str) {
    let settings = match store.call(tenant, call_id).await {
        Ok(call) => store.analysis_settings(tenant, &call.agent_id).await,
        Err(e) => Err(e),
    };
    match settings {
        Ok(Some(_)) => match store.queue_analysis(tenant, call_id).await {
            Ok(_) => return,
            Err(e) => {
                metrics.error("analysis_queue_failed");
                warn!(error = %e, "cannot queue the call's analysis; call.ended goes out without it");
            }
        },
        Ok(None) => {}
        Err(e) => {
            metrics.error("store_unavailable");
            warn!(error = %e, "cannot read the agent's analysis settings");
        }
    }
    if let Err(e) = crate::webhooks::enqueue_call_ended(store, tenant, call_id).await {
        metrics.error("webhook_enqueue_failed");
        warn!(error = %e, "cannot queue the call.ended webhook");
    }
}

/// The JSON Schema the reply must follow: the envelope around the agent's fields.
pub fn envelope_schema(fields_schema: &Value) -> Value {
    json!({
        "type": "object",
        "additionalProperties": false,
        "required": ["summary", "fields", "success"],
        "properties": {
            "summary": {"type": "string", "minLength": 1},
            "fields": fields_schema,
            "success": {
                "type": "object",
                "additionalProperties": false,
                "required": ["achieved", "reason"],
                "properties": {
                    "achieved": {"type": "boolean"},
                    "reason": {"type": "string"}
                }
            }
        }
    })
}

/// Checks a reply: JSON, and valid against `schema`. The error names the first problems.
pub fn check_reply(schema: &Value, reply: &str) -> Result<Value, String> {
    let value: Value =
        serde_json::from_str(reply.trim()).map_err(|e| format!("the reply is not JSON: {e}"))?;
    let validator = jsonschema::validator_for(schema)
        .map_err(|e| format!("the agent's fields schema does not compile: {e}"))?;
    let problems: Vec<String> = validator
        .iter_errors(&value)
        .take(5)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect();
    if problems.is_empty() {
        Ok(value)
    } else {
        Err(format!(
            "the reply does not match the schema: {}",
            problems.join("; ")
        ))
    }
}

/// What the model reads: the goal, then the transcript and the tool log in order.
pub fn analysis_input(goal: &str, events: &[CallEvent]) -> String {
    let mut lines = Vec::new();
    for event in events {
        let p = &event.payload;
        match event.kind {
            CallEventKind::Transcript => lines.push(format!(
                "{}: {}",
                p["speaker"].as_str().or(p["role"].as_str()).unwrap_or("?"),
                p["text"].as_str().unwrap_or_default()
            )),
            CallEventKind::ToolCall => lines.push(format!(
                "[tool call] {} {}",
                p["tool"].as_str().unwrap_or("?"),
                p["arguments"]
            )),
            CallEventKind::ToolResult => lines.push(format!(
                "[tool result] {} {}: {}",
                p["tool"].as_str().unwrap_or("?"),
                p["outcome"].as_str().unwrap_or("?"),
                p["output"]
            )),
            CallEventKind::Transfer => lines.push(format!(
                "[transfer] {} {}",
                p["destination"].as_str().unwrap_or("?"),
                p["outcome"].as_str().unwrap_or("?")
            )),
            _ => {}
        }
    }
    let mut log = lines.join("\n");
    if log.chars().count() > MAX_INPUT_CHARS {
        let skip = log.chars().count() - MAX_INPUT_CHARS;
        log = log.chars().skip(skip).collect();
    }
    if log.is_empty() {
        log = "(nothing was said)".into();
    }
    format!("Agent's goal: {goal}\n\nCall transcript and tool log:\n{log}")
}

/// Why one analysis did not produce a result.
enum Failure {
    /// Worth trying again later (the model unreachable, a 5xx, a timeout).
    Transient(String),
    /// Final (replies that do not validate, a call or settings that are gone).
    Final(String),
}

/// Leases queued analyses and runs them.
pub struct AnalysisWorker {
    store: SqlStore,
    llm: TextLlm,
    policy: HttpPolicy,
    options: AnalysisOptions,
    metrics: Arc<Metrics>,
    crm: Option<CrmWriteBack>,
}

/// What writing the analysis back to the tenant's CRM needs.
struct CrmWriteBack {
    vault: Option<Vault<SqlStore>>,
    oauth: Option<OAuthService>,
    ledger: SharedLedger,
}

impl AnalysisWorker {
    pub fn new(
        store: SqlStore,
        policy: HttpPolicy,
        metrics: Arc<Metrics>,
        options: AnalysisOptions,
    ) -> Result<Self, crate::connectors::ConnectorError> {
        let llm = TextLlm::new(policy.clone(), &options.base_url, options.api_key.clone())?;
        Ok(Self {
            store,
            llm,
            policy,
            options,
            metrics,
            crm: None,
        })
    }

    /// Writes each done analysis to the tenant's CRM, when it has one, as a call note on the
    /// caller's contact; `ledger` makes that happen once per call across retries and restarts.
    #[must_use]
    pub fn with_crm_notes(
        mut self,
        vault: Option<Vault<SqlStore>>,
        oauth: Option<OAuthService>,
        ledger: SharedLedger,
    ) -> Self {
        self.crm = Some(CrmWriteBack {
            vault,
            oauth,
            ledger,
        });
        self
    }

    /// Runs until aborted: one queued analysis after another, polling when idle.
    pub fn spawn(self) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            loop {
                match self.run_once().await {
                    Ok(true) => continue,
                    Ok(false) => {}
                    Err(e) => {
                        self.metrics.error("store_unavailable");
                        warn!(error = %e, "analysis queue unavailable");
                    }
                }
                tokio::time::sleep(self.options.poll).await;
            }
        })
    }

    /// Leases and runs one queued analysis; `false` when none is due.
    pub async fn run_once(&self) -> Result<bool, crate::store::StoreError> {
        let lease = i64::try_from(self.options.lease.as_millis()).unwrap_or(i64::MAX);
        let Some(claimed) = self.store.claim_analysis(lease).await? else {
            return Ok(false);
        };
        self.run(claimed).await?;
        Ok(true)
    }

    async fn run(&self, claimed: ClaimedAnalysis) -> Result<(), crate::store::StoreError> {
        let ClaimedAnalysis {
            tenant,
            call_id,
            attempts,
        } = claimed;
        let call = self.store.call(&tenant, &call_id).await?;
        let settings = self
            .store
            .analysis_settings(&tenant, &call.agent_id)
            .await?;
        let model = settings
            .as_ref()
            .and_then(|s| s.model.clone())
            .unwrap_or_else(|| self.options.model.clone());
        let (outcome, used) = match settings {
            None => (
                Err(Failure::Final("the agent's analysis was turned off".into())),
                0,
            ),
            Some(settings) => {
                let events = self.store.call_events(&tenant, &call_id).await?;
                self.ask(&tenant, &call_id, &settings, &model, &events)
                    .await
            }
        };
        let attempts = attempts.saturating_add(used);
        match outcome {
            Ok(mut result) => {
                if let Some(crm) = &self.crm {
                    let note = self.crm_note(crm, &call, &result).await;
                    result["crm_note"] = Value::String(note);
                }
                self.store
                    .settle_analysis(
                        &tenant,
                        &call_id,
                        &SettledAnalysis {
                            status: AnalysisStatus::Done,
                            attempts,
                            outcome: Ok(&result),
                            model: &model,
                            retry_at_ms: 0,
                        },
                    )
                    .await?;
                info!(%tenant, call_id, attempts, "call analysed");
            }
            Err(Failure::Transient(why)) if attempts < MAX_TRANSIENT_ATTEMPTS => {
                let wait = self.options.backoff * 2u32.saturating_pow(attempts.saturating_sub(1));
                let retry_at = jiff::Timestamp::now().as_millisecond()
                    + i64::try_from(wait.as_millis()).unwrap_or(i64::MAX / 2);
                warn!(%tenant, call_id, attempts, error = %why, "analysis failed for now; retrying later");
                self.metrics.error("analysis_retry");
                self.store
                    .settle_analysis(
                        &tenant,
                        &call_id,
                        &SettledAnalysis {
                            status: AnalysisStatus::Pending,
                            attempts,
                            outcome: Err(&why),
                            model: &model,
                            retry_at_ms: retry_at,
                        },
                    )
                    .await?;
                return Ok(());
            }
            Err(Failure::Transient(why) | Failure::Final(why)) => {
                warn!(%tenant, call_id, attempts, error = %why, "analysis failed");
                self.metrics.error("analysis_failed");
                self.store
                    .settle_analysis(
                        &tenant,
                        &call_id,
                        &SettledAnalysis {
                            status: AnalysisStatus::Failed,
                            attempts,
                            outcome: Err(&why),
                            model: &model,
                            retry_at_ms: 0,
                        },
                    )
                    .await?;
            }
        }
        if let Err(e) = crate::webhooks::enqueue_call_ended(&self.store, &tenant, &call_id).await {
            self.metrics.error("webhook_enqueue_failed");
            warn!(error = %e, "cannot queue the call.ended webhook");
        }
        Ok(())
    }

    /// Writes the analysis to the tenant's CRM as a call note on the caller's contact, at most
    /// once per call; returns what happened (`written`, `no_contact`, `no_crm`, `failed: …`).
    /// Never fails the analysis: a failure is counted, logged and returned as text.
    async fn crm_note(&self, crm: &CrmWriteBack, call: &Call, result: &Value) -> String {
        let tenant = &call.tenant_id;
        let failed = |why: String| {
            self.metrics.error("analysis_crm_note_failed");
            warn!(%tenant, call_id = call.id, error = %why, "cannot write the analysis to the CRM");
            format!("failed: {why}")
        };
        let configs = match self.store.list_connectors(tenant).await {
            Ok(configs) => configs,
            Err(e) => return failed(e.to_string()),
        };
        let Some(config) = configuration_for(&configs, Capability::Crm) else {
            return "no_crm".into();
        };
        let built = match build_connector_with(
            config,
            crm.vault.as_ref(),
            &self.policy,
            crm.oauth.as_ref(),
        )
        .await
        {
            Ok(built) => built,
            Err(e) => return failed(e.to_string()),
        };
        let Some(connector) = built.crm else {
            return "no_crm".into();
        };
        let phone = match call.direction {
            CallDirection::Inbound => call.from.clone(),
            CallDirection::Outbound => call.to.clone(),
        };
        let note = CallNote {
            body: note_body(result),
            at: chrono::DateTime::from_timestamp_millis(call.started_at.as_millisecond())
                .unwrap_or_default(),
            duration_secs: call
                .ended_at
                .and_then(|end| u32::try_from(end.as_second() - call.started_at.as_second()).ok()),
            outcome: call_outcome(call.status),
            inbound: Some(call.direction == CallDirection::Inbound),
        };
        let invocation = ToolInvocation {
            tenant: tenant.as_str().to_owned(),
            call_id: call.id.clone(),
            tool_call_id: format!("analysis-{}", call.id),
            tool: CRM_NOTE_TOOL.into(),
            args_hash: ledger::args_hash(&json!({})),
        };
        let deadline = tokio::time::Instant::now() + CRM_NOTE_DEADLINE;
        let ctx = RequestContext::new(tenant.as_str(), format!("analysis-{}", call.id), deadline);
        let outcome = ledger::run_once(crm.ledger.as_ref(), &invocation, deadline, |key| {
            let (ctx, connector, note) = (&ctx, &connector, &note);
            async move {
                let contact = connector
                    .find_contact(ctx, &ContactLookup::Phone(phone))
                    .await
                    .map_err(|e| e.to_string())?;
                let Some(contact) = contact else {
                    return Ok(json!({"crm_note": "no_contact"}));
                };
                let id = connector
                    .log_call_note(ctx, &contact.id, note, &key)
                    .await
                    .map_err(|e| e.to_string())?;
                Ok(json!({"crm_note": "written", "note_id": id}))
            }
        })
        .await;
        match outcome {
            Ok(ToolOutcome::Succeeded(value)) => {
                let said = value["crm_note"].as_str().unwrap_or("written").to_owned();
                info!(%tenant, call_id = call.id, crm_note = said, "analysis written back to the CRM");
                said
            }
            Ok(ToolOutcome::Failed(why)) => failed(why),
            Err(e) => failed(e.to_string()),
        }
    }

    /// Asks the model, once more after a reply that does not validate. Returns the outcome and
    /// the requests made.
    async fn ask(
        &self,
        tenant: &TenantId,
        call_id: &str,
        settings: &AnalysisSettings,
        model: &str,
        events: &[CallEvent],
    ) -> (Result<Value, Failure>, u32) {
        let schema = envelope_schema(&settings.fields_schema);
        if let Err(e) = jsonschema::validator_for(&schema) {
            return (
                Err(Failure::Final(format!(
                    "the agent's fields schema does not compile: {e}"
                ))),
                0,
            );
        }
        let input = analysis_input(&settings.goal, events);
        let mut made = 0;
        let mut last = String::new();
        for _ in 0..MAX_INVALID_REPLIES {
            made += 1;
            let ctx = RequestContext::new(
                tenant.as_str(),
                format!("analysis-{call_id}"),
                tokio::time::Instant::now() + Duration::from_secs(120),
            );
            let request = JsonRequest {
                model,
                instructions: INSTRUCTIONS,
                input: &input,
                schema_name: "call_analysis",
                schema: &schema,
            };
            let reply = match self.llm.respond(&ctx, &request).await {
                Ok(reply) => reply,
                Err(crate::connectors::ConnectorError::UnexpectedResponse(why)) => {
                    last = why;
                    continue;
                }
                Err(e) => return (Err(Failure::Transient(e.to_string())), made),
            };
            match check_reply(&schema, &reply) {
                Ok(value) => return (Ok(value), made),
                Err(why) => {
                    self.metrics.error("analysis_invalid_reply");
                    warn!(%tenant, call_id, error = %why, "analysis reply does not validate");
                    last = why;
                }
            }
        }
        (
            Err(Failure::Final(format!(
                "{MAX_INVALID_REPLIES} replies did not validate; last: {last}"
            ))),
            made,
        )
    }
}

/// The call note's text: the summary, whether the goal was met, and the structured fields, one
/// line each (values shortened).
/// A finished call's status as the CRM's call outcome; `None` for a call that never rang out.
pub fn call_outcome(status: CallStatus) -> Option<CallOutcome> {
    match status {
        CallStatus::Completed | CallStatus::InProgress => Some(CallOutcome::Connected),
        CallStatus::Busy => Some(CallOutcome::Busy),
        CallStatus::NoAnswer => Some(CallOutcome::NoAnswer),
        CallStatus::Failed | CallStatus::Canceled => Some(CallOutcome::Failed),
        CallStatus::Queued | CallStatus::Ringing => None,
    }
}

pub fn note_body(result: &Value) -> String {
    let mut body = format!(
        "Call summary: {}",
        result["summary"].as_str().unwrap_or("(none)")
    );
    let success = &result["success"];
    if let Some(achieved) = success["achieved"].as_bool() {
        body.push_str(&format!(
            "\nGoal {}: {}",
            if achieved { "met" } else { "not met" },
            success["reason"].as_str().unwrap_or("")
        ));
    }
    if let Some(fields) = result["fields"].as_object().filter(|f| !f.is_empty()) {
        let shown = fields
            .iter()
            .map(|(k, v)| {
                let v = v.as_str().map_or_else(|| v.to_string(), str::to_owned);
                format!("{k}: {}", v.chars().take(200).collect::<String>())
            })
            .collect::<Vec<_>>()
            .join("; ");
        body.push_str(&format!("\nFields: {shown}"));
    }
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_calls_status_is_its_crm_outcome() {
        assert_eq!(
            call_outcome(CallStatus::Completed),
            Some(CallOutcome::Connected)
        );
        assert_eq!(call_outcome(CallStatus::Busy), Some(CallOutcome::Busy));
        assert_eq!(
            call_outcome(CallStatus::NoAnswer),
            Some(CallOutcome::NoAnswer)
        );
        assert_eq!(
            call_outcome(CallStatus::Canceled),
            Some(CallOutcome::Failed)
        );
        assert_eq!(call_outcome(CallStatus::Ringing), None);
    }

    fn fields() -> Value {
        json!({"type": "object", "required": ["reason", "appointment_booked"], "properties": {
            "reason": {"type": "string"}, "appointment_booked": {"type": "boolean"}}})
    }

    #[test]
    fn replies_are_validated_against_the_envelope() {
        let schema = envelope_schema(&fields());
        let good = r#"{"summary": "Ann booked.", "fields": {"reason": "cleaning", "appointment_booked": true},
            "success": {"achieved": true, "reason": "booked"}}"#;
        assert!(check_reply(&schema, good).is_ok());
        let wrong_type = good.replace("true}", "\"yes\"}");
        let err = check_reply(&schema, &wrong_type).unwrap_err();
        assert!(err.contains("appointment_booked"), "{err}");
        assert!(check_reply(&schema, "Sure! Here is the analysis").is_err());
        let missing = r#"{"summary": "x", "fields": {"reason": "r", "appointment_booked": false}}"#;
        assert!(
            check_reply(&schema, missing)
                .unwrap_err()
                .contains("success")
        );
    }
}
