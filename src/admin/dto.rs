//! The admin API's wire types: request bodies (strict: unknown fields are refused) and response
//! views, with their OpenAPI schemas. The CLI prints the same views. Pure data: no I/O, and no
//! type here may carry a stored secret's value back out (secret requests are write-only and
//! redact themselves in `Debug`).

use std::fmt;

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::store::{
    Agent, ApiKey, Call, CallEvent, Campaign, CampaignCounts, ConnectorConfig, ContactState,
    OutboxMessage, PhoneNumber, RejectedRow, SecretInfo, Tenant, WebhookSettings, WindowSpec,
};

/// Every error answer: `{"error": {"code", "message", "field"?}}`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable machine-readable code: `malformed_json`, `invalid_field`, `unauthorized`,
    /// `forbidden`, `not_found`, `conflict`, `payload_too_large`, `unsupported_media_type`,
    /// `prompt_too_large`, `invalid_prompt`, `invalid_csv`, `vault_unavailable`, `unavailable`,
    /// `internal`.
    pub code: String,
    pub message: String,
    /// The request field at fault, for `invalid_field` and `invalid_csv`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// For `invalid_csv`: every bad row of the file with its line.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub rejected: Option<Vec<RejectedRowView>>,
}

// --- tenants ---------------------------------------------------------------------------------------

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTenantRequest {
    /// Slug used in URLs (`acme-dental`); derived from the name when omitted.
    pub id: Option<String>,
    pub name: String,
    /// IANA time zone (`Europe/Paris`).
    pub time_zone: String,
}

#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateTenantRequest {
    pub name: Option<String>,
    pub time_zone: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TenantView {
    pub id: String,
    pub name: String,
    pub time_zone: String,
    pub created_at: String,
}

impl From<Tenant> for TenantView {
    fn from(t: Tenant) -> Self {
        Self {
            id: t.id.to_string(),
            name: t.name,
            time_zone: t.time_zone,
            created_at: t.created_at.to_string(),
        }
    }
}

// --- API keys ------------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ApiKeyView {
    pub id: String,
    pub tenant_id: String,
    /// Public lookup prefix (`cbk_3f9a1c2e4b5d`), enough to tell keys apart.
    pub prefix: String,
    pub created_at: String,
    pub revoked_at: Option<String>,
}

impl From<ApiKey> for ApiKeyView {
    fn from(k: ApiKey) -> Self {
        Self {
            id: k.id,
            tenant_id: k.tenant_id.to_string(),
            prefix: k.prefix,
            created_at: k.created_at.to_string(),
            revoked_at: k.revoked_at.map(|t| t.to_string()),
        }
    }
}

/// A new key. `key` is shown this once and never again.
#[derive(Clone, Serialize, Deserialize, ToSchema)]
pub struct CreatedApiKey {
    pub api_key: ApiKeyView,
    pub key: String,
}

impl fmt::Debug for CreatedApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CreatedApiKey")
            .field("api_key", &self.api_key)
            .finish_non_exhaustive()
    }
}

// --- numbers -------------------------------------------------------------------------------------

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddNumberRequest {
    /// E.164 (`+14155550100`); unique across all tenants.
    pub number: String,
    /// The agent answering it: its id or its name.
    pub agent: String,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RouteNumberRequest {
    /// The agent answering it: its id or its name.
    pub agent: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct NumberView {
    pub number: String,
    pub tenant_id: String,
    pub agent_id: String,
    pub created_at: String,
}

impl From<PhoneNumber> for NumberView {
    fn from(n: PhoneNumber) -> Self {
        Self {
            number: n.e164.to_string(),
            tenant_id: n.tenant_id.to_string(),
            agent_id: n.agent_id,
            created_at: n.created_at.to_string(),
        }
    }
}

// --- agents --------------------------------------------------------------------------------------

/// An agent, to create or to replace entirely (omitted fields take their defaults).
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AgentRequest {
    /// Unique within the tenant.
    pub name: String,
    /// The prompt: `default` (the server's built-in prompt) or the name of one of this tenant's
    /// prompts (`PUT /tenants/{tenant}/prompts/{name}`).
    #[serde(default = "default_prompt")]
    pub prompt_template: String,
    /// Realtime provider (`openai`).
    #[serde(default = "default_provider")]
    pub provider: String,
    #[serde(default = "default_model")]
    pub model: String,
    #[serde(default = "default_voice")]
    pub voice: String,
    /// Tool names the model may call.
    #[serde(default)]
    pub enabled_tools: Vec<String>,
    /// Longest call, 10 to 14400 seconds.
    #[serde(default = "default_max_duration")]
    pub max_duration_s: u32,
    /// Silence before the agent says goodbye, 5 to 3600 seconds.
    #[serde(default = "default_silence_timeout")]
    pub silence_timeout_s: u32,
    #[serde(default)]
    pub recording: bool,
    /// What this agent's outbound calls do on an answering machine unless the call or campaign
    /// says otherwise (`hangup`, or `message` with its text); absent or `none`: no detection.
    #[serde(default)]
    pub voicemail: Option<VoicemailOption>,
}

/// A JSON merge patch (RFC 7396) of an agent: only the fields present change; `null` resets a
/// field to its default (`voicemail: null` turns detection off). Documentation type: the server
/// applies the patch to the stored agent and checks the result like a full `AgentRequest`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AgentPatch {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prompt_template: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub voice: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enabled_tools: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_duration_s: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub silence_timeout_s: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recording: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub voicemail: Option<VoicemailOption>,
}

pub fn default_prompt() -> String {
    "default".into()
}
pub fn default_provider() -> String {
    "openai".into()
}
pub fn default_model() -> String {
    "gpt-realtime".into()
}
pub fn default_voice() -> String {
    "marin".into()
}
pub fn default_max_duration() -> u32 {
    900
}
pub fn default_silence_timeout() -> u32 {
    30
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AgentView {
    pub id: String,
    pub tenant_id: String,
    pub name: String,
    pub provider: String,
    pub model: String,
    pub voice: String,
    pub prompt_template: String,
    pub enabled_tools: Vec<String>,
    pub max_duration_s: u32,
    pub silence_timeout_s: u32,
    pub recording: bool,
    /// Absent: no answering machine detection by default.
    pub voicemail: Option<VoicemailOption>,
    pub created_at: String,
    pub updated_at: String,
}

impl From<Agent> for AgentView {
    fn from(a: Agent) -> Self {
        Self {
            id: a.id,
            tenant_id: a.tenant_id.to_string(),
            name: a.spec.name,
            provider: a.spec.provider,
            model: a.spec.model,
            voice: a.spec.voice,
            prompt_template: a.spec.prompt_template,
            enabled_tools: a.spec.enabled_tools,
            max_duration_s: a.spec.max_duration_s,
            silence_timeout_s: a.spec.silence_timeout_s,
            recording: a.spec.recording,
            voicemail: a.spec.voicemail.as_ref().map(VoicemailOption::from),
            created_at: a.created_at.to_string(),
            updated_at: a.updated_at.to_string(),
        }
    }
}

// --- do-not-call list ---------------------------------------------------------------------------

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DoNotCallRequest {
    /// E.164 number never to dial.
    pub number: String,
    /// Why (at most 200 characters; default `added by operator`).
    pub reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DoNotCallView {
    pub number: String,
    pub reason: String,
    pub created_at: String,
}

impl From<crate::store::DoNotCallEntry> for DoNotCallView {
    fn from(e: crate::store::DoNotCallEntry) -> Self {
        Self {
            number: e.e164.to_string(),
            reason: e.reason,
            created_at: e.created_at.to_string(),
        }
    }
}

// --- prompts -------------------------------------------------------------------------------------

/// The text of a new version of a prompt.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PromptRequest {
    /// The instructions, at most 32 KiB, with `{{variable}}` placeholders (`caller`, `called`,
    /// `call_sid`, `direction`, `tenant`, `now_utc`, …, and `var.NAME` for per-call variables).
    pub text: String,
}

/// Which earlier version becomes the current text again (as a new version).
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PromptRollbackRequest {
    pub version: i64,
}

/// Copies a template file of the server's prompts directory into the tenant's prompts.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PromptImportRequest {
    /// The template: `<template>.md` in the server's prompts directory.
    pub template: String,
    /// The tenant's prompt to write (default: the template's name).
    pub name: Option<String>,
}

/// One version of a tenant's prompt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PromptView {
    pub name: String,
    pub version: i64,
    pub text: String,
    pub created_at: String,
}

impl From<crate::store::PromptVersion> for PromptView {
    fn from(p: crate::store::PromptVersion) -> Self {
        Self {
            name: p.name,
            version: p.version,
            text: p.body,
            created_at: p.created_at.to_string(),
        }
    }
}

/// A version of a prompt without its text (the history listing).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PromptVersionView {
    pub version: i64,
    pub bytes: usize,
    pub created_at: String,
}

#[derive(Debug, Clone, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct PromptQuery {
    /// A version (default: the current one).
    pub version: Option<i64>,
}

#[derive(Debug, Clone, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct PromptDiffQuery {
    /// The older version.
    pub from: i64,
    /// The newer version (default: the current one).
    pub to: Option<i64>,
}

/// A line diff between two versions (`-` removed, `+` added, ` ` unchanged).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PromptDiffView {
    pub name: String,
    pub from: i64,
    pub to: i64,
    pub diff: String,
}

// --- connectors ----------------------------------------------------------------------------------

#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConnectorRequest {
    /// Overrides the vendor's API base URL (self-hosted Cal.com, a shop domain).
    pub base_url: Option<String>,
    /// Name of one of the tenant's secrets holding the credential.
    pub secret_name: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ConnectorView {
    pub tenant_id: String,
    pub vendor: String,
    pub base_url: Option<String>,
    pub secret_name: Option<String>,
    pub updated_at: String,
}

impl From<ConnectorConfig> for ConnectorView {
    fn from(c: ConnectorConfig) -> Self {
        Self {
            tenant_id: c.tenant_id.to_string(),
            vendor: c.spec.vendor,
            base_url: c.spec.base_url,
            secret_name: c.spec.secret_name,
            updated_at: c.updated_at.to_string(),
        }
    }
}

// --- secrets -------------------------------------------------------------------------------------

/// Write-only: the value is encrypted at rest and never returned.
#[derive(Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SecretRequest {
    /// A connector vendor, or `webhook` for a webhook signing secret (`whsec_…`).
    pub vendor: String,
    pub value: String,
}

impl fmt::Debug for SecretRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretRequest")
            .field("vendor", &self.vendor)
            .field("value", &"**REDACTED**")
            .finish()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SecretView {
    pub tenant_id: String,
    pub name: String,
    pub vendor: String,
    /// Last four characters of the value (empty for values shorter than 12 characters).
    pub last4: String,
    pub created_at: String,
    pub updated_at: String,
}

impl From<SecretInfo> for SecretView {
    fn from(s: SecretInfo) -> Self {
        Self {
            tenant_id: s.tenant_id.to_string(),
            name: s.name,
            vendor: s.vendor,
            last4: s.last4,
            created_at: s.created_at.to_string(),
            updated_at: s.updated_at.to_string(),
        }
    }
}

/// A freshly generated webhook signing secret, shown this once (give it to the receiver).
#[derive(Clone, Serialize, Deserialize, ToSchema)]
pub struct GeneratedSigningSecret {
    pub secret: SecretView,
    pub signing_secret: String,
}

impl fmt::Debug for GeneratedSigningSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GeneratedSigningSecret")
            .field("secret", &self.secret)
            .finish_non_exhaustive()
    }
}

// --- calls ---------------------------------------------------------------------------------------

#[derive(Debug, Clone, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct CallsQuery {
    /// Most recent calls to return, 1 to 500 (default 50).
    pub limit: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CallView {
    pub id: String,
    pub tenant_id: String,
    pub agent_id: String,
    pub direction: String,
    pub from: String,
    pub to: String,
    pub twilio_call_sid: Option<String>,
    pub status: String,
    pub started_at: String,
    pub ended_at: Option<String>,
    pub duration_ms: Option<i64>,
    pub end_reason: Option<String>,
    /// Whether a recording was kept.
    pub recorded: bool,
}

impl From<Call> for CallView {
    fn from(c: Call) -> Self {
        Self {
            duration_ms: c
                .ended_at
                .map(|end| (end.as_millisecond() - c.started_at.as_millisecond()).max(0)),
            id: c.id,
            tenant_id: c.tenant_id.to_string(),
            agent_id: c.agent_id,
            direction: c.direction.as_str().to_owned(),
            from: c.from,
            to: c.to,
            twilio_call_sid: c.twilio_call_sid,
            status: c.status.as_str().to_owned(),
            started_at: c.started_at.to_string(),
            ended_at: c.ended_at.map(|t| t.to_string()),
            end_reason: c.end_reason,
            recorded: c.recording_path.is_some(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CallEventView {
    pub seq: i64,
    pub at: String,
    /// `transcript`, `tool_call`, `tool_result`, `barge_in`, `dtmf`, `status` or `error`.
    pub kind: String,
    #[schema(value_type = Object)]
    pub payload: serde_json::Value,
}

impl From<CallEvent> for CallEventView {
    fn from(e: CallEvent) -> Self {
        Self {
            seq: e.seq,
            at: e.at.to_string(),
            kind: e.kind.as_str().to_owned(),
            payload: e.payload,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CallDetail {
    pub call: CallView,
    pub events: Vec<CallEventView>,
}

// --- webhook -------------------------------------------------------------------------------------

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookRequest {
    /// `https://…` (plain http only for 127.0.0.1 / localhost).
    pub url: String,
    /// The tenant secret (vendor `webhook`) holding the `whsec_…` signing secret.
    pub secret_name: String,
    #[serde(default = "default_enabled")]
    pub enabled: bool,
}

fn default_enabled() -> bool {
    true
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct WebhookView {
    pub tenant_id: String,
    pub url: String,
    pub secret_name: String,
    pub enabled: bool,
    pub created_at: String,
    pub updated_at: String,
}

impl From<WebhookSettings> for WebhookView {
    fn from(w: WebhookSettings) -> Self {
        Self {
            tenant_id: w.tenant_id.to_string(),
            url: w.spec.url,
            secret_name: w.spec.secret_name,
            enabled: w.spec.enabled,
            created_at: w.created_at.to_string(),
            updated_at: w.updated_at.to_string(),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GenerateSigningSecretRequest {
    /// Name to store it under (default `webhook-signing`); an existing secret of that name is
    /// replaced, which rotates the signing secret.
    pub secret_name: Option<String>,
}

/// One outbox message and its delivery state (the payload itself is not shown).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DeliveryView {
    /// Also the `webhook-id` header the receiver sees.
    pub id: String,
    pub event_type: String,
    /// `pending`, `delivered`, `failed` or `cancelled`.
    pub status: String,
    pub attempts: u32,
    pub next_attempt_at: String,
    pub last_error: Option<String>,
    pub created_at: String,
    pub delivered_at: Option<String>,
}

impl From<OutboxMessage> for DeliveryView {
    fn from(m: OutboxMessage) -> Self {
        Self {
            id: m.id,
            event_type: m.event_type,
            status: m.status.as_str().to_owned(),
            attempts: m.attempts,
            next_attempt_at: m.next_attempt_at.to_string(),
            last_error: m.last_error,
            created_at: m.created_at.to_string(),
            delivered_at: m.delivered_at.map(|t| t.to_string()),
        }
    }
}

// --- outbound calls -------------------------------------------------------------------------------

/// What to do when answering machine detection reports a machine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VoicemailOption {
    /// `hangup` or `message`.
    pub action: String,
    /// Spoken after the beep when `action` is `message`.
    pub message: Option<String>,
}

impl From<&crate::store::Voicemail> for VoicemailOption {
    fn from(voicemail: &crate::store::Voicemail) -> Self {
        Self {
            action: voicemail.action().as_str().to_owned(),
            message: voicemail.message().map(str::to_owned),
        }
    }
}

/// `POST /calls`: place one outbound call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PlaceCallRequest {
    /// The tenant placing the call; required with the admin key, optional with a tenant key.
    pub tenant: Option<String>,
    /// Number to call, E.164 (`+14155550123`).
    pub to: String,
    /// Agent id or name.
    pub agent: String,
    /// Per-call prompt variables, used as `{{var.NAME}}` in the agent's prompt template.
    #[serde(default)]
    pub variables: std::collections::BTreeMap<String, String>,
    /// Answering machine detection; absent: the agent's setting; `{"action":"none"}`: off.
    pub voicemail: Option<VoicemailOption>,
}

/// A call Twilio accepted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PlacedCallView {
    pub call_id: String,
    pub twilio_call_sid: String,
    pub from: String,
    pub to: String,
    pub status: String,
}

// --- campaigns -----------------------------------------------------------------------------------

/// Recipient-local calling hours and days.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WindowOption {
    /// `HH:MM-HH:MM`, start inclusive, end exclusive (`24:00` allowed as the end).
    #[serde(default = "default_window_hours")]
    pub hours: String,
    /// `mon-sat`, `mon,wed,fri` or `all`.
    #[serde(default = "default_window_days")]
    pub days: String,
}

pub fn default_window_hours() -> String {
    "09:00-20:00".into()
}
pub fn default_window_days() -> String {
    "mon-sat".into()
}

impl Default for WindowOption {
    fn default() -> Self {
        Self {
            hours: default_window_hours(),
            days: default_window_days(),
        }
    }
}

impl From<WindowSpec> for WindowOption {
    fn from(spec: WindowSpec) -> Self {
        let clock = |min: u16| format!("{:02}:{:02}", min / 60, min % 60);
        Self {
            hours: format!("{}-{}", clock(spec.start_min), clock(spec.end_min)),
            days: days_text(spec.days_mask),
        }
    }
}

/// Weekday bits (Monday = bit 0) as the shortest text [`crate::campaign::window::CallingWindow::parse`]
/// reads back: `all`, runs as `mon-fri`, single days comma-separated.
fn days_text(mask: u8) -> String {
    const NAMES: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
    if mask & 0x7f == 0x7f {
        return "all".into();
    }
    let mut parts = Vec::new();
    let mut day = 0;
    while day < 7 {
        if mask & (1 << day) == 0 {
            day += 1;
            continue;
        }
        let start = day;
        while day + 1 < 7 && mask & (1 << (day + 1)) != 0 {
            day += 1;
        }
        parts.push(if day - start >= 2 {
            format!("{}-{}", NAMES[start], NAMES[day])
        } else {
            (start..=day)
                .map(|d| NAMES[d])
                .collect::<Vec<_>>()
                .join(",")
        });
        day += 1;
    }
    parts.join(",")
}

/// `POST /campaigns`: a campaign and its contacts from a CSV file.
#[derive(Debug, Clone, PartialEq, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateCampaignRequest {
    /// The tenant; required with the admin key, optional with a tenant key.
    pub tenant: Option<String>,
    pub name: String,
    /// Agent id or name.
    pub agent: String,
    /// The contacts file's text: a `phone` column (E.164), an optional `time_zone` column, and
    /// any other columns as per-contact variables (`{{var.COLUMN}}`). At most 10 MiB.
    pub csv: String,
    /// Default 09:00-20:00, mon-sat, in each recipient's time zone.
    #[serde(default)]
    pub window: WindowOption,
    /// Pacing of this campaign, more than 0 and at most 100 (default 1).
    #[serde(default = "default_calls_per_second")]
    pub calls_per_second: f64,
    /// Calls of this campaign in progress at once (default 5).
    #[serde(default = "default_campaign_concurrency")]
    pub max_concurrent: u32,
    /// Attempts per contact, the first included, 1 to 20 (default 3).
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// Wait before retrying a busy, unanswered or failed call (default 3600).
    #[serde(default = "default_retry_delay")]
    pub retry_delay_secs: i64,
    /// Answering machine detection; absent: off.
    pub voicemail: Option<VoicemailOption>,
    /// Refuse the whole file when any row is bad (default: import the good rows and report the
    /// bad ones).
    #[serde(default)]
    pub strict: bool,
}

pub fn default_calls_per_second() -> f64 {
    1.0
}
pub fn default_campaign_concurrency() -> u32 {
    5
}
pub fn default_max_attempts() -> u32 {
    3
}
pub fn default_retry_delay() -> i64 {
    3600
}

/// A row of the file that was not imported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RejectedRowView {
    /// 1-based line in the file (the header is line 1).
    pub line: u64,
    pub message: String,
}

impl From<RejectedRow> for RejectedRowView {
    fn from(r: RejectedRow) -> Self {
        Self {
            line: r.line,
            message: r.message,
        }
    }
}

/// Contacts counted by where they are and how they ended.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CampaignCountsView {
    pub total: u64,
    pub pending: u64,
    pub dialing: u64,
    pub in_call: u64,
    pub done: u64,
    /// Done contacts by outcome (`completed`, `voicemail`, `busy`, `no_answer`, `failed`,
    /// `cancelled`, …).
    pub by_outcome: std::collections::BTreeMap<String, u64>,
}

impl From<CampaignCounts> for CampaignCountsView {
    fn from(c: CampaignCounts) -> Self {
        Self {
            total: c.total,
            pending: c.state(ContactState::Pending),
            dialing: c.state(ContactState::Dialing),
            in_call: c.state(ContactState::InCall),
            done: c.state(ContactState::Done),
            by_outcome: c.by_outcome,
        }
    }
}

/// A campaign: settings, status and progress.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CampaignView {
    pub id: String,
    pub tenant_id: String,
    pub name: String,
    pub agent_id: String,
    /// `active`, `paused`, `cancelled` or `completed`.
    pub status: String,
    pub window: WindowOption,
    /// `null` when the campaign is not paced.
    pub calls_per_second: Option<f64>,
    pub dial_interval_ms: i64,
    pub max_concurrent: u32,
    pub max_attempts: u32,
    pub retry_delay_secs: i64,
    pub voicemail: Option<VoicemailOption>,
    pub counts: CampaignCountsView,
    pub rejected_count: usize,
    /// The rows of the file that were not imported (in the list: omitted, see `rejected_count`).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub rejected: Option<Vec<RejectedRowView>>,
    pub created_at: String,
    pub updated_at: String,
}

impl CampaignView {
    /// The view of `campaign` with its `counts`; `with_rejected` includes the rejected rows.
    pub fn new(campaign: Campaign, counts: CampaignCounts, with_rejected: bool) -> Self {
        let spec = campaign.spec;
        let voicemail = spec.voicemail.as_ref().map(VoicemailOption::from);
        Self {
            id: campaign.id,
            tenant_id: campaign.tenant_id.to_string(),
            name: spec.name,
            agent_id: spec.agent_id,
            status: campaign.status.as_str().to_owned(),
            window: spec.window.into(),
            calls_per_second: calls_per_second(spec.dial_interval_ms),
            dial_interval_ms: spec.dial_interval_ms,
            max_concurrent: spec.max_concurrent,
            max_attempts: spec.max_attempts,
            retry_delay_secs: spec.retry_delay_s,
            voicemail,
            counts: counts.into(),
            rejected_count: campaign.rejected_rows.len(),
            rejected: with_rejected
                .then(|| campaign.rejected_rows.into_iter().map(Into::into).collect()),
            created_at: campaign.created_at.to_string(),
            updated_at: campaign.updated_at.to_string(),
        }
    }
}

/// Calls per second of a dial interval; `None` for no pacing.
pub fn calls_per_second(dial_interval_ms: i64) -> Option<f64> {
    (dial_interval_ms > 0).then(|| 1000.0 / dial_interval_ms as f64)
}

#[derive(Debug, Clone, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct CampaignsQuery {
    /// The tenant whose campaigns to list: required with the admin key, optional with a tenant key.
    pub tenant: Option<String>,
}

/// A tenant's dialling limits across all its campaigns and nodes.
#[derive(Debug, Clone, PartialEq, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DialLimitsRequest {
    /// Campaign calls of the tenant in progress at once, 1 to 10000.
    pub max_concurrent: u32,
    /// More than 0 and at most 100.
    pub calls_per_second: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DialLimitsView {
    pub tenant_id: String,
    pub max_concurrent: u32,
    /// `null` when not paced.
    pub calls_per_second: Option<f64>,
    pub dial_interval_ms: i64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::campaign::window::CallingWindow;

    #[test]
    fn windows_are_shown_as_text_that_parses_back_to_them() {
        for (hours, days, shown_days) in [
            ("09:00-20:00", "mon-sat", "mon-sat"),
            ("08:30-24:00", "all", "all"),
            ("10:00-12:15", "mon,wed,fri", "mon,wed,fri"),
            ("10:00-12:15", "sat,sun", "sat,sun"),
            ("07:00-09:00", "mon-wed,fri-sun", "mon-wed,fri-sun"),
            ("07:00-09:00", "tue", "tue"),
        ] {
            let spec = CallingWindow::parse(hours, days).expect("valid").to_spec();
            let shown = WindowOption::from(spec);
            assert_eq!(
                (shown.hours.as_str(), shown.days.as_str()),
                (hours, shown_days)
            );
            let again = CallingWindow::parse(&shown.hours, &shown.days).expect("parses back");
            assert_eq!(again.to_spec(), spec);
        }
    }

    #[test]
    fn pacing_is_shown_as_calls_per_second() {
        assert_eq!(calls_per_second(500), Some(2.0));
        assert_eq!(calls_per_second(4000), Some(0.25));
        assert_eq!(calls_per_second(0), None);
    }
}

// --- messaging and staff notifications -----------------------------------------------------------

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NotificationRuleRequest {
    /// `booking.created`, `booking.rescheduled`, `booking.cancelled`, `call.ended`, `opt_out`,
    /// `transfer.requested` or `payment.received`.
    pub event: String,
    /// `sms`, `whatsapp`, `email`, `slack` or `teams`.
    pub channel: String,
    /// E.164 number or email address; `caller` (sms, whatsapp) for the person on the call; for
    /// slack and teams a label (the connector's channel is used), default `default`.
    #[serde(default)]
    pub recipient: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct NotificationRuleView {
    pub id: String,
    pub event: String,
    pub channel: String,
    pub recipient: String,
    pub created_at: String,
}

/// A notification's delivery state (its text is not returned).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct NotificationView {
    pub id: String,
    pub event: String,
    pub channel: String,
    /// `pending`, `delivered`, `failed` or `cancelled`.
    pub status: String,
    pub attempts: u32,
    pub last_error: Option<String>,
    pub created_at: String,
    pub delivered_at: Option<String>,
}
