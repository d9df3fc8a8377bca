//! HTTP errors of the admin API: one JSON shape, `{"error": {"code", "message", "field"?}}`, and
//! one status per cause. Bad input of any kind (malformed JSON, a wrong field, an oversized body)
//! is a precise 4xx, never a 500; internal failures are logged here and answered without details.

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::admin::ServiceError;
use crate::admin::dto::{ErrorBody, ErrorDetail, RejectedRowView};

/// An error answer.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub field: Option<String>,
    /// The bad rows of a refused CSV file.
    pub rejected: Option<Vec<RejectedRowView>>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            field: None,
            rejected: None,
        }
    }

    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing or invalid API key: send `Authorization: Bearer <key>`",
        )
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.to_owned(),
                message: self.message,
                field: self.field,
                rejected: self.rejected,
            },
        };
        let mut response = (self.status, Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED
            && let Ok(value) = header::HeaderValue::from_str("Bearer")
        {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, value);
        }
        response
    }
}

impl From<ServiceError> for ApiError {
    fn from(err: ServiceError) -> Self {
        let message = err.to_string();
        match err {
            ServiceError::NotFound(_) => Self::not_found(message),
            ServiceError::Conflict(_) => Self::new(StatusCode::CONFLICT, "conflict", message),
            ServiceError::Invalid { field, .. } => Self {
                field: Some(field),
                ..Self::new(StatusCode::BAD_REQUEST, "invalid_field", message)
            },
            ServiceError::PromptTooLarge { .. } => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "prompt_too_large",
                message,
            ),
            ServiceError::InvalidPrompt { .. } => {
                Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_prompt", message)
            }
            ServiceError::Forbidden(_) => Self::new(StatusCode::FORBIDDEN, "forbidden", message),
            ServiceError::VaultUnavailable(_) => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "vault_unavailable",
                message,
            ),
            ServiceError::InvalidCsv { rejected, .. } => Self {
                field: Some("csv".into()),
                rejected: Some(rejected.into_iter().map(Into::into).collect()),
                ..Self::new(StatusCode::BAD_REQUEST, "invalid_csv", message)
            },
            ServiceError::TooLarge(_) => {
                Self::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", message)
            }
            ServiceError::Unavailable(_) => {
                Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
            }
            ServiceError::Internal(detail) => {
                tracing::error!(error = %detail, "admin API internal error");
                Self::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "internal error; see the server log",
                )
            }
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        match rejection {
            JsonRejection::JsonDataError(e) => {
                // serde names the field in its message ("missing field `name`", "unknown field
                // `x`", "invalid type … at line 1 column 9").
                let detail = e.body_text();
                Self {
                    field: field_in_serde_message(&detail),
                    ..Self::new(StatusCode::BAD_REQUEST, "invalid_field", detail)
                }
            }
            JsonRejection::JsonSyntaxError(e) => {
                Self::new(StatusCode::BAD_REQUEST, "malformed_json", e.body_text())
            }
            JsonRejection::MissingJsonContentType(e) => Self::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                e.body_text(),
            ),
            other if other.status() == StatusCode::PAYLOAD_TOO_LARGE => Self::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!(
                    "the request body is larger than {} bytes",
                    super::MAX_BODY_BYTES
                ),
            ),
            other => Self::new(StatusCode::BAD_REQUEST, "malformed_json", other.body_text()),
        }
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        let detail = rejection.body_text();
        Self {
            field: field_in_serde_message(&detail),
            ..Self::new(StatusCode::BAD_REQUEST, "invalid_field", detail)
        }
    }
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        // Path parameters are free text; only undecodable bytes get here, and such a name
        // cannot exist.
        Self::not_found(rejection.body_text())
    }
}

/// The field a deserialization message names: the path axum puts before the serde message
/// (`…target type: max_duration_s: invalid type…`), else the one serde names in backticks
/// (`missing field `name``).
fn field_in_serde_message(message: &str) -> Option<String> {
    if let Some(at) = message.find("target type: ") {
        let rest = &message[at + "target type: ".len()..];
        if let Some((path, _)) = rest.split_once(": ")
            && !path.is_empty()
            && !path.contains(' ')
        {
            return Some(path.to_owned());
        }
    }
    let marker = ["field `", "variant `"]
        .iter()
        .find_map(|m| message.find(m).map(|at| at + m.len()))?;
    let rest = &message[marker..];
    rest.find('`').map(|end| rest[..end].to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_field_serde_names() {
        assert_eq!(
            field_in_serde_message("Failed to deserialize: missing field `name` at line 1")
                .as_deref(),
            Some("name")
        );
        assert_eq!(
            field_in_serde_message("unknown field `nmae`, expected one of `name`").as_deref(),
            Some("nmae")
        );
        assert_eq!(
            field_in_serde_message(
                "Failed to deserialize the JSON body into the target type: max_duration_s: \
                 invalid type: string \"x\", expected u32 at line 1 column 25"
            )
            .as_deref(),
            Some("max_duration_s")
        );
        assert_eq!(field_in_serde_message("invalid type: string"), None);
    }

    #[test]
    fn internal_errors_do_not_leak_details() {
        let api: ApiError = ServiceError::Internal("database password=hunter2".into()).into();
        assert_eq!(api.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(!api.message.contains("hunter2"));
    }
}
