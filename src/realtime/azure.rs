//! Azure OpenAI realtime (GA): the OpenAI GA dialect at `{endpoint}/openai/v1/realtime?model=
//! {deployment}` with an `api-key` header (protocols.md §5.2). The events and session shape are
//! OpenAI's, so this module only builds the endpoint and reuses [`OpenAiDialect`].
//!
//! It must not copy the GA encoder or decoder, and must not use the preview URL
//! (`/openai/realtime?api-version=…&deployment=…`), which carries beta shapes.

use super::ConnectError;
use super::openai::{KeyHeader, OpenAiDialect};

/// The GA realtime path under an Azure OpenAI resource.
const GA_PATH: &str = "/openai/v1/realtime";

/// The GA dialect for `deployment` on the resource at `endpoint` (e.g.
/// `https://my-resource.openai.azure.com`; `http://` only makes sense for a local fake).
pub fn dialect(
    endpoint: &str,
    deployment: &str,
    api_key: &str,
) -> Result<OpenAiDialect, ConnectError> {
    Ok(OpenAiDialect::compatible(
        "azure",
        realtime_url(endpoint)?,
        deployment,
        api_key,
        KeyHeader::ApiKey,
    ))
}

/// `wss://{resource}/openai/v1/realtime` from the resource endpoint in any of its usual forms.
pub fn realtime_url(endpoint: &str) -> Result<String, ConnectError> {
    let bad = |reason: &str| ConnectError::BadUrl {
        url: endpoint.to_owned(),
        reason: reason.to_owned(),
    };
    let trimmed = endpoint.trim().trim_end_matches('/');
    let (scheme, rest) = trimmed
        .split_once("://")
        .ok_or_else(|| bad("is not a URL like https://my-resource.openai.azure.com"))?;
    let ws_scheme = match scheme {
        "https" | "wss" => "wss",
        "http" | "ws" => "ws",
        _ => return Err(bad("must start with https://")),
    };
    if rest.is_empty() || rest.contains(['?', '#', ' ']) {
        return Err(bad("must be the resource origin, without a query"));
    }
    // Accept the endpoint with or without the API path people copy from the portal.
    let origin = rest
        .strip_suffix(GA_PATH)
        .or_else(|| rest.strip_suffix("/openai/v1"))
        .or_else(|| rest.strip_suffix("/openai"))
        .unwrap_or(rest);
    Ok(format!("{ws_scheme}://{origin}{GA_PATH}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::realtime::{Dialect, LlmCommand, LlmEvent};

    #[test]
    fn the_ga_url_has_the_deployment_as_model_and_no_api_version() {
        let d = dialect("https://acme.openai.azure.com/", "rt-prod", "azkey").unwrap();
        let request = d.connect_request().unwrap();
        assert_eq!(
            request.uri().to_string(),
            "wss://acme.openai.azure.com/openai/v1/realtime?model=rt-prod"
        );
        assert_eq!(request.headers()["api-key"], "azkey");
        assert!(request.headers().get("Authorization").is_none());
        assert_eq!(d.name(), "azure");
    }

    #[test]
    fn endpoints_with_the_api_path_or_a_local_scheme_are_normalised() {
        for (endpoint, url) in [
            (
                "https://acme.openai.azure.com/openai/v1/",
                "wss://acme.openai.azure.com/openai/v1/realtime",
            ),
            (
                "https://acme.openai.azure.com/openai",
                "wss://acme.openai.azure.com/openai/v1/realtime",
            ),
            (
                "http://127.0.0.1:9000",
                "ws://127.0.0.1:9000/openai/v1/realtime",
            ),
        ] {
            assert_eq!(realtime_url(endpoint).unwrap(), url);
        }
        for bad in [
            "acme.openai.azure.com",
            "ftp://x",
            "https://x?api-version=1",
        ] {
            assert!(realtime_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn events_and_session_are_the_openai_ga_ones() {
        let d = dialect("https://acme.openai.azure.com", "rt-prod", "k").unwrap();
        let text = d.encode(&LlmCommand::UpdateSession(crate::realtime::SessionConfig {
            instructions: "Hi".into(),
            voice: "alloy".into(),
            audio_format: crate::realtime::AudioFormat::Pcmu,
            tools: vec![],
            transcription_model: None,
            resumption_handle: None,
        }));
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["session"]["type"], "realtime");
        assert_eq!(v["session"]["model"], "rt-prod");
        assert_eq!(
            d.decode(r#"{"type":"input_audio_buffer.speech_started","audio_start_ms":120}"#)
                .unwrap(),
            Some(LlmEvent::SpeechStarted {
                audio_start_ms: Some(120)
            })
        );
        assert!(d.supports_truncate());
        assert!(d.cancels_on_speech());
    }
}
