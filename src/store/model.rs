//! Typed rows and inputs of the store, with the validation that runs before anything reaches the
//! database (tenant ids, E.164 numbers, names, time zones). It owns no I/O and must not hold secret
//! plaintext: sealed secrets here are ciphertext only.

use std::fmt;

use jiff::Timestamp;
use serde_json::Value;

use super::StoreError;

/// A tenant's id: a short slug chosen by the operator (`acme`, `dental-west`), used in URLs and in
/// the Twilio stream's custom parameters. Lowercase ASCII letters, digits, `-` and `_`, starting
/// with a letter or digit, at most 64 characters.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TenantId(String);

impl TenantId {
    /// Validates `raw` as a tenant id.
    pub fn parse(raw: &str) -> Result<Self, StoreError> {
        validate_slug("tenant id", raw, 64)?;
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for TenantId {
    type Err = StoreError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// A phone number in E.164 form: `+` then 8 to 15 digits, the first not `0`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct E164(String);

impl E164 {
    /// Validates `raw` as E.164. No normalisation: spaces, dashes or a missing `+` are errors, so
    /// what is stored is exactly what Twilio sends in `To`/`From`.
    pub fn parse(raw: &str) -> Result<Self, StoreError> {
        let Some(digits) = raw.strip_prefix('+') else {
            return Err(StoreError::invalid(
                "phone number",
                format!("{raw:?} must start with '+' (E.164)"),
            ));
        };
        if !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(StoreError::invalid(
                "phone number",
                format!("{raw:?} must contain only digits after '+' (E.164)"),
            ));
        }
        if !(8..=15).contains(&digits.len()) {
            return Err(StoreError::invalid(
                "phone number",
                format!("{raw:?} must have 8 to 15 digits after '+' (E.164)"),
            ));
        }
        if digits.starts_with('0') {
            return Err(StoreError::invalid(
                "phone number",
                format!("{raw:?}: a country code never starts with 0 (E.164)"),
            ));
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for E164 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for E164 {
    type Err = StoreError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// Input for creating a tenant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewTenant {
    pub id: TenantId,
    pub name: String,
    /// IANA time zone name (`Europe/Paris`), used for calling windows and spoken dates.
    pub time_zone: String,
}

/// One business served by this deployment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tenant {
    pub id: TenantId,
    pub name: String,
    pub time_zone: String,
    pub created_at: Timestamp,
}

/// What an agent is: everything needed to run a call with it. Used both to create and to update.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentSpec {
    /// Unique within the tenant.
    pub name: String,
    /// Realtime provider key as the realtime module names it (`openai`, `xai`, `azure`, `gemini`).
    pub provider: String,
    pub model: String,
    pub voice: String,
    /// Name of the prompt template under `prompts/`.
    pub prompt_template: String,
    /// Capability tool names the model may call (`book_appointment`, …).
    pub enabled_tools: Vec<String>,
    pub max_duration_s: u32,
    pub silence_timeout_s: u32,
    pub recording: bool,
    /// What this agent's outbound calls do when answering machine detection reports a machine,
    /// unless a call or campaign says otherwise; `None`: no detection.
    pub voicemail: Option<Voicemail>,
}

/// What to do when answering machine detection reports a machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Voicemail {
    /// Hang up without a message.
    HangUp,
    /// Say this text after the beep, then hang up.
    LeaveMessage(String),
}

impl Voicemail {
    /// What is done on a machine answer (the `machine_action` column).
    pub fn action(&self) -> MachineAction {
        match self {
            Self::HangUp => MachineAction::Hangup,
            Self::LeaveMessage(_) => MachineAction::Message,
        }
    }

    /// The text left after the beep, if any.
    pub fn message(&self) -> Option<&str> {
        match self {
            Self::HangUp => None,
            Self::LeaveMessage(text) => Some(text),
        }
    }

    /// From the stored form; `None` when detection is off.
    pub fn from_columns(
        action: Option<&str>,
        message: Option<String>,
    ) -> Result<Option<Self>, StoreError> {
        match (action, message) {
            (None, _) => Ok(None),
            (Some("hangup"), _) => Ok(Some(Self::HangUp)),
            (Some("message"), Some(text)) => Ok(Some(Self::LeaveMessage(text))),
            (Some(other), _) => Err(StoreError::Corrupt {
                what: "voicemail action",
                reason: format!("{other:?} without a usable message"),
            }),
        }
    }
}

/// An agent row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Agent {
    pub id: String,
    pub tenant_id: TenantId,
    pub spec: AgentSpec,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// An agent to create together with the numbers routed to it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentProvision {
    pub spec: AgentSpec,
    pub numbers: Vec<E164>,
}

/// A phone number owned by a tenant and routed to one of its agents.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PhoneNumber {
    pub e164: E164,
    pub tenant_id: TenantId,
    pub agent_id: String,
    pub created_at: Timestamp,
}

/// How a tenant reaches one vendor. Used both to create and to replace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectorSpec {
    /// Connector key (`hubspot`, `calcom`, `shopify`, …); one configuration per vendor per tenant.
    pub vendor: String,
    /// Overrides the vendor's default API base (self-hosted Cal.com, a shop domain, a test server).
    pub base_url: Option<String>,
    /// Name of the tenant's secret holding the credential; must exist in the same tenant.
    pub secret_name: Option<String>,
}

/// A connector configuration row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectorConfig {
    pub tenant_id: TenantId,
    pub spec: ConnectorSpec,
    pub updated_at: Timestamp,
}

/// What list methods show of a secret: never the ciphertext, never the plaintext.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecretInfo {
    pub tenant_id: TenantId,
    pub name: String,
    pub vendor: String,
    /// Last four characters of the plaintext, so an operator can tell keys apart.
    pub last4: String,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// An encrypted secret as the vault writes it.
#[derive(Clone, PartialEq, Eq)]
pub struct NewSealedSecret {
    pub name: String,
    pub vendor: String,
    /// Nonce and AEAD output, opaque to the store.
    pub ciphertext: Vec<u8>,
    /// Id of the master key that sealed it.
    pub key_id: String,
    pub last4: String,
}

/// An encrypted secret row, for the vault only.
#[derive(Clone, PartialEq, Eq)]
pub struct SealedSecret {
    pub tenant_id: TenantId,
    pub name: String,
    pub vendor: String,
    pub ciphertext: Vec<u8>,
    pub key_id: String,
    pub last4: String,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl SealedSecret {
    pub fn info(&self) -> SecretInfo {
        SecretInfo {
            tenant_id: self.tenant_id.clone(),
            name: self.name.clone(),
            vendor: self.vendor.clone(),
            last4: self.last4.clone(),
            created_at: self.created_at,
            updated_at: self.updated_at,
        }
    }
}

// Ciphertext is not secret, but `last4` is a fragment of one and dumps of blobs help nobody.
impl fmt::Debug for SealedSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SealedSecret")
            .field("tenant_id", &self.tenant_id)
            .field("name", &self.name)
            .field("vendor", &self.vendor)
            .field("key_id", &self.key_id)
            .field("ciphertext_len", &self.ciphertext.len())
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for NewSealedSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewSealedSecret")
            .field("name", &self.name)
            .field("vendor", &self.vendor)
            .field("key_id", &self.key_id)
            .field("ciphertext_len", &self.ciphertext.len())
            .finish_non_exhaustive()
    }
}

/// A re-encrypted secret, written by key rotation only if the row is still under `old_key_id`.
#[derive(Clone, PartialEq, Eq)]
pub struct ResealedSecret {
    pub tenant_id: TenantId,
    pub name: String,
    pub old_key_id: String,
    pub ciphertext: Vec<u8>,
    pub key_id: String,
}

impl fmt::Debug for ResealedSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResealedSecret")
            .field("tenant_id", &self.tenant_id)
            .field("name", &self.name)
            .field("old_key_id", &self.old_key_id)
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

/// An API key as listed: the hash stays inside the store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiKey {
    pub id: String,
    pub tenant_id: TenantId,
    /// Public, non-secret lookup prefix shown to operators (`cbk_3f9a1c2e`).
    pub prefix: String,
    pub created_at: Timestamp,
    pub revoked_at: Option<Timestamp>,
}

/// An API key with its stored hash, for authentication only.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiKeyCredential {
    pub key: ApiKey,
    pub key_hash: Vec<u8>,
}

/// Which side placed the call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CallDirection {
    Inbound,
    Outbound,
}

impl CallDirection {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Inbound => "inbound",
            Self::Outbound => "outbound",
        }
    }

    fn parse(raw: &str) -> Option<Self> {
        match raw {
            "inbound" => Some(Self::Inbound),
            "outbound" => Some(Self::Outbound),
            _ => None,
        }
    }
}

/// A call's lifecycle state (Twilio's call statuses).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CallStatus {
    Queued,
    Ringing,
    InProgress,
    Completed,
    Busy,
    NoAnswer,
    Failed,
    Canceled,
}

impl CallStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Ringing => "ringing",
            Self::InProgress => "in-progress",
            Self::Completed => "completed",
            Self::Busy => "busy",
            Self::NoAnswer => "no-answer",
            Self::Failed => "failed",
            Self::Canceled => "canceled",
        }
    }

    /// Parses Twilio's spelling (`in-progress`, `no-answer`, …).
    pub fn parse(raw: &str) -> Option<Self> {
        Some(match raw {
            "queued" => Self::Queued,
            "ringing" => Self::Ringing,
            "in-progress" => Self::InProgress,
            "completed" => Self::Completed,
            "busy" => Self::Busy,
            "no-answer" => Self::NoAnswer,
            "failed" => Self::Failed,
            "canceled" => Self::Canceled,
            _ => return None,
        })
    }
}

/// Input for recording a new call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewCall {
    pub tenant_id: TenantId,
    pub agent_id: String,
    pub direction: CallDirection,
    /// As Twilio reports it; may be `anonymous` or a SIP URI, so not validated as E.164.
    pub from: String,
    pub to: String,
    pub twilio_call_sid: Option<String>,
    pub status: CallStatus,
}

/// How a call ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallEnd {
    pub status: CallStatus,
    /// Machine-readable reason (`caller_hangup`, `max_duration`, `silence_timeout`, …).
    pub end_reason: String,
    pub recording_path: Option<String>,
}

/// A call row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Call {
    pub id: String,
    pub tenant_id: TenantId,
    pub agent_id: String,
    pub direction: CallDirection,
    pub from: String,
    pub to: String,
    pub twilio_call_sid: Option<String>,
    pub started_at: Timestamp,
    pub ended_at: Option<Timestamp>,
    pub status: CallStatus,
    pub end_reason: Option<String>,
    pub recording_path: Option<String>,
}

/// What a call event records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CallEventKind {
    Transcript,
    ToolCall,
    ToolResult,
    BargeIn,
    Dtmf,
    Status,
    Error,
    /// A transfer to a person started, was carried out, or failed.
    Transfer,
}

impl CallEventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Transcript => "transcript",
            Self::ToolCall => "tool_call",
            Self::ToolResult => "tool_result",
            Self::BargeIn => "barge_in",
            Self::Dtmf => "dtmf",
            Self::Status => "status",
            Self::Error => "error",
            Self::Transfer => "transfer",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Some(match raw {
            "transcript" => Self::Transcript,
            "tool_call" => Self::ToolCall,
            "tool_result" => Self::ToolResult,
            "barge_in" => Self::BargeIn,
            "dtmf" => Self::Dtmf,
            "status" => Self::Status,
            "error" => Self::Error,
            "transfer" => Self::Transfer,
            _ => return None,
        })
    }
}

/// One event of a call, numbered from 1 in the order it was appended.
#[derive(Clone, Debug, PartialEq)]
pub struct CallEvent {
    pub call_id: String,
    pub seq: i64,
    pub at: Timestamp,
    pub kind: CallEventKind,
    pub payload: Value,
}

/// State of a tool call in the ledger.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LedgerStatus {
    /// Claimed; the vendor call is running or its outcome is unknown.
    Pending,
    Succeeded,
    Failed,
}

impl LedgerStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
        }
    }

    fn parse(raw: &str) -> Option<Self> {
        Some(match raw {
            "pending" => Self::Pending,
            "succeeded" => Self::Succeeded,
            "failed" => Self::Failed,
            _ => return None,
        })
    }
}

/// Input for claiming an idempotency key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewLedgerEntry {
    pub idempotency_key: String,
    pub tool: String,
    /// Hash of the canonical arguments; a key reused with other arguments is a conflict.
    pub arguments_hash: String,
}

/// A tool-call ledger row.
#[derive(Clone, Debug, PartialEq)]
pub struct LedgerEntry {
    pub tenant_id: TenantId,
    pub idempotency_key: String,
    pub tool: String,
    pub arguments_hash: String,
    pub status: LedgerStatus,
    pub result: Option<Value>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// Outcome of [`crate::store::Store::ledger_claim`].
#[derive(Clone, Debug, PartialEq)]
pub enum LedgerClaim {
    /// This caller inserted the row and must perform the tool call.
    Claimed(LedgerEntry),
    /// Someone already claimed the key; here is what they recorded.
    Existing(LedgerEntry),
}

pub(crate) fn parse_direction(raw: &str) -> Result<CallDirection, StoreError> {
    CallDirection::parse(raw).ok_or_else(|| corrupt("calls.direction", raw))
}

pub(crate) fn parse_call_status(raw: &str) -> Result<CallStatus, StoreError> {
    CallStatus::parse(raw).ok_or_else(|| corrupt("calls.status", raw))
}

pub(crate) fn parse_event_kind(raw: &str) -> Result<CallEventKind, StoreError> {
    CallEventKind::parse(raw).ok_or_else(|| corrupt("call_events.kind", raw))
}

pub(crate) fn parse_ledger_status(raw: &str) -> Result<LedgerStatus, StoreError> {
    LedgerStatus::parse(raw).ok_or_else(|| corrupt("tool_ledger.status", raw))
}

fn corrupt(what: &'static str, raw: &str) -> StoreError {
    StoreError::Corrupt {
        what,
        reason: format!("unknown value {raw:?}"),
    }
}

/// A lowercase identifier: `[a-z0-9][a-z0-9_-]*`, at most `max` bytes.
pub(crate) fn validate_slug(field: &'static str, raw: &str, max: usize) -> Result<(), StoreError> {
    if raw.is_empty() || raw.len() > max {
        return Err(StoreError::invalid(
            field,
            format!("{raw:?} must be 1 to {max} characters"),
        ));
    }
    let mut bytes = raw.bytes();
    let first_ok = bytes
        .next()
        .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    let rest_ok =
        bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if !(first_ok && rest_ok) {
        return Err(StoreError::invalid(
            field,
            format!(
                "{raw:?} may contain only a-z, 0-9, '-' and '_', starting with a letter or digit"
            ),
        ));
    }
    Ok(())
}

/// Characters that reorder or hide text when shown (bidirectional overrides, embeddings,
/// isolates and marks, zero-width characters): a name carrying them can display as another
/// ("Trojan Source"-style spoofing in listings, logs and CSV exports).
pub(crate) fn is_display_spoofing(c: char) -> bool {
    matches!(
        c,
        '\u{202A}'..='\u{202E}'
            | '\u{2066}'..='\u{2069}'
            | '\u{200B}'..='\u{200F}'
            | '\u{061C}'
            | '\u{FEFF}'
    )
}

/// Free text shown to people: trimmed non-empty, at most `max` characters, no control
/// characters, no bidirectional-override or invisible characters.
pub(crate) fn validate_text(field: &'static str, raw: &str, max: usize) -> Result<(), StoreError> {
    if raw.trim().is_empty() {
        return Err(StoreError::invalid(field, "must not be empty"));
    }
    if raw.chars().count() > max {
        return Err(StoreError::invalid(
            field,
            format!("must be at most {max} characters"),
        ));
    }
    if raw.chars().any(char::is_control) {
        return Err(StoreError::invalid(
            field,
            "must not contain control characters",
        ));
    }
    if raw.chars().any(is_display_spoofing) {
        return Err(StoreError::invalid(
            field,
            "must not contain bidirectional-override or invisible characters",
        ));
    }
    Ok(())
}

pub(crate) fn validate_time_zone(raw: &str) -> Result<(), StoreError> {
    jiff::tz::TimeZone::get(raw).map(|_| ()).map_err(|e| {
        StoreError::invalid(
            "time zone",
            format!("{raw:?} is not a known IANA time zone: {e}"),
        )
    })
}

pub(crate) fn validate_new_tenant(tenant: &NewTenant) -> Result<(), StoreError> {
    validate_text("tenant name", &tenant.name, 200)?;
    validate_time_zone(&tenant.time_zone)
}

pub(crate) fn validate_agent(spec: &AgentSpec) -> Result<(), StoreError> {
    validate_text("agent name", &spec.name, 200)?;
    validate_slug("agent provider", &spec.provider, 64)?;
    validate_text("agent model", &spec.model, 200)?;
    validate_text("agent voice", &spec.voice, 200)?;
    validate_text("agent prompt template", &spec.prompt_template, 200)?;
    for tool in &spec.enabled_tools {
        validate_slug("agent enabled tool", tool, 64)?;
    }
    if spec.max_duration_s == 0 {
        return Err(StoreError::invalid(
            "agent max duration",
            "must be at least 1 second",
        ));
    }
    if spec.silence_timeout_s == 0 {
        return Err(StoreError::invalid(
            "agent silence timeout",
            "must be at least 1 second",
        ));
    }
    if let Some(Voicemail::LeaveMessage(text)) = &spec.voicemail {
        validate_text("agent voicemail message", text, 2000)?;
    }
    Ok(())
}

pub(crate) fn validate_connector(spec: &ConnectorSpec) -> Result<(), StoreError> {
    validate_slug("connector vendor", &spec.vendor, 64)?;
    if let Some(url) = &spec.base_url {
        let has_scheme = url.starts_with("https://") || url.starts_with("http://");
        if !has_scheme
            || url.len() > 2048
            || url.chars().any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(StoreError::invalid(
                "connector base URL",
                format!("{url:?} must be an http:// or https:// URL without spaces"),
            ));
        }
    }
    if let Some(name) = &spec.secret_name {
        validate_secret_name(name)?;
    }
    Ok(())
}

pub(crate) fn validate_secret_name(name: &str) -> Result<(), StoreError> {
    validate_slug("secret name", name, 128)
}

/// What to do when answering machine detection reports a machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MachineAction {
    /// End the call without a message.
    Hangup,
    /// Leave the agent's voicemail message after the beep.
    Message,
}

impl MachineAction {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hangup => "hangup",
            Self::Message => "message",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "hangup" => Some(Self::Hangup),
            "message" => Some(Self::Message),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn e164_accepts_plus_and_8_to_15_digits() {
        for ok in [
            "+14155550100",
            "+33123456789",
            "+12345678",
            "+123456789012345",
        ] {
            assert_eq!(
                E164::parse(ok).map(|n| n.to_string()).ok(),
                Some(ok.to_owned())
            );
        }
    }

    #[test]
    fn e164_rejects_everything_else_with_a_clear_error() {
        for bad in [
            "",
            "+",
            "14155550100",
            "+1 415 555 0100",
            "+1-415-555-0100",
            "+1234567",
            "+1234567890123456",
            "+0123456789",
            "++14155550100",
            "+1415555010a",
            "+１４１５５５５０１００",
        ] {
            match E164::parse(bad) {
                Err(StoreError::Invalid { field, reason }) => {
                    assert_eq!(field, "phone number");
                    assert!(reason.contains("E.164"), "{reason}");
                }
                other => panic!("{bad:?} gave {other:?}"),
            }
        }
    }

    #[test]
    fn tenant_ids_are_lowercase_slugs() {
        assert!(TenantId::parse("acme").is_ok());
        assert!(TenantId::parse("dental-west_2").is_ok());
        for bad in ["", "Acme", "-acme", "ac me", "acme/..", &"a".repeat(65)] {
            assert!(TenantId::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn time_zones_must_be_known() {
        assert!(validate_time_zone("Europe/Paris").is_ok());
        assert!(validate_time_zone("UTC").is_ok());
        assert!(validate_time_zone("Mars/Olympus_Mons").is_err());
    }

    #[test]
    fn enums_round_trip_through_their_stored_spelling() {
        for s in [
            CallStatus::Queued,
            CallStatus::Ringing,
            CallStatus::InProgress,
            CallStatus::Completed,
            CallStatus::Busy,
            CallStatus::NoAnswer,
            CallStatus::Failed,
            CallStatus::Canceled,
        ] {
            assert_eq!(CallStatus::parse(s.as_str()), Some(s));
        }
        for k in [
            CallEventKind::Transcript,
            CallEventKind::ToolCall,
            CallEventKind::ToolResult,
            CallEventKind::BargeIn,
            CallEventKind::Dtmf,
            CallEventKind::Status,
            CallEventKind::Error,
        ] {
            assert_eq!(CallEventKind::parse(k.as_str()), Some(k));
        }
        assert!(parse_ledger_status("done").is_err());
    }

    #[test]
    fn connector_base_url_must_be_http() {
        let spec = |url: &str| ConnectorSpec {
            vendor: "calcom".into(),
            base_url: Some(url.into()),
            secret_name: None,
        };
        assert!(validate_connector(&spec("https://cal.example.com/api")).is_ok());
        assert!(validate_connector(&spec("ftp://x")).is_err());
        assert!(validate_connector(&spec("https://a b")).is_err());
    }

    #[test]
    fn names_refuse_control_bidi_override_and_invisible_characters() {
        assert!(validate_text("tenant name", "Acme Dental — Zürich", 200).is_ok());
        for bad in [
            "Acme\u{0007}",
            "Acme\nInc",
            "evil\u{202E}gnp.exe",
            "a\u{2066}b\u{2069}",
            "zero\u{200B}width",
            "\u{FEFF}bom",
            "arabic\u{061C}mark",
        ] {
            assert!(validate_text("tenant name", bad, 200).is_err(), "{bad:?}");
        }
    }
}
