//! Configuration: environment variables, the equivalent command-line flags, and an optional TOML
//! file, merged (flag or variable over file over default) and validated before anything listens.
//!
//! Owns names, defaults and validation; every error names the variable to fix. It must not start
//! anything or read configuration after startup.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use secrecy::SecretString;
use serde::Deserialize;

use crate::audio::RecordingFormat;

/// The default agent prompt, shipped in the binary so one command runs the server.
pub const DEFAULT_PROMPT: &str = include_str!("../prompts/default.md");
/// Variables a prompt template may use, as `{{name}}`.
pub const PROMPT_VARIABLES: &[&str] = &["caller", "called", "call_sid", "now_utc"];

/// `callbridge serve` flags; each has an environment variable of the same meaning.
#[derive(Debug, Clone, Default, Args)]
pub struct ServeArgs {
    /// TOML file with any of the settings below (snake_case keys, e.g. `public_url`).
    #[arg(long, env = "CALLBRIDGE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address to listen on.
    #[arg(long, env = "CALLBRIDGE_LISTEN")]
    pub listen: Option<String>,
    /// The https URL Twilio reaches this server at (e.g. https://bridge.example.com).
    #[arg(long, env = "PUBLIC_URL")]
    pub public_url: Option<String>,
    #[arg(long, env = "TWILIO_ACCOUNT_SID")]
    pub twilio_account_sid: Option<String>,
    #[arg(long, env = "TWILIO_AUTH_TOKEN", hide_env_values = true)]
    pub twilio_auth_token: Option<String>,
    #[arg(long, env = "OPENAI_API_KEY", hide_env_values = true)]
    pub openai_api_key: Option<String>,
    #[arg(long, env = "OPENAI_REALTIME_URL")]
    pub openai_realtime_url: Option<String>,
    #[arg(long, env = "OPENAI_REALTIME_MODEL")]
    pub openai_realtime_model: Option<String>,
    #[arg(long, env = "OPENAI_VOICE")]
    pub openai_voice: Option<String>,
    /// Model transcribing the caller; "none" turns caller transcripts off.
    #[arg(long, env = "OPENAI_TRANSCRIPTION_MODEL")]
    pub openai_transcription_model: Option<String>,
    /// Prompt template file (default: the built-in prompts/default.md).
    #[arg(long, env = "CALLBRIDGE_PROMPT")]
    pub prompt: Option<PathBuf>,
    /// Longest call, in seconds.
    #[arg(long, env = "CALLBRIDGE_MAX_CALL_SECS")]
    pub max_call_secs: Option<u64>,
    /// Seconds without speech on either side before the agent says goodbye.
    #[arg(long, env = "CALLBRIDGE_SILENCE_TIMEOUT_SECS")]
    pub silence_timeout_secs: Option<u64>,
    /// Comma-separated built-in tools to offer (end_call is always offered).
    #[arg(long, env = "CALLBRIDGE_TOOLS")]
    pub tools: Option<String>,
    /// Deadline for one tool call, in milliseconds.
    #[arg(long, env = "CALLBRIDGE_TOOL_TIMEOUT_MS")]
    pub tool_timeout_ms: Option<u64>,
    /// Whether the agent greets the caller first.
    #[arg(long, env = "CALLBRIDGE_SPEAK_FIRST")]
    pub speak_first: Option<bool>,
    /// Log format: "text" or "json".
    #[arg(long, env = "CALLBRIDGE_LOG_FORMAT")]
    pub log_format: Option<String>,
    /// Store: `sqlite://FILE?mode=rwc` (embedded default) or `postgres://…` (several nodes).
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// Calls to numbers no tenant owns: "agent" answers with the configured agent, "reject" says
    /// the number is not in service; "auto" (default) rejects once any tenant exists.
    #[arg(long, env = "CALLBRIDGE_UNROUTED_CALLS")]
    pub unrouted_calls: Option<String>,
    /// Bearer key for the admin API (all tenants); unset disables admin access.
    #[arg(long, env = "CALLBRIDGE_ADMIN_KEY", hide_env_values = true)]
    pub admin_key: Option<String>,
    /// Directory of prompt templates agents name (`<name>.md`).
    #[arg(long, env = "CALLBRIDGE_PROMPTS_DIR")]
    pub prompts_dir: Option<PathBuf>,
    /// Directory call recordings are written to.
    #[arg(long, env = "CALLBRIDGE_RECORDINGS_DIR")]
    pub recordings_dir: Option<PathBuf>,
    /// Recording file format: "wav" (default) or "opus" (Ogg/Opus).
    #[arg(long, env = "CALLBRIDGE_RECORDING_FORMAT")]
    pub recording_format: Option<String>,
    /// xAI key; agents with provider "xai" are refused without it.
    #[arg(long, env = "XAI_API_KEY", hide_env_values = true)]
    pub xai_api_key: Option<String>,
    #[arg(long, env = "XAI_REALTIME_URL")]
    pub xai_realtime_url: Option<String>,
    /// Azure OpenAI key; agents with provider "azure" need it and the endpoint.
    #[arg(long, env = "AZURE_OPENAI_API_KEY", hide_env_values = true)]
    pub azure_openai_api_key: Option<String>,
    /// The Azure OpenAI resource, e.g. https://my-resource.openai.azure.com.
    #[arg(long, env = "AZURE_OPENAI_ENDPOINT")]
    pub azure_openai_endpoint: Option<String>,
    /// Gemini API key; agents with provider "gemini" are refused without it.
    #[arg(long, env = "GEMINI_API_KEY", hide_env_values = true)]
    pub gemini_api_key: Option<String>,
    #[arg(long, env = "GEMINI_LIVE_URL")]
    pub gemini_live_url: Option<String>,
    /// Whether this node runs the campaign dispatcher (default true).
    #[arg(long, env = "CALLBRIDGE_CAMPAIGNS")]
    pub campaigns: Option<bool>,
    /// This node's name in campaign leases (default: random per process); unique per node.
    #[arg(long, env = "CALLBRIDGE_NODE_ID")]
    pub node_id: Option<String>,
    /// Pause between dispatcher passes, in milliseconds (default 250).
    #[arg(long, env = "CALLBRIDGE_CAMPAIGN_TICK_MS")]
    pub campaign_tick_ms: Option<u64>,
    /// Seconds a claimed contact stays leased before another node reconciles it (default 60,
    /// at least 30).
    #[arg(long, env = "CALLBRIDGE_CAMPAIGN_LEASE_SECS")]
    pub campaign_lease_secs: Option<u64>,
    /// Seconds a campaign call may go without a status callback before Twilio is asked (default
    /// 600).
    #[arg(long, env = "CALLBRIDGE_CAMPAIGN_CALL_CHECK_SECS")]
    pub campaign_call_check_secs: Option<u64>,
    /// Hosts, addresses or networks outbound requests may reach although they are not public, or
    /// over plain http (comma-separated: `cal.lan`, `localhost:8443`, `127.0.0.1`, `10.0.0.0/8`).
    /// Unset: tenant-steered requests go to public https hosts only.
    #[arg(long, env = "CALLBRIDGE_EGRESS_ALLOW")]
    pub egress_allow: Option<String>,
    /// Seconds a request head may take to arrive, and a kept-alive connection may wait for its
    /// next request (default 10).
    #[arg(long, env = "CALLBRIDGE_HTTP_HEADER_TIMEOUT_SECS")]
    pub http_header_timeout_secs: Option<u64>,
    /// Seconds a connection may go without a byte either way before it is closed (default 60).
    #[arg(long, env = "CALLBRIDGE_HTTP_IDLE_TIMEOUT_SECS")]
    pub http_idle_timeout_secs: Option<u64>,
    /// Open HTTP connections at most; more are closed on accept (default 1024).
    #[arg(long, env = "CALLBRIDGE_HTTP_MAX_CONNECTIONS")]
    pub http_max_connections: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<String>,
    public_url: Option<String>,
    twilio_account_sid: Option<String>,
    twilio_auth_token: Option<String>,
    openai_api_key: Option<String>,
    openai_realtime_url: Option<String>,
    openai_realtime_model: Option<String>,
    openai_voice: Option<String>,
    openai_transcription_model: Option<String>,
    prompt: Option<PathBuf>,
    max_call_secs: Option<u64>,
    silence_timeout_secs: Option<u64>,
    tools: Option<String>,
    tool_timeout_ms: Option<u64>,
    speak_first: Option<bool>,
    log_format: Option<String>,
    database_url: Option<String>,
    unrouted_calls: Option<String>,
    admin_key: Option<String>,
    prompts_dir: Option<PathBuf>,
    recordings_dir: Option<PathBuf>,
    recording_format: Option<String>,
    xai_api_key: Option<String>,
    xai_realtime_url: Option<String>,
    azure_openai_api_key: Option<String>,
    azure_openai_endpoint: Option<String>,
    gemini_api_key: Option<String>,
    gemini_live_url: Option<String>,
    campaigns: Option<bool>,
    node_id: Option<String>,
    campaign_tick_ms: Option<u64>,
    campaign_lease_secs: Option<u64>,
    campaign_call_check_secs: Option<u64>,
    egress_allow: Option<String>,
    http_header_timeout_secs: Option<u64>,
    http_idle_timeout_secs: Option<u64>,
    http_max_connections: Option<usize>,
}

/// A configuration problem, naming the variable to fix.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{variable}: {message}")]
pub struct ConfigError {
    pub variable: &'static str,
    pub message: String,
}

fn invalid(variable: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError {
        variable,
        message: message.into(),
    }
}

/// What happens to a call whose number no tenant owns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnroutedCalls {
    /// Answer with the agent configured by environment (single-business deployments).
    Agent,
    /// Say the number is not in service and hang up.
    Reject,
    /// `Agent` while the store has no tenant, `Reject` once it has one.
    Auto,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// Validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    /// `PUBLIC_URL` without a trailing slash: signatures are checked against it.
    pub public_url: String,
    /// The same origin with a ws(s) scheme: the media stream URL base.
    pub public_ws_url: String,
    pub twilio_account_sid: String,
    pub twilio_auth_token: SecretString,
    pub openai_api_key: SecretString,
    pub openai_realtime_url: String,
    pub openai_realtime_model: String,
    pub voice: String,
    pub transcription_model: Option<String>,
    pub prompt_template: String,
    pub max_call: Duration,
    pub silence_timeout: Duration,
    pub tools: Vec<String>,
    pub tool_timeout: Duration,
    pub speak_first: bool,
    pub log_format: LogFormat,
    pub database_url: SecretString,
    pub unrouted_calls: UnroutedCalls,
    pub admin_key: Option<SecretString>,
    pub prompts_dir: PathBuf,
    pub recordings_dir: PathBuf,
    pub recording_format: RecordingFormat,
    /// Realtime providers beyond OpenAI; `None` when not configured.
    pub xai: Option<ProviderAccess>,
    pub azure: Option<ProviderAccess>,
    pub gemini: Option<ProviderAccess>,
    pub campaigns: CampaignSettings,
    /// Where tenant-steered outbound requests may go (see [`crate::egress`]).
    pub egress: crate::egress::EgressPolicy,
    /// Limits of the HTTP listener (see `http::listener`).
    pub http: HttpLimits,
}

/// The HTTP listener's limits (`CALLBRIDGE_HTTP_*` settings).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// A request head must arrive within this; also the longest a kept-alive connection may wait
    /// for its next request.
    pub header_timeout: Duration,
    /// A connection with no byte in either direction for this long is closed.
    pub idle_timeout: Duration,
    /// Open connections at most; more are closed on accept.
    pub max_connections: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connections: 1024,
        }
    }
}

/// The campaign dispatcher's settings on this node.
#[derive(Debug, Clone)]
pub struct CampaignSettings {
    pub enabled: bool,
    pub node_id: Option<String>,
    pub tick: Duration,
    pub lease: Duration,
    pub call_check: Duration,
}

/// How to reach one realtime provider: its key and its realtime endpoint (for Azure, the
/// resource endpoint; the deployment is the agent's model).
#[derive(Debug, Clone)]
pub struct ProviderAccess {
    pub api_key: SecretString,
    pub url: String,
}

/// A ws(s):// URL without query, for a provider's realtime endpoint.
fn check_ws_url(variable: &'static str, url: &str) -> Result<(), ConfigError> {
    if !(url.starts_with("wss://") || url.starts_with("ws://")) || url.contains('?') {
        return Err(invalid(
            variable,
            "must be a ws:// or wss:// URL without a query string",
        ));
    }
    Ok(())
}

impl Config {
    /// Merges flags/variables over the optional file over defaults, and validates.
    pub fn resolve(args: ServeArgs) -> Result<Config, ConfigError> {
        let file = match &args.config {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        macro_rules! pick {
            ($field:ident) => {
                args.$field.clone().or(file.$field.clone())
            };
        }
        let required = |value: Option<String>, variable: &'static str| {
            value
                .filter(|v| !v.trim().is_empty())
                .ok_or_else(|| invalid(variable, "is required"))
        };

        let listen_text = pick!(listen).unwrap_or_else(|| "127.0.0.1:8080".into());
        let listen = listen_text.parse().map_err(|_| {
            invalid(
                "CALLBRIDGE_LISTEN",
                format!("{listen_text:?} is not an address like 127.0.0.1:8080"),
            )
        })?;

        let public_url = required(pick!(public_url), "PUBLIC_URL")?;
        let (public_url, public_ws_url) = validate_public_url(&public_url)?;

        let twilio_account_sid = required(pick!(twilio_account_sid), "TWILIO_ACCOUNT_SID")?;
        if !(twilio_account_sid.len() == 34
            && twilio_account_sid.starts_with("AC")
            && twilio_account_sid[2..]
                .chars()
                .all(|c| c.is_ascii_hexdigit()))
        {
            return Err(invalid(
                "TWILIO_ACCOUNT_SID",
                "must be AC followed by 32 hexadecimal characters",
            ));
        }
        let twilio_auth_token = required(pick!(twilio_auth_token), "TWILIO_AUTH_TOKEN")?;
        let openai_api_key = required(pick!(openai_api_key), "OPENAI_API_KEY")?;
        let campaigns = campaign_settings(
            pick!(campaigns),
            pick!(node_id),
            pick!(campaign_tick_ms),
            pick!(campaign_lease_secs),
            pick!(campaign_call_check_secs),
        )?;

        let openai_realtime_url =
            pick!(openai_realtime_url).unwrap_or_else(|| "wss://api.openai.com/v1/realtime".into());
        if !(openai_realtime_url.starts_with("wss://") || openai_realtime_url.starts_with("ws://"))
            || openai_realtime_url.contains('?')
        {
            return Err(invalid(
                "OPENAI_REALTIME_URL",
                "must be a ws:// or wss:// URL without a query string",
            ));
        }
        let openai_realtime_model =
            pick!(openai_realtime_model).unwrap_or_else(|| "gpt-realtime".into());
        if openai_realtime_model.is_empty()
            || !openai_realtime_model
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            return Err(invalid(
                "OPENAI_REALTIME_MODEL",
                "must be a model name such as gpt-realtime",
            ));
        }
        let voice = pick!(openai_voice).unwrap_or_else(|| "marin".into());
        let transcription_model = match pick!(openai_transcription_model).as_deref() {
            None => Some("gpt-4o-mini-transcribe".to_owned()),
            Some("none") | Some("") => None,
            Some(model) => Some(model.to_owned()),
        };

        let prompt_template = match pick!(prompt) {
            Some(path) => std::fs::read_to_string(&path).map_err(|e| {
                invalid(
                    "CALLBRIDGE_PROMPT",
                    format!("cannot read {}: {e}", path.display()),
                )
            })?,
            None => DEFAULT_PROMPT.to_owned(),
        };
        check_template(&prompt_template).map_err(|m| invalid("CALLBRIDGE_PROMPT", m))?;

        let max_call_secs = pick!(max_call_secs).unwrap_or(15 * 60);
        if !(10..=4 * 3600).contains(&max_call_secs) {
            return Err(invalid(
                "CALLBRIDGE_MAX_CALL_SECS",
                "must be between 10 and 14400",
            ));
        }
        let silence_secs = pick!(silence_timeout_secs).unwrap_or(30);
        if !(5..=3600).contains(&silence_secs) {
            return Err(invalid(
                "CALLBRIDGE_SILENCE_TIMEOUT_SECS",
                "must be between 5 and 3600",
            ));
        }
        let tools: Vec<String> = pick!(tools)
            .unwrap_or_else(|| "get_current_time".into())
            .split(',')
            .map(|t| t.trim().to_owned())
            .filter(|t| !t.is_empty())
            .collect();
        for tool in &tools {
            if crate::tools::builtin(tool).is_none() {
                return Err(invalid(
                    "CALLBRIDGE_TOOLS",
                    format!("unknown tool {tool:?} (available: get_current_time)"),
                ));
            }
        }
        let tool_timeout_ms = pick!(tool_timeout_ms).unwrap_or(5_000);
        if !(100..=60_000).contains(&tool_timeout_ms) {
            return Err(invalid(
                "CALLBRIDGE_TOOL_TIMEOUT_MS",
                "must be between 100 and 60000",
            ));
        }
        let log_format = match pick!(log_format).as_deref() {
            None | Some("text") => LogFormat::Text,
            Some("json") => LogFormat::Json,
            Some(other) => {
                return Err(invalid(
                    "CALLBRIDGE_LOG_FORMAT",
                    format!("{other:?} is not text or json"),
                ));
            }
        };

        let database_url =
            pick!(database_url).unwrap_or_else(|| "sqlite://callbridge.db?mode=rwc".into());
        if !(database_url.starts_with("sqlite:")
            || database_url.starts_with("postgres://")
            || database_url.starts_with("postgresql://"))
        {
            return Err(invalid(
                "DATABASE_URL",
                "must start with sqlite: or postgres://",
            ));
        }
        let unrouted_calls = match pick!(unrouted_calls).as_deref() {
            None | Some("auto") => UnroutedCalls::Auto,
            Some("agent") => UnroutedCalls::Agent,
            Some("reject") => UnroutedCalls::Reject,
            Some(other) => {
                return Err(invalid(
                    "CALLBRIDGE_UNROUTED_CALLS",
                    format!("{other:?} is not auto, agent or reject"),
                ));
            }
        };
        let recording_format = match pick!(recording_format) {
            None => RecordingFormat::default(),
            Some(text) => text
                .parse()
                .map_err(|e: String| invalid("CALLBRIDGE_RECORDING_FORMAT", e))?,
        };
        let egress = crate::egress::EgressPolicy::from_allow_list(
            pick!(egress_allow).as_deref().unwrap_or(""),
        )
        .map_err(|e| invalid("CALLBRIDGE_EGRESS_ALLOW", e.to_string()))?;
        let defaults = HttpLimits::default();
        let positive = |value: Option<u64>, variable: &'static str, default: Duration| match value {
            None => Ok(default),
            Some(0) => Err(invalid(variable, "must be at least 1")),
            Some(secs) => Ok(Duration::from_secs(secs)),
        };
        let http = HttpLimits {
            header_timeout: positive(
                pick!(http_header_timeout_secs),
                "CALLBRIDGE_HTTP_HEADER_TIMEOUT_SECS",
                defaults.header_timeout,
            )?,
            idle_timeout: positive(
                pick!(http_idle_timeout_secs),
                "CALLBRIDGE_HTTP_IDLE_TIMEOUT_SECS",
                defaults.idle_timeout,
            )?,
            max_connections: match pick!(http_max_connections) {
                None => defaults.max_connections,
                Some(0) => {
                    return Err(invalid(
                        "CALLBRIDGE_HTTP_MAX_CONNECTIONS",
                        "must be at least 1",
                    ));
                }
                Some(n) => n,
            },
        };
        let admin_key = pick!(admin_key).filter(|k| !k.is_empty());
        if admin_key.as_ref().is_some_and(|k| k.len() < 24) {
            return Err(invalid(
                "CALLBRIDGE_ADMIN_KEY",
                "must be at least 24 characters (use a random value)",
            ));
        }

        let nonempty = |v: Option<String>| v.filter(|v| !v.trim().is_empty());
        let xai = match nonempty(pick!(xai_api_key)) {
            None => None,
            Some(key) => {
                let url = pick!(xai_realtime_url)
                    .unwrap_or_else(|| crate::realtime::xai::DEFAULT_URL.into());
                check_ws_url("XAI_REALTIME_URL", &url)?;
                Some(ProviderAccess {
                    api_key: SecretString::from(key),
                    url,
                })
            }
        };
        let azure = match (
            nonempty(pick!(azure_openai_api_key)),
            nonempty(pick!(azure_openai_endpoint)),
        ) {
            (None, None) => None,
            (Some(_), None) => {
                return Err(invalid(
                    "AZURE_OPENAI_ENDPOINT",
                    "is required with AZURE_OPENAI_API_KEY (e.g. https://my-resource.openai.azure.com)",
                ));
            }
            (None, Some(_)) => {
                return Err(invalid(
                    "AZURE_OPENAI_API_KEY",
                    "is required with AZURE_OPENAI_ENDPOINT",
                ));
            }
            (Some(key), Some(endpoint)) => {
                crate::realtime::azure::realtime_url(&endpoint)
                    .map_err(|e| invalid("AZURE_OPENAI_ENDPOINT", e.to_string()))?;
                Some(ProviderAccess {
                    api_key: SecretString::from(key),
                    url: endpoint,
                })
            }
        };
        let gemini = match nonempty(pick!(gemini_api_key)) {
            None => None,
            Some(key) => {
                let url = pick!(gemini_live_url)
                    .unwrap_or_else(|| crate::realtime::gemini::DEFAULT_URL.into());
                check_ws_url("GEMINI_LIVE_URL", &url)?;
                Some(ProviderAccess {
                    api_key: SecretString::from(key),
                    url,
                })
            }
        };

        Ok(Config {
            listen,
            public_url,
            public_ws_url,
            twilio_account_sid,
            twilio_auth_token: SecretString::from(twilio_auth_token),
            openai_api_key: SecretString::from(openai_api_key),
            openai_realtime_url,
            openai_realtime_model,
            voice,
            transcription_model,
            prompt_template,
            max_call: Duration::from_secs(max_call_secs),
            silence_timeout: Duration::from_secs(silence_secs),
            tools,
            tool_timeout: Duration::from_millis(tool_timeout_ms),
            speak_first: pick!(speak_first).unwrap_or(true),
            log_format,
            database_url: SecretString::from(database_url),
            unrouted_calls,
            admin_key: admin_key.map(SecretString::from),
            prompts_dir: pick!(prompts_dir).unwrap_or_else(|| PathBuf::from("prompts")),
            recordings_dir: pick!(recordings_dir).unwrap_or_else(|| PathBuf::from("recordings")),
            egress,
            http,
            recording_format,
            xai,
            azure,
            gemini,
            campaigns,
        })
    }

    /// Every secret this process was configured with, for the log sink to scrub (see
    /// [`crate::logging`]). Never logged, never returned by an API.
    pub fn secret_values(&self) -> Vec<String> {
        use secrecy::ExposeSecret as _;
        let mut secrets = vec![
            self.twilio_auth_token.expose_secret().to_owned(),
            self.openai_api_key.expose_secret().to_owned(),
        ];
        if let Some(key) = &self.admin_key {
            secrets.push(key.expose_secret().to_owned());
        }
        for access in [&self.xai, &self.azure, &self.gemini].into_iter().flatten() {
            secrets.push(access.api_key.expose_secret().to_owned());
        }
        if let Ok(url) = url::Url::parse(self.database_url.expose_secret())
            && let Some(password) = url.password()
        {
            secrets.push(password.to_owned());
        }
        secrets
    }

    /// The media stream URL written into TwiML (and signed by Twilio on the upgrade).
    pub fn media_url(&self) -> String {
        format!("{}/twilio/media", self.public_ws_url)
    }
}

fn campaign_settings(
    enabled: Option<bool>,
    node_id: Option<String>,
    tick_ms: Option<u64>,
    lease_secs: Option<u64>,
    call_check_secs: Option<u64>,
) -> Result<CampaignSettings, ConfigError> {
    let tick_ms = tick_ms.unwrap_or(250);
    if !(10..=60_000).contains(&tick_ms) {
        return Err(invalid(
            "CALLBRIDGE_CAMPAIGN_TICK_MS",
            "must be 10 to 60000",
        ));
    }
    let lease_secs = lease_secs.unwrap_or(60);
    if !(30..=3600).contains(&lease_secs) {
        return Err(invalid(
            "CALLBRIDGE_CAMPAIGN_LEASE_SECS",
            "must be 30 to 3600 (at least twice the 15 s Twilio request timeout)",
        ));
    }
    let call_check_secs = call_check_secs.unwrap_or(600);
    if !(1..=86_400).contains(&call_check_secs) {
        return Err(invalid(
            "CALLBRIDGE_CAMPAIGN_CALL_CHECK_SECS",
            "must be 1 to 86400",
        ));
    }
    let node_id = node_id
        .map(|n| n.trim().to_owned())
        .filter(|n| !n.is_empty());
    if let Some(node) = &node_id
        && (node.len() > 64
            || !node
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.'))
    {
        return Err(invalid(
            "CALLBRIDGE_NODE_ID",
            "must be 1 to 64 letters, digits, '-', '_' or '.'",
        ));
    }
    Ok(CampaignSettings {
        enabled: enabled.unwrap_or(true),
        node_id,
        tick: Duration::from_millis(tick_ms),
        lease: Duration::from_secs(lease_secs),
        call_check: Duration::from_secs(call_check_secs),
    })
}

fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        invalid(
            "CALLBRIDGE_CONFIG",
            format!("cannot read {}: {e}", path.display()),
        )
    })?;
    toml::from_str(&text).map_err(|e| {
        invalid(
            "CALLBRIDGE_CONFIG",
            format!("{}: {}", path.display(), e.message()),
        )
    })
}

/// Returns (https origin, wss origin). Plain http is accepted only for loopback, for local testing.
fn validate_public_url(url: &str) -> Result<(String, String), ConfigError> {
    let url = url.trim().trim_end_matches('/');
    let bad = |m: &str| invalid("PUBLIC_URL", format!("{url:?} {m}"));
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| bad("is not a URL like https://bridge.example.com"))?;
    if rest.is_empty() || rest.contains(['?', '#', ' ']) {
        return Err(bad("must be an origin (and optional path) without query"));
    }
    let authority = rest.split('/').next().unwrap_or_default();
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => authority.split(':').next().unwrap_or_default(),
    };
    let loopback = matches!(host, "127.0.0.1" | "localhost" | "::1");
    match scheme {
        "https" => Ok((url.to_owned(), format!("wss://{rest}"))),
        "http" if loopback => Ok((url.to_owned(), format!("ws://{rest}"))),
        "http" => Err(bad(
            "must use https (Twilio requires it; http is for loopback only)",
        )),
        _ => Err(bad("must start with https://")),
    }
}

/// One piece of a prompt template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TemplatePart<'a> {
    Text(&'a str),
    /// The trimmed name inside `{{ }}`.
    Variable(&'a str),
    /// A `{{` with no closing `}}`, and everything after it.
    Unclosed(&'a str),
}

/// Splits a template into text and `{{variables}}`: the one scanner every template check and
/// render goes through.
pub fn template_parts(template: &str) -> Vec<TemplatePart<'_>> {
    let mut parts = Vec::new();
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        if start > 0 {
            parts.push(TemplatePart::Text(&rest[..start]));
        }
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            parts.push(TemplatePart::Unclosed(&rest[start..]));
            return parts;
        };
        parts.push(TemplatePart::Variable(after[..end].trim()));
        rest = &after[end + 2..];
    }
    if !rest.is_empty() {
        parts.push(TemplatePart::Text(rest));
    }
    parts
}

/// The error for a `{{name}}` that is not one of [`PROMPT_VARIABLES`], or `None` when it is.
pub fn unknown_variable(name: &str) -> Option<String> {
    (!PROMPT_VARIABLES.contains(&name)).then(|| {
        format!(
            "unknown template variable {{{{{name}}}}} (known: {})",
            PROMPT_VARIABLES.join(", ")
        )
    })
}

/// Checks that a template only uses known `{{variables}}`.
pub fn check_template(template: &str) -> Result<(), String> {
    for part in template_parts(template) {
        match part {
            TemplatePart::Text(_) => {}
            TemplatePart::Unclosed(_) => return Err("a {{ is never closed".to_owned()),
            TemplatePart::Variable(name) => {
                if let Some(error) = unknown_variable(name) {
                    return Err(error);
                }
            }
        }
    }
    Ok(())
}

/// Fills a checked template's `{{variables}}` from `values` (unknown ones render empty).
pub fn render_template(template: &str, values: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(template.len() + 64);
    for part in template_parts(template) {
        match part {
            TemplatePart::Text(text) | TemplatePart::Unclosed(text) => out.push_str(text),
            TemplatePart::Variable(name) => out.push_str(
                values
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map_or("", |(_, v)| *v),
            ),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn minimal() -> ServeArgs {
        ServeArgs {
            public_url: Some("https://bridge.example.com/".into()),
            twilio_account_sid: Some(format!("AC{}", "0".repeat(32))),
            twilio_auth_token: Some("token".into()),
            openai_api_key: Some("sk-x".into()),
            ..ServeArgs::default()
        }
    }

    #[test]
    fn defaults_fill_in() {
        let config = Config::resolve(minimal()).unwrap();
        assert_eq!(config.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(config.public_url, "https://bridge.example.com");
        assert_eq!(config.media_url(), "wss://bridge.example.com/twilio/media");
        assert_eq!(
            config.openai_realtime_url,
            "wss://api.openai.com/v1/realtime"
        );
        assert_eq!(config.max_call, Duration::from_secs(900));
        assert!(format!("{config:?}").contains("Secret"));
        assert!(!format!("{config:?}").contains("sk-x"));
    }

    #[test]
    fn each_error_names_its_variable() {
        let cases: Vec<(ServeArgs, &str)> = vec![
            (
                ServeArgs {
                    public_url: None,
                    ..minimal()
                },
                "PUBLIC_URL",
            ),
            (
                ServeArgs {
                    public_url: Some("http://bridge.example.com".into()),
                    ..minimal()
                },
                "PUBLIC_URL",
            ),
            (
                ServeArgs {
                    twilio_account_sid: Some("AC123".into()),
                    ..minimal()
                },
                "TWILIO_ACCOUNT_SID",
            ),
            (
                ServeArgs {
                    openai_api_key: Some(" ".into()),
                    ..minimal()
                },
                "OPENAI_API_KEY",
            ),
            (
                ServeArgs {
                    listen: Some("everywhere".into()),
                    ..minimal()
                },
                "CALLBRIDGE_LISTEN",
            ),
            (
                ServeArgs {
                    openai_realtime_url: Some("https://x?y".into()),
                    ..minimal()
                },
                "OPENAI_REALTIME_URL",
            ),
            (
                ServeArgs {
                    tools: Some("launch_rockets".into()),
                    ..minimal()
                },
                "CALLBRIDGE_TOOLS",
            ),
            (
                ServeArgs {
                    max_call_secs: Some(1),
                    ..minimal()
                },
                "CALLBRIDGE_MAX_CALL_SECS",
            ),
        ];
        for (args, variable) in cases {
            assert_eq!(Config::resolve(args).unwrap_err().variable, variable);
        }
    }

    #[test]
    fn recording_format_is_wav_unless_set_by_flag_or_file() {
        assert_eq!(
            Config::resolve(minimal()).unwrap().recording_format,
            RecordingFormat::Wav
        );
        let flagged = ServeArgs {
            recording_format: Some("opus".into()),
            ..minimal()
        };
        assert_eq!(
            Config::resolve(flagged).unwrap().recording_format,
            RecordingFormat::Opus
        );
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("callbridge.toml");
        std::fs::write(&file, "recording_format = \"opus\"\n").unwrap();
        let from_file = ServeArgs {
            config: Some(file.clone()),
            ..minimal()
        };
        assert_eq!(
            Config::resolve(from_file).unwrap().recording_format,
            RecordingFormat::Opus
        );
        let flag_over_file = ServeArgs {
            config: Some(file),
            recording_format: Some("wav".into()),
            ..minimal()
        };
        assert_eq!(
            Config::resolve(flag_over_file).unwrap().recording_format,
            RecordingFormat::Wav
        );
        let error = Config::resolve(ServeArgs {
            recording_format: Some("mp3".into()),
            ..minimal()
        })
        .unwrap_err();
        assert_eq!(error.variable, "CALLBRIDGE_RECORDING_FORMAT");
        assert!(error.message.contains("mp3"), "{}", error.message);
    }

    #[test]
    fn other_providers_are_optional_and_checked_when_set() {
        let config = Config::resolve(minimal()).unwrap();
        assert!(config.xai.is_none() && config.azure.is_none() && config.gemini.is_none());
        let config = Config::resolve(ServeArgs {
            xai_api_key: Some("xai-k".into()),
            gemini_api_key: Some("gm-k".into()),
            gemini_live_url: Some("ws://127.0.0.1:9/live".into()),
            azure_openai_api_key: Some("az-k".into()),
            azure_openai_endpoint: Some("https://acme.openai.azure.com".into()),
            ..minimal()
        })
        .unwrap();
        assert_eq!(config.xai.unwrap().url, "wss://api.x.ai/v1/realtime");
        assert_eq!(config.gemini.unwrap().url, "ws://127.0.0.1:9/live");
        assert_eq!(config.azure.unwrap().url, "https://acme.openai.azure.com");
        let cases: Vec<(ServeArgs, &str)> = vec![
            (
                ServeArgs {
                    azure_openai_api_key: Some("az-k".into()),
                    ..minimal()
                },
                "AZURE_OPENAI_ENDPOINT",
            ),
            (
                ServeArgs {
                    azure_openai_endpoint: Some("https://acme.openai.azure.com".into()),
                    ..minimal()
                },
                "AZURE_OPENAI_API_KEY",
            ),
            (
                ServeArgs {
                    azure_openai_api_key: Some("az-k".into()),
                    azure_openai_endpoint: Some("acme".into()),
                    ..minimal()
                },
                "AZURE_OPENAI_ENDPOINT",
            ),
            (
                ServeArgs {
                    xai_api_key: Some("k".into()),
                    xai_realtime_url: Some("https://api.x.ai".into()),
                    ..minimal()
                },
                "XAI_REALTIME_URL",
            ),
            (
                ServeArgs {
                    gemini_api_key: Some("k".into()),
                    gemini_live_url: Some("wss://x?key=1".into()),
                    ..minimal()
                },
                "GEMINI_LIVE_URL",
            ),
        ];
        for (args, variable) in cases {
            assert_eq!(Config::resolve(args).unwrap_err().variable, variable);
        }
    }

    #[test]
    fn loopback_http_is_allowed_for_local_testing() {
        let config = Config::resolve(ServeArgs {
            public_url: Some("http://127.0.0.1:9000".into()),
            ..minimal()
        })
        .unwrap();
        assert_eq!(config.media_url(), "ws://127.0.0.1:9000/twilio/media");
    }

    #[test]
    fn templates() {
        assert!(check_template("Hi {{caller}} at {{ now_utc }}").is_ok());
        assert!(check_template("{{secret}}").is_err());
        assert!(check_template("{{caller").is_err());
        assert!(check_template(DEFAULT_PROMPT).is_ok());
        assert_eq!(
            render_template(
                "Hi {{caller}}, it is {{ now_utc }}.",
                &[("caller", "+1"), ("now_utc", "noon")]
            ),
            "Hi +1, it is noon."
        );
    }
}
