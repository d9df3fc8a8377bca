//! A text model over the OpenAI Responses API (`POST {base}/responses`), for post-call analysis:
//! one request with instructions, an input text and a JSON Schema the reply should follow
//! (`text.format` = `json_schema`), and the reply's output text back. Any OpenAI-compatible server
//! that implements `/responses` works (the base URL is the operator's).
//!
//! It owns the request and the reading of the reply; it must not validate the reply against the
//! schema or decide to retry on a bad one (that is `analysis/`), and never logs the API key. Sent
//! through the one outbound policy like every vendor request.

use std::time::Duration;

use reqwest::Url;
use secrecy::SecretString;
use serde_json::{Value, json};

use super::ConnectorError;
use super::client::{Auth, VendorClient};
use super::http::{ConnectorProfile, HttpPolicy, PolicyOverrides, Replay, RequestContext};

/// The deployment's default analysis model.
pub const DEFAULT_MODEL: &str = "gpt-4.1-mini";
/// The default base URL.
pub const DEFAULT_BASE_URL: &str = "https://api.openai.com/v1";

/// The policy profile: a slow model answer is normal, a retry of a lost answer is harmless (no
/// side effect: `store: false`).
pub fn profile() -> ConnectorProfile {
    ConnectorProfile::new("text_llm").with_overrides(PolicyOverrides {
        max_attempts: Some(3),
        attempt_timeout: Some(Duration::from_secs(60)),
        breaker: true,
        max_concurrency: Some(8),
    })
}

/// One request: what the model is told and what it reads.
#[derive(Debug, Clone)]
pub struct JsonRequest<'a> {
    pub model: &'a str,
    pub instructions: &'a str,
    pub input: &'a str,
    /// The name of the schema (`^[a-zA-Z0-9_-]+$`).
    pub schema_name: &'a str,
    pub schema: &'a Value,
}

/// The Responses API client.
#[derive(Debug, Clone)]
pub struct TextLlm {
    client: VendorClient,
}

impl TextLlm {
    pub fn new(
        policy: HttpPolicy,
        base: &str,
        api_key: SecretString,
    ) -> Result<Self, ConnectorError> {
        let base = Url::parse(base)
            .map_err(|e| ConnectorError::Config(format!("analysis base URL {base:?}: {e}")))?;
        Ok(Self {
            client: VendorClient::new(policy, profile(), base, Auth::Bearer(api_key)),
        })
    }

    /// The request body (also what tests check).
    pub fn body(request: &JsonRequest<'_>) -> Value {
        json!({
            "model": request.model,
            "instructions": request.instructions,
            "input": request.input,
            "store": false,
            "text": {
                "format": {
                    "type": "json_schema",
                    "name": request.schema_name,
                    "schema": request.schema,
                    "strict": false,
                }
            }
        })
    }

    /// Sends `request`; returns the reply's output text (unparsed).
    pub async fn respond(
        &self,
        ctx: &RequestContext,
        request: &JsonRequest<'_>,
    ) -> Result<String, ConnectorError> {
        let reply: Value = self
            .client
            .post(&["responses"])
            .json(Self::body(request))
            .replay(Replay::Idempotent)
            .send_json(ctx, "analysis")
            .await?;
        output_text(&reply)
    }
}

/// The text of a Responses API reply: the `output_text` parts of its `message` items, joined.
pub fn output_text(reply: &Value) -> Result<String, ConnectorError> {
    if let Some(status) = reply["status"].as_str()
        && status != "completed"
    {
        return Err(ConnectorError::UnexpectedResponse(format!(
            "the response is {status}"
        )));
    }
    let mut text = String::new();
    for item in reply["output"].as_array().into_iter().flatten() {
        if item["type"] != "message" {
            continue;
        }
        for part in item["content"].as_array().into_iter().flatten() {
            if part["type"] == "output_text"
                && let Some(t) = part["text"].as_str()
            {
                text.push_str(t);
            }
        }
    }
    if text.is_empty() {
        return Err(ConnectorError::UnexpectedResponse(
            "the response has no output text".into(),
        ));
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_text_reads_message_parts_only() {
        let reply = json!({"status": "completed", "output": [
            {"type": "reasoning", "summary": []},
            {"type": "message", "role": "assistant", "content": [
                {"type": "output_text", "text": "{\"a\":", "annotations": []},
                {"type": "output_text", "text": "1}", "annotations": []}]}]});
        assert_eq!(output_text(&reply).unwrap(), "{\"a\":1}");
        assert!(output_text(&json!({"status": "incomplete", "output": []})).is_err());
        assert!(output_text(&json!({"status": "completed", "output": []})).is_err());
    }

    #[test]
    fn the_body_asks_for_the_schema() {
        let schema = json!({"type": "object"});
        let body = TextLlm::body(&JsonRequest {
            model: "m",
            instructions: "i",
            input: "t",
            schema_name: "call_analysis",
            schema: &schema,
        });
        assert_eq!(body["text"]["format"]["type"], "json_schema");
        assert_eq!(body["text"]["format"]["schema"], schema);
        assert_eq!(body["store"], false);
    }
}
