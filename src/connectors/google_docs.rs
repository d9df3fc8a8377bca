//! Google Docs as a post-call export ([`CallLog`]): after a call, the tenant's template document
//! is copied (Drive `files.copy`, into the tenant's folder) and its `{{placeholders}}` are filled
//! with the call's details (Docs `documents.batchUpdate`, one `replaceAllText` per placeholder):
//! a quote, a visit report, a call sheet.
//!
//! Built from `vendor-specs/google-docs/docs__v1.json` (rootUrl `https://docs.googleapis.com/`)
//! and the Drive operations of [`super::drive_files`] (`https://www.googleapis.com/`); a tenant's
//! `base_url` override serves both (their paths differ). Scope `drive`: the template is a file
//! the tenant made, and among `files.copy`'s scopes only `drive` reads such a file (`drive.file`
//! sees only what the bridge created). The copy carries the app property `document:<call id>`,
//! so a retried export fills the copy an earlier attempt made instead of copying again; the
//! replacements are idempotent (a filled placeholder is gone). It must not read the template's
//! content, hold state about calls, or log a transcript.

use std::sync::Arc;

use reqwest::Url;
use serde_json::{Value, json};

use super::client::{Auth, TokenSource, VendorClient};
use super::drive_files::{DriveFiles, drive_id, export_key, export_name, google_tokens};
use super::kit::{BuildContext, BuildFailure, Built, Capability, SecretField, SecretShape, Vendor};
use super::oauth::{GOOGLE_CLIENT_FIELDS, GOOGLE_DRIVE_SCOPE, google_oauth};
use super::{CallLog, CallRecord, ConnectorError, parse_base_url, rfc3339};
use crate::connectors::http::{ConnectorProfile, HttpPolicy, Replay, RequestContext};

pub const CONNECTOR: &str = "google_docs";
/// The Docs API root (`v1/documents/…`).
pub const DEFAULT_BASE_URL: &str = "https://docs.googleapis.com/";
/// The Drive API root, for the template copy.
pub const DRIVE_BASE_URL: &str = "https://www.googleapis.com/";
/// A Google Docs document's MIME type (what a template must be).
pub const DOCUMENT_MIME: &str = "application/vnd.google-apps.document";
/// Transcript characters written into `{{transcript}}` (the start of the call).
pub const TRANSCRIPT_EXCERPT_CHARS: usize = 5_000;
/// Characters of one field's value.
const MAX_FIELD_CHARS: usize = 2_000;

/// Per-tenant settings.
#[derive(Debug, Clone)]
pub struct GoogleDocsConfig {
    /// The Docs API root (`https://docs.googleapis.com/` unless overridden).
    pub docs_base_url: Url,
    /// The Drive API root (`https://www.googleapis.com/` unless overridden).
    pub drive_base_url: Url,
    pub template_id: String,
    /// Where the copies go; beside the template when `None`.
    pub folder_id: Option<String>,
    /// The copy's name starts with this (`Call report`), then time, caller and call id.
    pub document_name: String,
}

pub struct GoogleDocs {
    docs: VendorClient,
    drive: VendorClient,
    config: GoogleDocsConfig,
}

/// The text a placeholder stands for.
fn plain_text(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// Every `{{placeholder}}` and its text for `call`: `call_id`, `caller` (the other party's
/// number), `from`, `to`, `direction`, `agent`, `started_at`, `ended_at`, `duration_s`, `status`,
/// `end_reason`, `outcome`, `summary`, `transcript` (an excerpt), and `field.<name>` per
/// collected field of the analysis. Placeholders without a value become empty.
pub fn placeholders(call: &CallRecord) -> Vec<(String, String)> {
    let caller = if call.direction == "outbound" { &call.to } else { &call.from };
    let analysis = call.analysis.clone().unwrap_or_default();
    let outcome = match (analysis.achieved, &analysis.reason) {
        (Some(true), Some(reason)) => format!("goal met: {reason}"),
        (Some(false), Some(reason)) => format!("goal not met: {reason}"),
        _ => call.end_reason.clone().unwrap_or_else(|| call.status.clone()),
    };
    let mut transcript: String = call.transcript.chars().take(TRANSCRIPT_EXCERPT_CHARS).collect();
    if transcript.len() < call.transcript.len() {
        transcript.push_str(" …");
    }
    let mut pairs = vec![
        ("call_id", call.call_id.clone()),
        ("caller", caller.clone()),
        ("from", call.from.clone()),
        ("to", call.to.clone()),
        ("direction", call.direction.clone()),
        ("agent", call.agent_id.clone()),
        ("started_at", rfc3339(&call.started_at)),
        ("ended_at", call.ended_at.as_ref().map(rfc3339).unwrap_or_default()),
        ("duration_s", call.duration_seconds().map(|s| s.to_string()).unwrap_or_default()),
        ("status", call.status.clone()),
        ("end_reason", call.end_reason.clone().unwrap_or_default()),
        ("outcome", outcome),
        ("summary", analysis.summary.clone()),
        ("transcript", transcript),
    ]
    .into_iter()
    .map(|(name, text)| (format!("{{{{{name}}}}}"), text))
    .collect::<Vec<_>>();
    for (name, value) in &analysis.fields {
        let text: String = plain_text(value).chars().take(MAX_FIELD_CHARS).collect();
        pairs.push((format!("{{{{field.{name}}}}}"), text));
    }
    pairs
}

impl GoogleDocs {
    pub fn new(policy: HttpPolicy, config: GoogleDocsConfig, tokens: Arc<dyn TokenSource>) -> Self {
        Self {
            docs: VendorClient::new(
                policy.clone(),
                profile(),
                config.docs_base_url.clone(),
                Auth::OAuth(tokens.clone()),
            ),
            drive: VendorClient::new(policy, profile(), config.drive_base_url.clone(), Auth::OAuth(tokens)),
            config,
        }
    }

    fn files(&self) -> DriveFiles<'_> {
        DriveFiles { client: &self.drive }
    }

    /// Replaces every placeholder in `document`.
    /// operationId: docs.documents.batchUpdate
    async fn fill(&self, ctx: &RequestContext, document: &str, call: &CallRecord) -> Result<(), ConnectorError> {
        let requests: Vec<Value> = placeholders(call)
            .into_iter()
            .map(|(placeholder, text)| {
                json!({ "replaceAllText": {
                    "containsText": { "text": placeholder, "matchCase": true },
                    "replaceText": text,
                }})
            })
            .collect();
        self.docs
            .post(&["v1", "documents", &format!("{document}:batchUpdate")])
            .json(json!({ "requests": requests }))
            // Replacing a placeholder again finds nothing: safe to replay.
            .replay(Replay::Idempotent)
            .send(ctx, &format!("document {document}"))
            .await
            .map(drop)
    }
}

#[async_trait::async_trait]
impl CallLog for GoogleDocs {
    async fn log_call(
        &self,
        ctx: &RequestContext,
        call: &CallRecord,
        _idempotency_key: &str,
    ) -> Result<(), ConnectorError> {
        let key = export_key("document", &call.call_id);
        let folder = self.config.folder_id.as_deref();
        let document = match self.files().find(ctx, folder, &key).await? {
            Some(found) => found,
            None => {
                let name = export_name(call, &self.config.document_name);
                self.files()
                    .copy(ctx, &self.config.template_id, folder, &name, &key)
                    .await?
            }
        };
        self.fill(ctx, &document.id, call).await
    }

    fn wants_analysis(&self) -> bool {
        true
    }

    async fn health_check(&self, ctx: &RequestContext) -> Result<(), ConnectorError> {
        // The template's (and the folder's) metadata: proves token and access, writes nothing.
        let id = &self.config.template_id;
        let what = format!("Docs template {id} (missing, or not shared with the connected account)");
        let template = self.files().get(ctx, id, &what).await?;
        if template.mime_type != DOCUMENT_MIME {
            return Err(ConnectorError::Config(format!(
                "template {id} is a {}, not a Google Docs document",
                template.mime_type
            )));
        }
        if let Some(folder) = &self.config.folder_id {
            self.files().folder(ctx, folder).await?;
        }
        Ok(())
    }
}

/// The vendor descriptor, registered in [`super::registry`].
pub static VENDOR: Vendor = Vendor {
    id: CONNECTOR,
    name: "Google Docs",
    spec: "google-docs/",
    default_base_url: Some(DEFAULT_BASE_URL),
    capabilities: &[Capability::Exports],
    secret: SecretShape {
        bare_token: false,
        fields: &[
            SecretField {
                name: "template_id",
                aliases: &[],
                required: true,
                doc: "the template document's id (from its URL: /document/d/<id>/), with {{placeholders}}",
            },
            SecretField {
                name: "folder_id",
                aliases: &[],
                required: false,
                doc: "the folder the documents go to (default: beside the template)",
            },
            SecretField {
                name: "document_name",
                aliases: &[],
                required: false,
                doc: "the documents' name before time, caller and call id (default `Call report`)",
            },
            GOOGLE_CLIENT_FIELDS[0],
            GOOGLE_CLIENT_FIELDS[1],
            GOOGLE_CLIENT_FIELDS[2],
        ],
        note: "or a service-account key file as downloaded (`\"type\": \"service_account\"`, the template and folder shared with its `client_email`), plus the settings; or connect with OAuth and keep only the settings here",
    },
    oauth: Some(google_oauth(&[(Capability::Exports, &[GOOGLE_DRIVE_SCOPE])])),
    webhooks: None,
    profile,
    build,
};

/// The policy profile (no vendor-specific rules).
pub fn profile() -> ConnectorProfile {
    ConnectorProfile::new(CONNECTOR)
}

fn build(ctx: BuildContext<'_>) -> Result<Built, BuildFailure> {
    let tokens = google_tokens(&ctx, CONNECTOR, GOOGLE_DRIVE_SCOPE)?;
    let template_id = drive_id(&ctx, "template_id")?.ok_or_else(|| BuildFailure::Missing("template_id".into()))?;
    let document_name = ctx.credentials.text("document_name").unwrap_or("Call report").trim().to_owned();
    if document_name.is_empty() || document_name.chars().count() > 200 || document_name.chars().any(char::is_control) {
        return Err(BuildFailure::Config("document_name: 1 to 200 characters, no control characters".into()));
    }
    // An overridden base URL (a proxy, a test server) serves both APIs.
    let drive_base_url = match ctx.base_url {
        Some(_) => ctx.base_url()?,
        None => parse_base_url(DRIVE_BASE_URL).map_err(|e| BuildFailure::Config(e.to_string()))?,
    };
    let config = GoogleDocsConfig {
        docs_base_url: ctx.base_url()?,
        drive_base_url,
        template_id,
        folder_id: drive_id(&ctx, "folder_id")?,
        document_name,
    };
    Ok(Built {
        call_log: Some(Arc::new(GoogleDocs::new(ctx.policy, config, tokens))),
        ..Built::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connectors::CallSummary;
    use chrono::TimeZone;

    #[test]
    fn placeholders_cover_the_call_the_analysis_and_its_fields() {
        let start = chrono::Utc.with_ymd_and_hms(2025, 3, 4, 15, 0, 0).single().expect("valid");
        let mut fields = serde_json::Map::new();
        fields.insert("postcode".into(), json!("SW1A 1AA"));
        fields.insert("rooms".into(), json!(3));
        let call = CallRecord {
            call_id: "call_1".into(),
            agent_id: "front".into(),
            direction: "outbound".into(),
            from: "+14155550100".into(),
            to: "+14155550199".into(),
            started_at: start,
            ended_at: Some(start + chrono::Duration::seconds(95)),
            status: "completed".into(),
            end_reason: Some("caller_hangup".into()),
            transcript: "x".repeat(TRANSCRIPT_EXCERPT_CHARS + 10),
            analysis: Some(CallSummary {
                summary: "Wants a quote.".into(),
                fields,
                achieved: Some(true),
                reason: Some("quote requested".into()),
            }),
            recording: None,
        };
        let all: std::collections::HashMap<String, String> = placeholders(&call).into_iter().collect();
        assert_eq!(all["{{caller}}"], "+14155550199", "the other party on an outbound call");
        assert_eq!(all["{{duration_s}}"], "95");
        assert_eq!(all["{{outcome}}"], "goal met: quote requested");
        assert_eq!(all["{{summary}}"], "Wants a quote.");
        assert_eq!(all["{{field.postcode}}"], "SW1A 1AA");
        assert_eq!(all["{{field.rooms}}"], "3");
        assert!(all["{{transcript}}"].ends_with(" …"));
        assert_eq!(all["{{transcript}}"].chars().count(), TRANSCRIPT_EXCERPT_CHARS + 2);
    }
}
