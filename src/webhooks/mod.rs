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
    let body = serde_json::to_string(&call_ended_payload(&call, &events))
        .map_err(|e| WebhookError::Encode(e.to_string()))?;
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

/// A webhook endpoint must be `https://`; plain `http://` is accepted only for loopback hosts
/// (`127.0.0.1`, `::1`, `localhost`), for local testing. No credentials in the URL, no fragment.
pub fn validate_url(raw: &str) -> Result<Url, WebhookError> {
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
    let Some(host) = url.host_str() else {
        return Err(invalid("must have a host"));
    };
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let loopback = host.eq_ignore_ascii_case("localhost")
        || bare
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    match url.scheme() {
        "https" => Ok(url),
        "http" if loopback => Ok(url),
        "http" => Err(invalid(
            "must use https (http is accepted only for 127.0.0.1 or localhost)",
        )),
        _ => Err(invalid("must start with https://")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_must_be_https_except_on_loopback() {
        for ok in [
            "https://hooks.example.com/callbridge",
            "https://hooks.example.com:8443/x?tenant=a",
            "http://127.0.0.1:9000/hook",
            "http://localhost/hook",
            "http://[::1]:8080/",
        ] {
            assert!(validate_url(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "hooks.example.com",
            "http://hooks.example.com/",
            "http://10.0.0.1/",
            "ftp://127.0.0.1/",
            "https://user:pw@hooks.example.com/",
            "https://hooks.example.com/#frag",
        ] {
            assert!(validate_url(bad).is_err(), "{bad}");
        }
    }
}
