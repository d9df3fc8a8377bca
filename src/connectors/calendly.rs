//! Calendly as a [`Calendar`], over API v2 (`https://api.calendly.com`).
//!
//! Built from `vendor-specs/calendly/openapi.yaml` (Calendly API 2.0.0, 2023 export) for
//! `GET /event_type_available_times` (operationId `getEventTypeAvailableTimes`),
//! `POST /scheduling_links` (`post-scheduling_links`), `GET /scheduled_events/{uuid}/invitees`,
//! `POST /scheduled_events/{uuid}/cancellation` (`post-scheduled_events-uuid-cancellation`) and
//! `GET /users/me` (`me`). Direct booking uses the newer Scheduling API, which that spec lacks:
//! `POST /invitees` ("Create Event Invitee"), followed from Calendly's reference
//! <https://developer.calendly.com/api-docs> (Scheduling API → Create Event Invitee; the same page
//! as published at
//! <https://calendly-preview.mintlify.app/api-reference/v2/scheduling/create-event-invitee>) and the
//! recipe <https://developer.calendly.com/schedule-events-with-ai-agents>: body `event_type` (URI),
//! `start_time` (UTC), `invitee{name, email, timezone, text_reminder_number}`; answer
//! `resource{uri, event, status, cancel_url, reschedule_url}`. `tests/connectors/calendly.rs`
//! checks every body sent against a schema written from that page
//! (`fixtures/vendor-specs/calendly/create_event_invitee.schema.json`). That endpoint needs a paid plan;
//! where direct booking is not allowed the connector creates a single-use scheduling link and
//! returns it with [`BookingStatus::AwaitingCaller`] for the caller to finish.
//!
//! Auth: personal access token or OAuth access token as `Authorization: Bearer …`. Calendly
//! documents no idempotency header, so bookings are never replayed by the policy and the ledger
//! keeps the tool call from running twice. Calendly has no reschedule operation: a reschedule books
//! the new time for the same invitee, then cancels the old event. This module must not cache
//! events or availability.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use reqwest::Url;
use secrecy::SecretString;
use serde::Deserialize;
use serde_json::{Value, json};

use super::client::{Auth, VendorClient, map_error};
use super::kit::{
    BuildContext, BuildFailure, Built, Capability, OAuthSpec, SecretField, SecretShape, Vendor,
};
use super::{
    Attendee, Booking, BookingStatus, Calendar, ConnectorError, Slot, TimeWindow, parse_time,
    rfc3339,
};
use crate::connectors::http::{ConnectorProfile, HttpPolicy, PolicyError, Replay, RequestContext};

pub const CONNECTOR: &str = "calendly";
pub const DEFAULT_BASE_URL: &str = "https://api.calendly.com/";
/// `/event_type_available_times` refuses ranges longer than a week.
const MAX_RANGE: chrono::Duration = chrono::Duration::days(7);

/// Per-tenant settings.
pub struct CalendlyConfig {
    /// `https://api.calendly.com/` unless overridden (tests).
    pub base_url: Url,
    pub token: SecretString,
    /// The event type booked, as its URI (`https://api.calendly.com/event_types/…`).
    pub event_type: String,
    /// Book with `POST /invitees`; when false, send a single-use scheduling link instead.
    pub direct_booking: bool,
    /// Most slots offered at once.
    pub max_slots: usize,
}

impl CalendlyConfig {
    pub fn new(base_url: Url, token: SecretString, event_type: impl Into<String>) -> Self {
        Self {
            base_url,
            token,
            event_type: event_type.into(),
            direct_booking: true,
            max_slots: 8,
        }
    }
}

impl std::fmt::Debug for CalendlyConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CalendlyConfig")
            .field("base_url", &self.base_url.as_str())
            .field("event_type", &self.event_type)
            .field("direct_booking", &self.direct_booking)
            .finish_non_exhaustive()
    }
}

pub struct Calendly {
    client: VendorClient,
    config: CalendlyConfig,
}

#[derive(Deserialize)]
struct Collection<T> {
    collection: Vec<T>,
}

#[derive(Deserialize)]
struct Resource<T> {
    resource: T,
}

#[derive(Deserialize)]
struct AvailableTime {
    status: String,
    start_time: String,
}

#[derive(Deserialize)]
struct InviteeResource {
    /// The scheduled event's URI (`…/scheduled_events/{uuid}`).
    event: String,
    status: String,
    #[serde(default)]
    cancel_url: Option<String>,
}

#[derive(Deserialize)]
struct ExistingInvitee {
    status: String,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    timezone: Option<String>,
    #[serde(default)]
    text_reminder_number: Option<String>,
}

#[derive(Deserialize)]
struct SchedulingLink {
    booking_url: String,
}

/// The last path segment of a Calendly resource URI: the uuid the other endpoints take.
fn uuid_of(uri: &str) -> Result<String, ConnectorError> {
    uri.trim_end_matches('/')
        .rsplit('/')
        .next()
        .filter(|segment| !segment.is_empty() && !segment.contains(':'))
        .map(str::to_owned)
        .ok_or_else(|| ConnectorError::UnexpectedResponse(format!("not a resource URI: {uri:?}")))
}

impl Calendly {
    pub fn new(policy: HttpPolicy, config: CalendlyConfig) -> Self {
        Self {
            client: VendorClient::new(
                policy,
                profile(),
                config.base_url.clone(),
                Auth::Bearer(config.token.clone()),
            ),
            config,
        }
    }

    async fn create_invitee(
        &self,
        ctx: &RequestContext,
        start: &DateTime<Utc>,
        invitee: Value,
    ) -> Result<InviteeResource, ConnectorError> {
        // Scheduling API: Create Event Invitee (POST /invitees). No idempotency on Calendly's
        // side: never replayed.
        let body = json!({
            "event_type": self.config.event_type,
            "start_time": rfc3339(start),
            "invitee": invitee,
        });
        let created: Resource<InviteeResource> = self
            .client
            .post(&["invitees"])
            .json(body)
            .replay(Replay::Never)
            .send_json(ctx, "booking")
            .await?;
        Ok(created.resource)
    }

    async fn scheduling_link(&self, ctx: &RequestContext) -> Result<String, ConnectorError> {
        // operationId: post-scheduling_links. A second link is harmless but wasteful; the
        // ledger keeps the tool call from running twice, so it is not replayed here either.
        let body = json!({
            "max_event_count": 1,
            "owner": self.config.event_type,
            "owner_type": "EventType",
        });
        let link: Resource<SchedulingLink> = self
            .client
            .post(&["scheduling_links"])
            .json(body)
            .replay(Replay::Never)
            .send_json(ctx, "event type")
            .await?;
        Ok(link.resource.booking_url)
    }

    fn invitee_body(attendee: &Attendee, zone: Tz) -> Result<Value, ConnectorError> {
        let Some(email) = &attendee.email else {
            return Err(ConnectorError::InvalidInput(
                "an email address is needed to book; ask the caller for theirs".into(),
            ));
        };
        let mut invitee = json!({
            "name": attendee.name,
            "email": email,
            "timezone": attendee.zone.unwrap_or(zone).name(),
        });
        if let Some(phone) = &attendee.phone {
            invitee["text_reminder_number"] = json!(phone);
        }
        Ok(invitee)
    }

    fn booking_from(invitee: InviteeResource, slot: &Slot) -> Result<Booking, ConnectorError> {
        let status = match invitee.status.as_str() {
            "active" => BookingStatus::Confirmed,
            "canceled" => BookingStatus::Cancelled,
            other => {
                return Err(ConnectorError::UnexpectedResponse(format!(
                    "invitee status {other:?}"
                )));
            }
        };
        Ok(Booking {
            id: uuid_of(&invitee.event)?,
            slot: *slot,
            status,
            link: invitee.cancel_url,
        })
    }
}

#[async_trait::async_trait]
impl Calendar for Calendly {
    async fn availability(
        &self,
        ctx: &RequestContext,
        window: TimeWindow,
        duration: chrono::Duration,
        zone: Tz,
    ) -> Result<Vec<Slot>, ConnectorError> {
        // operationId: getEventTypeAvailableTimes. The event type fixes the length; `duration`
        // is what the caller asked for and what the slot is said to last.
        let end = window.end.min(window.start + MAX_RANGE);
        let times: Collection<AvailableTime> = self
            .client
            .get(&["event_type_available_times"])
            .query("event_type", &self.config.event_type)
            .query("start_time", &rfc3339(&window.start))
            .query("end_time", &rfc3339(&end))
            .send_json(ctx, "event type")
            .await?;
        let mut slots = Vec::new();
        for time in times.collection {
            if time.status != "available" {
                continue;
            }
            let start = parse_time(&time.start_time)?;
            slots.push(Slot {
                start,
                end: start + duration,
                zone,
            });
        }
        slots.sort_by_key(|slot| slot.start);
        slots.truncate(self.config.max_slots);
        Ok(slots)
    }

    async fn book(
        &self,
        ctx: &RequestContext,
        slot: &Slot,
        attendee: &Attendee,
        _idempotency_key: &str,
    ) -> Result<Booking, ConnectorError> {
        if !self.config.direct_booking {
            let link = self.scheduling_link(ctx).await?;
            return Ok(Booking {
                id: String::new(),
                slot: *slot,
                status: BookingStatus::AwaitingCaller,
                link: Some(link),
            });
        }
        let invitee = Self::invitee_body(attendee, slot.zone)?;
        let created = self.create_invitee(ctx, &slot.start, invitee).await?;
        Self::booking_from(created, slot)
    }

    async fn reschedule(
        &self,
        ctx: &RequestContext,
        booking_id: &str,
        new_slot: &Slot,
        _idempotency_key: &str,
    ) -> Result<Booking, ConnectorError> {
        if !self.config.direct_booking {
            return Err(ConnectorError::Rejected(
                "direct booking is not enabled for this Calendly account".into(),
            ));
        }
        // List Event Invitees: who to book again.
        let invitees: Collection<ExistingInvitee> = self
            .client
            .get(&["scheduled_events", booking_id, "invitees"])
            .send_json(ctx, "booking")
            .await?;
        let Some(current) = invitees
            .collection
            .into_iter()
            .find(|invitee| invitee.status == "active")
        else {
            return Err(ConnectorError::NotFound("booking".into()));
        };
        let (Some(email), Some(name)) = (current.email, current.name) else {
            return Err(ConnectorError::UnexpectedResponse(
                "invitee without name or email".into(),
            ));
        };
        let mut invitee = json!({
            "name": name,
            "email": email,
            "timezone": current.timezone.unwrap_or_else(|| new_slot.zone.name().to_owned()),
        });
        if let Some(phone) = current.text_reminder_number {
            invitee["text_reminder_number"] = json!(phone);
        }
        // Book first, cancel second: a failure leaves the caller with an appointment.
        let created = self.create_invitee(ctx, &new_slot.start, invitee).await?;
        let booking = Self::booking_from(created, new_slot)?;
        self.cancel(ctx, booking_id, Some("Rescheduled by phone"))
            .await?;
        Ok(booking)
    }

    async fn cancel(
        &self,
        ctx: &RequestContext,
        booking_id: &str,
        reason: Option<&str>,
    ) -> Result<(), ConnectorError> {
        // operationId: post-scheduled_events-uuid-cancellation. Cancelling twice is answered
        // 403 "Event is already canceled", so a replay is safe and that answer means done.
        let body = json!({ "reason": reason.unwrap_or("Cancelled by phone") });
        match self
            .client
            .post(&["scheduled_events", booking_id, "cancellation"])
            .json(body)
            .replay(Replay::Idempotent)
            .send_raw(ctx)
            .await
        {
            Ok(_) => Ok(()),
            Err(ConnectorError::Policy(PolicyError::Status {
                code: 403,
                body_snippet,
                ..
            })) if body_snippet.contains("already canceled") => Ok(()),
            Err(err) => Err(map_error(err, "booking")),
        }
    }

    async fn health_check(&self, ctx: &RequestContext) -> Result<(), ConnectorError> {
        // operationId: me
        self.client
            .get(&["users", "me"])
            .send_json::<Resource<Value>>(ctx, "account")
            .await
            .map(|_| ())
    }
}

/// The vendor descriptor, registered in [`super::registry`].
pub static VENDOR: Vendor = Vendor {
    id: CONNECTOR,
    name: "Calendly",
    spec: "calendly/openapi.yaml",
    default_base_url: Some(DEFAULT_BASE_URL),
    capabilities: &[Capability::Calendar],
    secret: SecretShape {
        bare_token: false,
        fields: &[
            SecretField {
                name: "token",
                aliases: &["access_token"],
                required: true,
                doc: "personal access token or OAuth access token",
            },
            SecretField {
                name: "event_type",
                aliases: &[],
                required: true,
                doc: "the event type's URI (`https://api.calendly.com/event_types/…`)",
            },
            SecretField {
                name: "direct_booking",
                aliases: &[],
                required: false,
                doc: "book with `POST /invitees` (paid plans; default true) or send a scheduling link",
            },
        ],
        note: "",
    },
    oauth: Some(OAuthSpec {
        authorize_url: "https://auth.calendly.com/oauth/authorize",
        token_url: "https://auth.calendly.com/oauth/token",
        revoke_url: Some("https://auth.calendly.com/oauth/revoke"),
        // Calendly grants the user's full access; it has no scopes to ask for.
        scopes: &[],
        pkce: true,
        extra_authorize_params: &[],
        api_base_fields: &[],
        client_secret_in_body: false,
        account_fields: &["owner"],
        accounts_server_param: None,
        ok_envelope: false,
        accounts_server_hosts: &[],
    }),
    // Calendly-Webhook-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">, keyed
    // by the subscription's signing_key; an invitee's URI plus the event names one event.
    webhooks: Some(super::kit::WebhookSpec {
        header: "Calendly-Webhook-Signature",
        scheme: super::kit::WebhookScheme::TimestampedHmacSha256Hex,
        tolerance_secs: 180,
        event_id: &[
            super::kit::WebhookField::Json("event"),
            super::kit::WebhookField::Json("payload.uri"),
        ],
        event_type: super::kit::WebhookField::Json("event"),
        batched: false,
        setup: "create a webhook subscription (POST /webhook_subscriptions) with this URL and \
                the secret as signing_key",
    }),
    profile,
    build,
};

/// The policy profile (no vendor-specific rules).
pub fn profile() -> ConnectorProfile {
    ConnectorProfile::new(CONNECTOR)
}

fn build(ctx: BuildContext<'_>) -> Result<Built, BuildFailure> {
    let credentials = &ctx.credentials;
    let mut config = CalendlyConfig::new(
        ctx.base_url()?,
        credentials.secret(&["token", "access_token"])?,
        credentials.required_text("event_type")?,
    );
    if let Some(direct) = credentials.flag("direct_booking") {
        config.direct_booking = direct;
    }
    Ok(Built {
        calendar: Some(std::sync::Arc::new(Calendly::new(ctx.policy, config))),
        ..Built::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids_come_from_the_last_segment() {
        assert_eq!(
            uuid_of("https://api.calendly.com/scheduled_events/GBGBDCAADAEDCRZ2").ok(),
            Some("GBGBDCAADAEDCRZ2".into())
        );
        assert_eq!(
            uuid_of("https://api.calendly.com/scheduled_events/ABC/").ok(),
            Some("ABC".into())
        );
        assert!(uuid_of("").is_err());
        assert!(uuid_of("https:").is_err());
    }
}
