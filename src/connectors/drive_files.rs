//! Drive v3 file operations shared by the Google exports (`google_drive`, `google_docs`): read a
//! file's metadata, find what an earlier attempt already wrote, create a folder, upload a file
//! (one multipart request, or a resumable session for a large one) and copy a file.
//!
//! Built from the discovery document `vendor-specs/google-drive/drive__v3.json` (rootUrl
//! `https://www.googleapis.com/`, service path `drive/v3/`, media uploads under
//! `upload/drive/v3/files`). Every file the bridge writes carries the app property
//! [`EXPORT_PROPERTY`] = `<kind>:<call id>`, so a retried export finds it ([`DriveFiles::find`])
//! instead of writing it twice. It must not know calls, settings or the store: the vendor files
//! decide what to write and where.

use reqwest::Method;
use reqwest::header::{HeaderName, HeaderValue};
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};

use std::sync::Arc;

use super::client::{TokenSource, VendorClient, multipart_related};
use super::kit::{BuildContext, BuildFailure};
use super::oauth::google_token_source;
use super::{CallRecord, ConnectorError, rfc3339};
use crate::connectors::http::{Replay, RequestContext};

/// The app property that names what a file exports (`recording:<call id>`).
pub const EXPORT_PROPERTY: &str = "callbridgeExport";
/// A Drive folder's MIME type.
pub const FOLDER_MIME: &str = "application/vnd.google-apps.folder";
/// Largest file sent as one multipart request (Google's guidance for "small files"); a larger
/// one goes through a resumable session.
pub const MULTIPART_MAX_BYTES: usize = 5 * 1024 * 1024;
/// The fields asked of every file answer.
const FILE_FIELDS: &str = "id,name,mimeType";

/// A Drive file as the exports read it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DriveFile {
    pub id: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub mime_type: String,
}

#[derive(Deserialize)]
struct FileList {
    #[serde(default)]
    files: Vec<DriveFile>,
}

/// A string literal of a Drive search query (`'…'` with `\` and `'` escaped).
pub fn q_literal(text: &str) -> String {
    format!("'{}'", text.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// The export property's value for `kind` of `call_id` (hashed when the pair would pass Drive's
/// 124-byte limit on a property's key and value together).
pub fn export_key(kind: &str, call_id: &str) -> String {
    let key = format!("{kind}:{call_id}");
    if EXPORT_PROPERTY.len() + key.len() <= 124 {
        return key;
    }
    let digest = Sha256::digest(key.as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("{kind}:{hex}")
}

/// A file name for an export of `call`: `2025-03-04T15:00:00Z +14155550100 <call id> <what>`
/// (start time, caller, call id), without `/` or control characters.
pub fn export_name(call: &CallRecord, what: &str) -> String {
    format!(
        "{} {} {} {what}",
        rfc3339(&call.started_at),
        call.from,
        call.call_id
    )
    .chars()
    .map(|c| if c == '/' || c.is_control() { '_' } else { c })
    .collect()
}

/// A Drive account's file operations, through its [`VendorClient`] (base URL: the API root,
/// `https://www.googleapis.com/`, or the tenant's override).
pub struct DriveFiles<'c> {
    pub client: &'c VendorClient,
}

impl DriveFiles<'_> {
    /// The file `id`'s metadata; a 404 is `not found: <what>`.
    /// operationId: drive.files.get
    pub async fn get(
        &self,
        ctx: &RequestContext,
        id: &str,
        what: &str,
    ) -> Result<DriveFile, ConnectorError> {
        self.client
            .get(&["drive", "v3", "files", id])
            .query("fields", FILE_FIELDS)
            .query("supportsAllDrives", "true")
            .send_json(ctx, what)
            .await
    }

    /// The folder `id`, checked to be a folder.
    pub async fn folder(
        &self,
        ctx: &RequestContext,
        id: &str,
    ) -> Result<DriveFile, ConnectorError> {
        let what = format!("Drive folder {id} (missing, or not shared with the connected account)");
        let folder = self.get(ctx, id, &what).await?;
        if folder.mime_type != FOLDER_MIME {
            return Err(ConnectorError::Config(format!(
                "Drive file {id} is a {}, not a folder",
                folder.mime_type
            )));
        }
        Ok(folder)
    }

    /// The first file (not trashed) under `parent` (any when `None`) whose app property
    /// [`EXPORT_PROPERTY`] is `key`.
    /// operationId: drive.files.list
    pub async fn find(
        &self,
        ctx: &RequestContext,
        parent: Option<&str>,
        key: &str,
    ) -> Result<Option<DriveFile>, ConnectorError> {
        let mut q = format!(
            "appProperties has {{ key={} and value={} }} and trashed = false",
            q_literal(EXPORT_PROPERTY),
            q_literal(key)
        );
        if let Some(parent) = parent {
            q = format!("{} in parents and {q}", q_literal(parent));
        }
        let list: FileList = self
            .client
            .get(&["drive", "v3", "files"])
            .query("q", &q)
            .query("pageSize", "1")
            .query("fields", "files(id,name,mimeType)")
            .query("supportsAllDrives", "true")
            .query("includeItemsFromAllDrives", "true")
            .send_json(ctx, "Drive files")
            .await?;
        Ok(list.files.into_iter().next())
    }

    /// Creates a folder named `name` carrying the export property `key` (in My Drive's root).
    /// operationId: drive.files.create
    pub async fn create_folder(
        &self,
        ctx: &RequestContext,
        name: &str,
        key: &str,
    ) -> Result<DriveFile, ConnectorError> {
        self.client
            .post(&["drive", "v3", "files"])
            .query("fields", FILE_FIELDS)
            .json(json!({
                "name": name,
                "mimeType": FOLDER_MIME,
                "appProperties": { EXPORT_PROPERTY: key },
            }))
            // A create is not idempotent at Google: the next attempt finds it by its property.
            .replay(Replay::Never)
            .send_json(ctx, "Drive folder")
            .await
    }

    /// Uploads `media` of `media_type` as `name` into `folder`, with the export property `key`:
    /// one multipart request up to [`MULTIPART_MAX_BYTES`], else a resumable session.
    /// operationId: drive.files.create (media upload)
    pub async fn upload(
        &self,
        ctx: &RequestContext,
        folder: &str,
        name: &str,
        key: &str,
        media_type: &str,
        media: bytes::Bytes,
    ) -> Result<DriveFile, ConnectorError> {
        let metadata = json!({
            "name": name,
            "parents": [folder],
            "appProperties": { EXPORT_PROPERTY: key },
        });
        let what =
            format!("Drive folder {folder} (missing, or not shared with the connected account)");
        if media.len() <= MULTIPART_MAX_BYTES {
            let (content_type, body) = multipart_related(&metadata, media_type, &media);
            return self
                .client
                .post(&["upload", "drive", "v3", "files"])
                .query("uploadType", "multipart")
                .query("supportsAllDrives", "true")
                .query("fields", FILE_FIELDS)
                .bytes(&content_type, body)
                .replay(Replay::Never)
                .send_json(ctx, &what)
                .await;
        }
        // The session: metadata now, the content's type and length announced.
        let session = self
            .client
            .post(&["upload", "drive", "v3", "files"])
            .query("uploadType", "resumable")
            .query("supportsAllDrives", "true")
            .query("fields", FILE_FIELDS)
            .header(
                HeaderName::from_static("x-upload-content-type"),
                header_value(media_type)?,
            )
            .header(
                HeaderName::from_static("x-upload-content-length"),
                header_value(&media.len().to_string())?,
            )
            .json(metadata)
            // Opening a session writes nothing: it may be replayed.
            .replay(Replay::Idempotent)
            .send(ctx, &what)
            .await?;
        let location = session
            .headers
            .get(reqwest::header::LOCATION)
            .and_then(|value| value.to_str().ok())
            .ok_or_else(|| {
                ConnectorError::UnexpectedResponse("the upload session has no Location".into())
            })?
            .to_owned();
        // The whole content in one request to the session URI (same URI: replay-safe).
        self.client
            .request_at(Method::PUT, &location)
            .bytes(media_type, media)
            .replay(Replay::Idempotent)
            .send_json(ctx, "Drive upload session")
            .await
    }

    /// Copies `template` as `name` into `folder` (beside the template when `None`), with the
    /// export property `key`.
    /// operationId: drive.files.copy
    pub async fn copy(
        &self,
        ctx: &RequestContext,
        template: &str,
        folder: Option<&str>,
        name: &str,
        key: &str,
    ) -> Result<DriveFile, ConnectorError> {
        let mut body = json!({ "name": name, "appProperties": { EXPORT_PROPERTY: key } });
        if let Some(folder) = folder {
            body["parents"] = json!([folder]);
        }
        let what =
            format!("Docs template {template} (missing, or not shared with the connected account)");
        self.client
            .post(&["drive", "v3", "files", template, "copy"])
            .query("supportsAllDrives", "true")
            .query("fields", FILE_FIELDS)
            .json(body)
            .replay(Replay::Never)
            .send_json(ctx, &what)
            .await
    }
}

fn header_value(text: &str) -> Result<HeaderValue, ConnectorError> {
    HeaderValue::from_str(text)
        .map_err(|_| ConnectorError::Config(format!("{text:?} is not a header value")))
}

/// A Drive id as Google writes them: letters, digits, `-` and `_`.
pub fn drive_id(ctx: &BuildContext<'_>, name: &str) -> Result<Option<String>, BuildFailure> {
    let Some(id) = ctx.credentials.text(name).map(str::trim) else {
        return Ok(None);
    };
    if id.is_empty()
        || id.len() > 200
        || !id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(BuildFailure::Config(format!(
            "{name}: letters, digits, `-` and `_` only (the id from the file's URL)"
        )));
    }
    Ok(Some(id.to_owned()))
}

/// The tenant's token source: its OAuth connection, else the secret's grant for `scope`.
pub fn google_tokens(
    ctx: &BuildContext<'_>,
    connector: &'static str,
    scope: &str,
) -> Result<Arc<dyn TokenSource>, BuildFailure> {
    Ok(match &ctx.oauth {
        Some(grant) => grant.tokens.clone(),
        None => Arc::new(google_token_source(
            &ctx.credentials,
            &ctx.policy,
            connector,
            scope,
        )?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_literals_escape_quotes_and_backslashes() {
        assert_eq!(q_literal("plain"), "'plain'");
        assert_eq!(q_literal(r"it's a\b"), r"'it\'s a\\b'");
    }

    #[test]
    fn export_keys_fit_drives_property_limit() {
        assert_eq!(export_key("recording", "call_1"), "recording:call_1");
        let long = "c".repeat(128);
        let key = export_key("transcript", &long);
        assert!(EXPORT_PROPERTY.len() + key.len() <= 124, "{key}");
        assert!(key.starts_with("transcript:"));
        assert_eq!(key, export_key("transcript", &long), "stable");
    }
}
