//! Google Drive as a post-call export ([`CallLog`]): after a call, its transcript (`text/plain`)
//! and its recording (WAV or Ogg/Opus, as recorded) are uploaded to the tenant's folder, named
//! by start time, caller and call id.
//!
//! Built from `vendor-specs/google-drive/drive__v3.json` through the shared
//! [`super::drive_files`] operations (multipart upload up to 5 MiB, a resumable session above).
//! Scope `drive.file`: Google then lets the bridge see only what it created, so by default it
//! creates its own folder (`folder_name`) once and finds it again by an app property; a
//! `folder_id` must be a folder the connected account lets the app write. A retried export finds
//! the files an earlier attempt wrote (app property `<kind>:<call id>`) and skips them. It must
//! not hold state about calls, read the recording unless the export asks for it, or log a
//! transcript.

use std::sync::Arc;

use reqwest::Url;

use super::client::{Auth, TokenSource, VendorClient};
use super::drive_files::{DriveFiles, drive_id, export_key, export_name, google_tokens};
use super::kit::{
    BuildContext, BuildFailure, Built, Capability, SecretField, SecretShape, Vendor,
};
use super::oauth::{GOOGLE_CLIENT_FIELDS, GOOGLE_DRIVE_FILE_SCOPE, google_oauth};
use super::{CallLog, CallRecord, ConnectorError, rfc3339};
use crate::connectors::http::{ConnectorProfile, HttpPolicy, RequestContext};

pub const CONNECTOR: &str = "google_drive";
/// The API root: Drive's metadata (`drive/v3/…`) and upload (`upload/drive/v3/…`) paths.
pub const DEFAULT_BASE_URL: &str = "https://www.googleapis.com/";
/// The folder the bridge creates when no `folder_id` is set.
pub const DEFAULT_FOLDER_NAME: &str = "Call recordings";
/// Largest recording uploaded (about 2 h 20 min of WAV); a larger file fails the export.
pub const MAX_RECORDING_BYTES: u64 = 256 * 1024 * 1024;

/// Where the files go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Folder {
    /// A folder the tenant named by id.
    Id(String),
    /// The bridge's own folder of this name (created on first use).
    Own(String),
}

/// Per-tenant settings.
#[derive(Debug, Clone)]
pub struct GoogleDriveConfig {
    /// `https://www.googleapis.com/` unless overridden (tests).
    pub base_url: Url,
    pub folder: Folder,
    pub recording: bool,
    pub transcript: bool,
}

pub struct GoogleDrive {
    client: VendorClient,
    config: GoogleDriveConfig,
}

impl GoogleDrive {
    pub fn new(policy: HttpPolicy, config: GoogleDriveConfig, tokens: Arc<dyn TokenSource>) -> Self {
        Self {
            client: VendorClient::new(policy, profile(), config.base_url.clone(), Auth::OAuth(tokens)),
            config,
        }
    }

    fn files(&self) -> DriveFiles<'_> {
        DriveFiles { client: &self.client }
    }

    /// The folder's id: the configured one, or the bridge's own (found, else created).
    async fn folder_id(&self, ctx: &RequestContext, create: bool) -> Result<Option<String>, ConnectorError> {
        match &self.config.folder {
            Folder::Id(id) => Ok(Some(id.clone())),
            Folder::Own(name) => {
                let key = format!("folder:{name}");
                if let Some(found) = self.files().find(ctx, None, &key).await? {
                    return Ok(Some(found.id));
                }
                if !create {
                    return Ok(None);
                }
                Ok(Some(self.files().create_folder(ctx, name, &key).await?.id))
            }
        }
    }

    /// Uploads one file unless an earlier attempt did.
    async fn upload_once(
        &self,
        ctx: &RequestContext,
        folder: &str,
        key: &str,
        name: String,
        media_type: &str,
        media: bytes::Bytes,
    ) -> Result<(), ConnectorError> {
        if self.files().find(ctx, Some(folder), key).await?.is_some() {
            return Ok(());
        }
        self.files()
            .upload(ctx, folder, &name, key, media_type, media)
            .await
            .map(drop)
    }
}

/// The transcript file: a short header, then one line per turn.
pub fn transcript_text(call: &CallRecord) -> String {
    let duration = call
        .duration_seconds()
        .map_or_else(String::new, |s| format!("{s} s"));
    format!(
        "Call {}\nFrom: {}\nTo: {}\nDirection: {}\nStarted: {}\nDuration: {duration}\nEnded: {}\n\n{}\n",
        call.call_id,
        call.from,
        call.to,
        call.direction,
        rfc3339(&call.started_at),
        call.end_reason.as_deref().unwrap_or(&call.status),
        call.transcript
    )
}

/// The recording's bytes, read from this node's disk.
async fn read_recording(call: &CallRecord, path: &std::path::Path) -> Result<bytes::Bytes, ConnectorError> {
    let missing = || {
        ConnectorError::NotFound(format!(
            "recording file of call {} on this node (recorded by another node, or removed by retention)",
            call.call_id
        ))
    };
    let meta = tokio::fs::metadata(path).await.map_err(|_| missing())?;
    if meta.len() > MAX_RECORDING_BYTES {
        return Err(ConnectorError::Config(format!(
            "the recording of call {} is {} bytes, over the {MAX_RECORDING_BYTES}-byte upload limit",
            call.call_id,
            meta.len()
        )));
    }
    tokio::fs::read(path).await.map(bytes::Bytes::from).map_err(|_| missing())
}

#[async_trait::async_trait]
impl CallLog for GoogleDrive {
    async fn log_call(
        &self,
        ctx: &RequestContext,
        call: &CallRecord,
        _idempotency_key: &str,
    ) -> Result<(), ConnectorError> {
        let recording = match (&call.recording, self.config.recording) {
            (Some(file), true) => Some((file, read_recording(call, &file.path).await?)),
            _ => None,
        };
        if !self.config.transcript && recording.is_none() {
            return Ok(());
        }
        let folder = self
            .folder_id(ctx, true)
            .await?
            .ok_or_else(|| ConnectorError::UnexpectedResponse("no folder after creating it".into()))?;
        if self.config.transcript {
            let text = transcript_text(call);
            self.upload_once(
                ctx,
                &folder,
                &export_key("transcript", &call.call_id),
                export_name(call, "transcript.txt"),
                "text/plain; charset=UTF-8",
                bytes::Bytes::from(text),
            )
            .await?;
        }
        if let Some((file, media)) = recording {
            let extension = file
                .path
                .extension()
                .and_then(|e| e.to_str())
                .unwrap_or("audio");
            self.upload_once(
                ctx,
                &folder,
                &export_key("recording", &call.call_id),
                export_name(call, &format!("recording.{extension}")),
                file.media_type,
                media,
            )
            .await?;
        }
        Ok(())
    }

    async fn health_check(&self, ctx: &RequestContext) -> Result<(), ConnectorError> {
        // The folder's metadata (or the search for the bridge's own): proves token and access.
        match self.folder_id(ctx, false).await? {
            Some(id) => self.files().folder(ctx, &id).await.map(drop),
            None => Ok(()),
        }
    }
}

/// The vendor descriptor, registered in [`super::registry`].
pub static VENDOR: Vendor = Vendor {
    id: CONNECTOR,
    name: "Google Drive",
    spec: "google-drive/",
    default_base_url: Some(DEFAULT_BASE_URL),
    capabilities: &[Capability::Exports],
    secret: SecretShape {
        bare_token: false,
        fields: &[
            SecretField {
                name: "folder_id",
                aliases: &[],
                required: false,
                doc: "the folder's id (from its URL: /drive/folders/<id>); with the drive.file scope, a folder the bridge created (default: its own folder, `folder_name`)",
            },
            SecretField {
                name: "folder_name",
                aliases: &[],
                required: false,
                doc: "name of the folder the bridge creates in My Drive when no folder_id is set (default `Call recordings`)",
            },
            SecretField {
                name: "upload",
                aliases: &[],
                required: false,
                doc: "what to upload after each call: any of `recording`, `transcript` (default both)",
            },
            GOOGLE_CLIENT_FIELDS[0],
            GOOGLE_CLIENT_FIELDS[1],
            GOOGLE_CLIENT_FIELDS[2],
        ],
        note: "or a service-account key file as downloaded (`\"type\": \"service_account\"`), plus the settings; or connect with OAuth and keep only the settings here",
    },
    oauth: Some(google_oauth(&[(Capability::Exports, &[GOOGLE_DRIVE_FILE_SCOPE])])),
    webhooks: None,
    profile,
    build,
};

/// The policy profile (no vendor-specific rules).
pub fn profile() -> ConnectorProfile {
    ConnectorProfile::new(CONNECTOR)
}

fn build(ctx: BuildContext<'_>) -> Result<Built, BuildFailure> {
    let tokens = google_tokens(&ctx, CONNECTOR, GOOGLE_DRIVE_FILE_SCOPE)?;
    let folder = match drive_id(&ctx, "folder_id")? {
        Some(id) => Folder::Id(id),
        None => {
            let name = ctx.credentials.text("folder_name").unwrap_or(DEFAULT_FOLDER_NAME).trim();
            if name.is_empty() || name.chars().count() > 200 || name.chars().any(char::is_control) {
                return Err(BuildFailure::Config("folder_name: 1 to 200 characters, no control characters".into()));
            }
            Folder::Own(name.to_owned())
        }
    };
    let (mut recording, mut transcript) = (true, true);
    if let Some(list) = ctx.credentials.list("upload") {
        (recording, transcript) = (false, false);
        for item in list {
            match item.as_str() {
                Some("recording") => recording = true,
                Some("transcript") => transcript = true,
                _ => {
                    return Err(BuildFailure::Config(
                        "upload: a list of `recording`, `transcript`".into(),
                    ));
                }
            }
        }
        if !recording && !transcript {
            return Err(BuildFailure::Config("upload: name `recording`, `transcript` or both".into()));
        }
    }
    let config = GoogleDriveConfig {
        base_url: ctx.base_url()?,
        folder,
        recording,
        transcript,
    };
    Ok(Built {
        call_log: Some(Arc::new(GoogleDrive::new(ctx.policy, config, tokens))),
        ..Built::default()
    })
}
