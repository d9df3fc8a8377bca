//! Cal.com (cloud or self-hosted) as a [`Calendar`], over API v2.
//!
//! Built from `vendor-specs/calcom/openapi.json` ("Cal.com API v2"): slots
//! (`cal-api-version: 2024-09-04`) and bookings (`cal-api-version: 2024-08-13`), with the API key
//! as `Authorization: Bearer cal_…`. The spec documents no idempotency header, so creating or
//! rescheduling a booking is never replayed by the policy; the ledger keeps the tool call from
//! running twice, and the ledger's key is stored in the booking's `metadata` for audit.
//! `lengthInMinutes` goes into a booking only when the event type offers several lengths
//! (`lengthInMinutesOptions`, read once per connector with `GET /v2/event-types/{id}`): Cal.com
//! answers 400 to it for an event type with a single length, the common case.
//! This module must not cache bookings or slots.

use chrono_tz::Tz;
use reqwest::Url;
use reqwest::header::{HeaderName, HeaderValue};
use secrecy::SecretString;
use serde::Deserialize;
use serde_json::{Value, json};

use super::client::{Auth, VendorClient};
use super::kit::{BuildContext, BuildFailure, Built, Capability, SecretField, SecretShape, Vendor};
use super::{
    Attendee, Booking, BookingStatus, Calendar, ConnectorError, Slot, TimeWindow, parse_time,
    rfc3339,
};
use crate::connectors::http::{ConnectorProfile, HttpPolicy, Replay, RequestContext};

pub const CONNECTOR: &str = "calcom";
pub const DEFAULT_BASE_URL: &str = "https://api.cal.com/";
const API_VERSION_HEADER: HeaderName = HeaderName::from_static("cal-api-version");
/// Versions named by the spec's `cal-api-version` header parameter per controller.
const SLOTS_API_VERSION: &str = "2024-09-04";
const BOOKINGS_API_VERSION: &str = "2024-08-13";
const EVENT_TYPES_API_VERSION: &str = "2024-06-14";

/// Per-tenant settings.
pub struct CalcomConfig {
    /// `https://api.cal.com/` or a self-hosted instance; the spec's paths start with `/v2/`.
    pub base_url: Url,
    pub api_key: SecretString,
    /// The event type the agent books.
    pub event_type_id: u64,
    /// Most slots offered at once.
    pub max_slots: usize,
}

impl std::fmt::Debug for CalcomConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CalcomConfig")
            .field("base_url", &self.base_url.as_str())
            .field("event_type_id", &self.event_type_id)
            .finish_non_exhaustive()
    }
}

pub struct Calcom {
    client: VendorClient,
    config: CalcomConfig,
    /// The event type's selectable lengths (empty: a single length), once read.
    lengths: tokio::sync::OnceCell<Vec<i64>>,
}

impl Calcom {
    pub fn new(policy: HttpPolicy, config: CalcomConfig) -> Self {
        Self {
            client: VendorClient::new(
                policy,
                profile(),
                config.base_url.clone(),
                Auth::Bearer(config.api_key.clone()),
            ),
            config,
            lengths: tokio::sync::OnceCell::new(),
        }
    }

    /// The event type's `lengthInMinutesOptions` (operationId
    /// `EventTypesController_2024_06_14_getEventTypeById`); empty when it has one length.
    async fn length_options(&self, ctx: &RequestContext) -> Result<&[i64], ConnectorError> {
        let lengths = self
            .lengths
            .get_or_try_init(|| async {
                let id = self.config.event_type_id.to_string();
                let event_type = self
                    .client
                    .get(&["v2", "event-types", &id])
                    .header(API_VERSION_HEADER, version(EVENT_TYPES_API_VERSION))
                    .send_json::<Envelope<EventTypeOutput>>(ctx, "event type")
                    .await?
                    .into_data()?;
                Ok::<_, ConnectorError>(
                    event_type
                        .length_in_minutes_options
                        .unwrap_or_default()
                        .into_iter()
                        .map(|minutes| minutes.round() as i64)
                        .collect(),
                )
            })
            .await?;
        Ok(lengths)
    }
}

fn version(date: &'static str) -> HeaderValue {
    HeaderValue::from_static(date)
}

#[derive(Deserialize)]
struct Envelope<T> {
    status: String,
    data: T,
}

impl<T> Envelope<T> {
    fn into_data(self) -> Result<T, ConnectorError> {
        if self.status == "success" {
            Ok(self.data)
        } else {
            Err(ConnectorError::UnexpectedResponse(format!(
                "status {:?}",
                self.status
            )))
        }
    }
}

/// `EventTypeOutput_2024_06_14`, the field we use.
#[derive(Deserialize)]
struct EventTypeOutput {
    #[serde(default, rename = "lengthInMinutesOptions")]
    length_in_minutes_options: Option<Vec<f64>>,
}

#[derive(Deserialize)]
struct RangeSlot {
    start: String,
    #[serde(default)]
    end: Option<String>,
}

/// `BookingOutput_2024_08_13`, the fields we use.
#[derive(Deserialize)]
struct BookingOutput {
    uid: String,
    status: String,
    start: String,
    end: String,
    #[serde(default)]
    location: Option<String>,
}

impl BookingOutput {
    fn into_booking(self, zone: Tz) -> Result<Booking, ConnectorError> {
        let status = match self.status.as_str() {
            "accepted" => BookingStatus::Confirmed,
            "pending" => BookingStatus::Pending,
            "cancelled" | "rejected" => BookingStatus::Cancelled,
            other => {
                return Err(ConnectorError::UnexpectedResponse(format!(
                    "booking status {other:?}"
                )));
            }
        };
        Ok(Booking {
            id: self.uid,
            slot: Slot {
                start: parse_time(&self.start)?,
                end: parse_time(&self.end)?,
                zone,
            },
            status,
            link: self
                .location
                .filter(|location| location.starts_with("http")),
        })
    }
}

fn minutes(duration: chrono::Duration) -> Result<i64, ConnectorError> {
    let minutes = duration.num_minutes();
    if minutes <= 0 || duration != chrono::Duration::minutes(minutes) {
        return Err(ConnectorError::InvalidInput(
            "duration must be a positive whole number of minutes".into(),
        ));
    }
    Ok(minutes)
}

#[async_trait::async_trait]
impl Calendar for Calcom {
    async fn availability(
        &self,
        ctx: &RequestContext,
        window: TimeWindow,
        duration: chrono::Duration,
        zone: Tz,
    ) -> Result<Vec<Slot>, ConnectorError> {
        // operationId: SlotsController_2024_09_04_getAvailableSlots (GET /v2/slots)
        let by_date = self
            .client
            .get(&["v2", "slots"])
            .query("eventTypeId", &self.config.event_type_id.to_string())
            .query("start", &rfc3339(&window.start))
            .query("end", &rfc3339(&window.end))
            .query("timeZone", zone.name())
            .query("duration", &minutes(duration)?.to_string())
            .query("slotFormat", "range")
            .header(API_VERSION_HEADER, version(SLOTS_API_VERSION))
            .send_json::<Envelope<std::collections::BTreeMap<String, Vec<RangeSlot>>>>(
                ctx,
                "event type",
            )
            .await?
            .into_data()?;
        let mut slots = Vec::new();
        // BTreeMap: dates (YYYY-MM-DD) iterate in order.
        for day in by_date.into_values() {
            for range in day {
                let start = parse_time(&range.start)?;
                let end = match range.end {
                    Some(end) => parse_time(&end)?,
                    None => start + duration,
                };
                slots.push(Slot { start, end, zone });
            }
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
        idempotency_key: &str,
    ) -> Result<Booking, ConnectorError> {
        // operationId: BookingsController_2024_08_13_createBooking (POST /v2/bookings)
        let mut person = json!({
            "name": attendee.name,
            "timeZone": attendee.zone.unwrap_or(slot.zone).name(),
        });
        if let Some(email) = &attendee.email {
            person["email"] = json!(email);
        }
        if let Some(phone) = &attendee.phone {
            person["phoneNumber"] = json!(phone);
        }
        let length = minutes(slot.end - slot.start)?;
        let mut body = json!({
            "start": rfc3339(&slot.start),
            "eventTypeId": self.config.event_type_id,
            "attendee": person,
            "metadata": { "callbridgeKey": idempotency_key },
        });
        // Only an event type with several lengths takes one (a single-length type answers 400).
        if self.length_options(ctx).await?.len() > 1 {
            body["lengthInMinutes"] = json!(length);
        }
        self.client
            .post(&["v2", "bookings"])
            .header(API_VERSION_HEADER, version(BOOKINGS_API_VERSION))
            .json(body)
            .replay(Replay::Never)
            .send_json::<Envelope<BookingOutput>>(ctx, "booking")
            .await?
            .into_data()?
            .into_booking(slot.zone)
    }

    async fn reschedule(
        &self,
        ctx: &RequestContext,
        booking_id: &str,
        new_slot: &Slot,
        _idempotency_key: &str,
    ) -> Result<Booking, ConnectorError> {
        // operationId: BookingsController_2024_08_13_rescheduleBooking
        // (POST /v2/bookings/{bookingUid}/reschedule); creates a new booking uid, so never replayed.
        let body = json!({
            "start": rfc3339(&new_slot.start),
            "reschedulingReason": "Rescheduled by phone",
        });
        self.client
            .post(&["v2", "bookings", booking_id, "reschedule"])
            .header(API_VERSION_HEADER, version(BOOKINGS_API_VERSION))
            .json(body)
            .replay(Replay::Never)
            .send_json::<Envelope<BookingOutput>>(ctx, "booking")
            .await?
            .into_data()?
            .into_booking(new_slot.zone)
    }

    async fn cancel(
        &self,
        ctx: &RequestContext,
        booking_id: &str,
        reason: Option<&str>,
    ) -> Result<(), ConnectorError> {
        // operationId: BookingsController_2024_08_13_cancelBooking (POST /v2/bookings/{bookingUid}/cancel)
        let body = json!({ "cancellationReason": reason.unwrap_or("Cancelled by phone") });
        // Cancelling a cancelled booking changes nothing: safe to replay.
        let booking = self
            .client
            .post(&["v2", "bookings", booking_id, "cancel"])
            .header(API_VERSION_HEADER, version(BOOKINGS_API_VERSION))
            .json(body)
            .replay(Replay::Idempotent)
            .send_json::<Envelope<BookingOutput>>(ctx, "booking")
            .await?
            .into_data()?;
        if booking.status != "cancelled" {
            return Err(ConnectorError::UnexpectedResponse(format!(
                "booking still {:?} after cancelling",
                booking.status
            )));
        }
        Ok(())
    }

    async fn health_check(&self, ctx: &RequestContext) -> Result<(), ConnectorError> {
        // operationId: MeController_getMe (GET /v2/me)
        self.client
            .get(&["v2", "me"])
            .send_json::<Envelope<Value>>(ctx, "account")
            .await?
            .into_data()
            .map(|_| ())
    }
}

/// The vendor descriptor, registered in [`super::registry`].
pub static VENDOR: Vendor = Vendor {
    id: CONNECTOR,
    name: "Cal.com",
    spec: "calcom/openapi.json",
    default_base_url: Some(DEFAULT_BASE_URL),
    capabilities: &[Capability::Calendar],
    secret: SecretShape {
        bare_token: false,
        fields: &[
            SecretField {
                name: "api_key",
                aliases: &["token"],
                required: true,
                doc: "API key (`cal_…`)",
            },
            SecretField {
                name: "event_type_id",
                aliases: &[],
                required: true,
                doc: "the event type the agent books",
            },
            SecretField {
                name: "max_slots",
                aliases: &[],
                required: false,
                doc: "most slots offered at once (default 8)",
            },
        ],
        note: "",
    },
    oauth: None,
    // X-Cal-Signature-256: hex HMAC-SHA256 of the body, keyed by the webhook's secret; the
    // trigger and the booking uid name one event.
    webhooks: Some(super::kit::WebhookSpec {
        header: "X-Cal-Signature-256",
        scheme: super::kit::WebhookScheme::HmacSha256Hex,
        tolerance_secs: 0,
        event_id: &[
            super::kit::WebhookField::Json("triggerEvent"),
            super::kit::WebhookField::Json("payload.uid"),
        ],
        event_type: super::kit::WebhookField::Json("triggerEvent"),
        batched: false,
        setup: "Settings > Developer > Webhooks: this URL as subscriber URL, the secret as secret",
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
    let event_type_id = credentials
        .unsigned("event_type_id")
        .ok_or_else(|| BuildFailure::Missing("event_type_id".into()))?;
    let config = CalcomConfig {
        base_url: ctx.base_url()?,
        api_key: credentials.secret(&["api_key", "token"])?,
        event_type_id,
        max_slots: credentials
            .unsigned("max_slots")
            .and_then(|n| usize::try_from(n).ok())
            .unwrap_or(8),
    };
    Ok(Built {
        calendar: Some(std::sync::Arc::new(Calcom::new(ctx.policy, config))),
        ..Built::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_must_be_whole_minutes() {
        assert_eq!(minutes(chrono::Duration::minutes(45)).ok(), Some(45));
        assert!(minutes(chrono::Duration::seconds(90)).is_err());
        assert!(minutes(chrono::Duration::zero()).is_err());
    }
}
