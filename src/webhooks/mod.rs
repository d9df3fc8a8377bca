//! Post-call webhooks: a tenant's HTTPS endpoint receives a signed `call.ended` event after every
//! call, delivered from a durable outbox so that neither a receiver outage nor a restart of the
//! bridge loses one.
//!
//! - [`enqueue_call_ended`] (called by the call driver when a call ends) builds the payload from
//!   the stored call and its events and writes it to the outbox in one statement.
//! - [`worker::DeliveryWorker`] claims due rows with a lease, signs and POSTs them, and retries
//!   with exponential backoff up to a maximum number of attempts. Any number of workers, on any
//!   number of nodes, may run at once (see [`crate::store::SqlStore::claim_outbox`]).
//! - [`signature`] implements Standard Webhooks signing; [`validate_url`] the endpoint rule.
//!
//! Delivery is at-least-once with a stable `webhook-id` per event, which receivers use to drop the
//! rare duplicate (a worker that dies after the receiver answered but before recording it).
//!
//! This module must not hold call state or decide when a call ends, and it never logs a signing
//! secret or a payload (payloads carry transcripts).

pub mod payload;
pub mod signature;
pub mod worker;

use reqwest::Url;

use crate::egress::EgressPolicy;

use crate::store::{NewOutboxMessage, SqlStore, Store, StoreError, TenantId};
use crate::tenant::vault::VaultError;

pub use payload::call_ended_payload;
pub use signature::{SigningSecret, SigningSecretError};
pub use worker::{DeliveryWorker, WorkerHandle, WorkerOptions, spawn_from_env};

/// The event type sent when a call ends.
pub const CALL_ENDED: &str = "call.ended";

/// Every failure of the webhook module.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WebhookError {
    #[error("call {call_id} has not ended yet; enqueue its webhook after finish_call")]
    CallNotEnded { call_id: String },
    #[error("invalid webhook url: {0}")]
    InvalidUrl(String),
    /// The URL's host or scheme is not allowed by the operator's egress policy.
    #[error("invalid webhook url: {0}")]
    Egress(crate::egress::EgressError),
    #[error("invalid worker options: {0}")]
    InvalidOptions(String),
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
    #[error("cannot encode the payload: {0}")]
    Encode(String),
    #[error(transparent)]
    Vault(#[from] VaultError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Puts the `call.ended` event of a finished call in the tenant's outbox. Does nothing (and
/// succeeds) when the tenant has no enabled webhook, or when the event was already enqueued.
///
/// The payload is a snapshot of the call row and its events; call it after
/// [`crate::store::Store::finish_call`]. The outbox insert is a single statement, so it is either
/// fully written or not at all; a producer that wants it inside its own transaction can build the
/// payload with [`call_ended_payload`] and use [`crate::store::enqueue_outbox`] on that transaction.
pub async fn enqueue_call_ended(
    store: &SqlStore,
    tenant: &TenantId,
    call_id: &str,
) -> Result<(), WebhookError> {
    let call = store.call(tenant, call_id).await?;
    if call.ended_at.is_none() {
        return Err(WebhookError::CallNotEnded {
            call_id: call_id.to_owned(),
        });
    }
    let events = store.call_events(tenant, call_id).await?;
    let mut payload = call_ended_payload(&call, &events);
    if let Some(analysis) = store.call_analysis(tenant, call_id).await? {
        payload["data"]["analysis"] = payload::analysis_entry(&analysis);
    }
    let body = serde_json::to_string(&payload).map_err(|e| WebhookError::Encode(e.to_string()))?;
    let dedupe_key = format!("{CALL_ENDED}:{call_id}");
    let enqueued = store
        .enqueue_webhook(&NewOutboxMessage {
            tenant_id: tenant,
            event_type: CALL_ENDED,
            dedupe_key: &dedupe_key,
            payload: &body,
        })
        .await?;
    tracing::debug!(%tenant, call_id, enqueued, "call.ended webhook");
    Ok(())
}

/// A webhook endpoint must be `https://` to a public host. The operator's egress allow-list
/// (`CALLBRIDGE_EGRESS_ALLOW`) is the only way to reach another host, and the only way to use
/// plain `http://` (a receiver on the LAN, a test's loopback mock). No credentials in the URL, no
/// fragment. The same check runs when the URL is written and before every delivery; the worker's
/// client checks the resolved addresses again at connect time.
pub fn validate_url(raw: &str, egress: &EgressPolicy) -> Result<Url, WebhookError> {
    let invalid = |reason: &str| WebhookError::InvalidUrl(reason.to_owned());
    if raw.len() > 2048 {
        return Err(invalid("must be at most 2048 characters"));
    }
    let url = Url::parse(raw).map_err(|e| invalid(&format!("not a URL ({e})")))?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid("must not contain credentials"));
    }
    if url.fragment().is_some() {
        return Err(invalid("must not contain a #fragment"));
    }
    if url.host_str().is_none() {
        return Err(invalid("must have a host"));
    }
    if !matches!(url.scheme(), "https" | "http") {
        return Err(invalid("must start with https://"));
    }
    egress.check_url(&url).map_err(WebhookError::Egress)?;
    Ok(url)
}

/// What a tenant is told about a failed delivery: neutral words, never the resolver's, TLS
/// stack's or socket's detail (that would map the operator's network for the tenant). The full
/// error goes to the operator's log.
pub(crate) fn neutral_delivery_error(err: &reqwest::Error) -> &'static str {
    if crate::egress::is_egress_refusal(err) {
        "refused by egress policy"
    } else if err.is_timeout() {
        "connection failed (timed out)"
    } else {
        "connection failed"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_must_be_public_https_unless_the_operator_allows_the_host() {
        let strict = EgressPolicy::strict();
        for ok in [
            "https://hooks.example.com/callbridge",
            "https://hooks.example.com:8443/x?tenant=a",
        ] {
            assert!(validate_url(ok, &strict).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "hooks.example.com",
            "http://hooks.example.com/",
            "http://10.0.0.1/",
            "https://10.0.0.1/",
            "https://127.0.0.1:9000/hook",
            "http://127.0.0.1:9000/hook",
            "http://localhost/hook",
            "https://[::1]:8080/",
            "https://169.254.169.254/latest/meta-data",
            "https://2130706433/",
            "ftp://127.0.0.1/",
            "https://user:pw@hooks.example.com/",
            "https://hooks.example.com/#frag",
        ] {
            assert!(validate_url(bad, &strict).is_err(), "{bad}");
        }
        let refused = validate_url("https://127.0.0.1/", &strict).unwrap_err();
        assert!(
            refused.to_string().contains("refused by egress policy"),
            "{refused}"
        );
        let loopback = EgressPolicy::allow_loopback();
        assert!(validate_url("http://127.0.0.1:9000/hook", &loopback).is_ok());
        assert!(validate_url("http://hooks.example.com/", &loopback).is_err());
    }
}
