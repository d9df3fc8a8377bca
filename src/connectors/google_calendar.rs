//! Google Calendar as a [`Calendar`]: free/busy → slots inside business hours, and events
//! insert/patch/delete.
//!
//! Built from the discovery document `vendor-specs/google-calendar/calendar.v3.json`
//! (rootUrl `https://www.googleapis.com/`, servicePath `calendar/v3/`). Auth is an OAuth 2.0
//! bearer token from the tenant's refresh token or service-account key ([`OAuthTokenSource`], a
//! [`TokenSource`]); the shared [`VendorClient`] refreshes once after a 401 and tries once more.
//! Bookings are idempotent through a client-chosen event id derived from the
//! ledger's key (Google refuses a second insert with the same id with 409), so inserts may be
//! retried. This module must not hold any state about calls; the ledger does that.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use reqwest::Url;
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};

use super::client::{Auth, TokenSource, VendorClient, map_error};
use super::kit::{
    BuildContext, BuildFailure, Built, Capability, Credentials, SecretField,
    SecretShape, Vendor,
};
use super::oauth::{
    GOOGLE_CALENDAR_SCOPE, OAuthTokenSource, google_oauth, google_token_source,
};
use super::slots::{BusinessHours, free_slots};
use super::{
    Attendee, Booking, BookingStatus, Calendar, ConnectorError, Slot, TimeWindow, parse_time,
    rfc3339,
};
use crate::connectors::http::{ConnectorProfile, HttpPolicy, PolicyError, Replay, RequestContext};

pub const CONNECTOR: &str = "google_calendar";
pub const DEFAULT_BASE_URL: &str = "https://www.googleapis.com/calendar/v3/";

/// Per-tenant settings.
#[derive(Debug, Clone)]
pub struct GoogleCalendarConfig {
    /// `https://www.googleapis.com/calendar/v3/` unless overridden (tests).
    pub base_url: Url,
    /// `primary` or a calendar's id.
    pub calendar_id: String,
    pub business_hours: BusinessHours,
    /// Grid on which slots start.
    pub slot_step: chrono::Duration,
    /// Most slots offered at once: the model reads a few, not a page.
    pub max_slots: usize,
    /// Title of booked events.
    pub event_summary: String,
}

impl GoogleCalendarConfig {
    pub fn new(base_url: Url, calendar_id: impl Into<String>) -> Self {
        Self {
            base_url,
            calendar_id: calendar_id.into(),
            business_hours: BusinessHours::weekdays_nine_to_five(),
            slot_step: chrono::Duration::minutes(30),
            max_slots: 8,
            event_summary: "Appointment".into(),
        }
    }
}

pub struct GoogleCalendar {
    client: VendorClient,
    config: GoogleCalendarConfig,
}

impl GoogleCalendar {
    /// A calendar whose requests carry tokens from `tokens` (any [`TokenSource`]).
    pub fn new(
        policy: HttpPolicy,
        config: GoogleCalendarConfig,
        tokens: Arc<dyn TokenSource>,
    ) -> Self {
        Self {
            client: VendorClient::new(
                policy,
                profile(),
                config.base_url.clone(),
                Auth::OAuth(tokens),
            ),
            config,
        }
    }

    fn calendar_path<'a>(&'a self, tail: &[&'a str]) -> Vec<&'a str> {
        let mut segments = vec!["calendars", self.config.calendar_id.as_str()];
        segments.extend_from_slice(tail);
        segments
    }

    fn booking_from_event(&self, event: Event, zone: Tz) -> Result<Booking, ConnectorError> {
        let start = event.start.instant()?;
        let end = event.end.instant()?;
        let status = match event.status.as_deref() {
            Some("cancelled") => BookingStatus::Cancelled,
            Some("tentative") => BookingStatus::Pending,
            _ => BookingStatus::Confirmed,
        };
        Ok(Booking {
            id: event.id,
            slot: Slot { start, end, zone },
            status,
            link: event.html_link,
        })
    }
}

/// A Google event id for an idempotency key: base32hex (`0-9a-v`), 26 characters, as the
/// `Event.id` rules in the discovery document require.
pub fn event_id_for_key(idempotency_key: &str) -> String {
    const ALPHABET: &[u8; 32] = b"0123456789abcdefghijklmnopqrstuv";
    let digest = Sha256::digest(idempotency_key.as_bytes());
    let mut bits: u32 = 0;
    let mut bit_count = 0;
    let mut out = String::with_capacity(26);
    for byte in digest.iter().take(16) {
        bits = (bits << 8) | u32::from(*byte);
        bit_count += 8;
        while bit_count >= 5 {
            bit_count -= 5;
            out.push(char::from(ALPHABET[((bits >> bit_count) & 31) as usize]));
        }
    }
    if bit_count > 0 {
        out.push(char::from(
            ALPHABET[((bits << (5 - bit_count)) & 31) as usize],
        ));
    }
    out
}

#[derive(Deserialize)]
struct FreeBusyResponse {
    #[serde(default)]
    calendars: std::collections::HashMap<String, FreeBusyCalendar>,
}

#[derive(Deserialize)]
struct FreeBusyCalendar {
    #[serde(default)]
    busy: Vec<TimePeriod>,
    #[serde(default)]
    errors: Vec<FreeBusyError>,
}

#[derive(Deserialize)]
struct TimePeriod {
    start: String,
    end: String,
}

#[derive(Deserialize)]
struct FreeBusyError {
    #[serde(default)]
    reason: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Event {
    id: String,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    html_link: Option<String>,
    start: EventDateTime,
    end: EventDateTime,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct EventDateTime {
    #[serde(default)]
    date_time: Option<String>,
}

impl EventDateTime {
    fn instant(&self) -> Result<DateTime<Utc>, ConnectorError> {
        let text = self.date_time.as_deref().ok_or_else(|| {
            ConnectorError::UnexpectedResponse(
                "all-day event where a timed one was expected".into(),
            )
        })?;
        parse_time(text)
    }
}

fn event_time(at: &DateTime<Utc>, zone: Tz) -> serde_json::Value {
    json!({ "dateTime": rfc3339(at), "timeZone": zone.name() })
}

#[async_trait::async_trait]
impl Calendar for GoogleCalendar {
    async fn availability(
        &self,
        ctx: &RequestContext,
        window: TimeWindow,
        duration: chrono::Duration,
        zone: Tz,
    ) -> Result<Vec<Slot>, ConnectorError> {
        // operationId: calendar.freebusy.query (POST freeBusy)
        let body = json!({
            "timeMin": rfc3339(&window.start),
            "timeMax": rfc3339(&window.end),
            "timeZone": zone.name(),
            "items": [{ "id": self.config.calendar_id }],
        });
        // A query sent as POST: it changes nothing, so it may be replayed.
        let free_busy: FreeBusyResponse = self
            .client
            .post(&["freeBusy"])
            .json(body)
            .replay(Replay::Idempotent)
            .send_json(ctx, "calendar")
            .await?;
        let calendar = free_busy
            .calendars
            .get(&self.config.calendar_id)
            .ok_or_else(|| {
                ConnectorError::UnexpectedResponse("free/busy answer lacks the calendar".into())
            })?;
        if let Some(error) = calendar.errors.first() {
            return Err(match error.reason.as_str() {
                "notFound" => ConnectorError::NotFound("calendar".into()),
                reason => ConnectorError::UnexpectedResponse(format!("free/busy error: {reason}")),
            });
        }
        let busy = calendar
            .busy
            .iter()
            .map(|period| {
                Ok(TimeWindow {
                    start: parse_time(&period.start)?,
                    end: parse_time(&period.end)?,
                })
            })
            .collect::<Result<Vec<_>, ConnectorError>>()?;
        Ok(free_slots(
            window,
            &busy,
            duration,
            self.config.slot_step,
            &self.config.business_hours,
            zone,
            self.config.max_slots,
        ))
    }

    async fn book(
        &self,
        ctx: &RequestContext,
        slot: &Slot,
        attendee: &Attendee,
        idempotency_key: &str,
    ) -> Result<Booking, ConnectorError> {
        let event_id = event_id_for_key(idempotency_key);
        // operationId: calendar.events.insert (POST calendars/{calendarId}/events)
        let description = attendee.booking_note();
        let mut body = json!({
            "id": event_id,
            "summary": format!("{}: {}", self.config.event_summary, attendee.name),
            "description": description,
            "start": event_time(&slot.start, slot.zone),
            "end": event_time(&slot.end, slot.zone),
        });
        if let Some(email) = &attendee.email {
            body["attendees"] = json!([{ "email": email, "displayName": attendee.name }]);
        }
        // The client-chosen id makes the insert idempotent on Google's side.
        match self
            .client
            .post(&self.calendar_path(&["events"]))
            .query("sendUpdates", "all")
            .json(body)
            .replay(Replay::Idempotent)
            .send_raw(ctx)
            .await
        {
            Ok(response) => self.booking_from_event(response.json()?, slot.zone),
            Err(ConnectorError::Policy(PolicyError::Status { code: 409, .. })) => {
                // An earlier attempt (a retry, or a replayed tool call) already created it.
                // operationId: calendar.events.get
                let event = self
                    .client
                    .get(&self.calendar_path(&["events", &event_id]))
                    .send_json(ctx, "event")
                    .await?;
                let booking = self.booking_from_event(event, slot.zone)?;
                if booking.slot.start != slot.start || booking.status == BookingStatus::Cancelled {
                    return Err(ConnectorError::Conflict(
                        "an event with this booking's id already exists".into(),
                    ));
                }
                Ok(booking)
            }
            Err(err) => Err(map_error(err, "event")),
        }
    }

    async fn reschedule(
        &self,
        ctx: &RequestContext,
        booking_id: &str,
        new_slot: &Slot,
        _idempotency_key: &str,
    ) -> Result<Booking, ConnectorError> {
        // operationId: calendar.events.patch (PATCH calendars/{calendarId}/events/{eventId})
        let body = json!({
            "start": event_time(&new_slot.start, new_slot.zone),
            "end": event_time(&new_slot.end, new_slot.zone),
        });
        // Setting the same start and end twice leaves the same event: safe to replay.
        let event = self
            .client
            .patch(&self.calendar_path(&["events", booking_id]))
            .query("sendUpdates", "all")
            .json(body)
            .replay(Replay::Idempotent)
            .send_json(ctx, "booking")
            .await?;
        self.booking_from_event(event, new_slot.zone)
    }

    async fn cancel(
        &self,
        ctx: &RequestContext,
        booking_id: &str,
        _reason: Option<&str>,
    ) -> Result<(), ConnectorError> {
        // operationId: calendar.events.delete (DELETE calendars/{calendarId}/events/{eventId})
        match self
            .client
            .delete(&self.calendar_path(&["events", booking_id]))
            .query("sendUpdates", "all")
            .replay(Replay::Idempotent)
            .send_raw(ctx)
            .await
        {
            Ok(_) => Ok(()),
            // 410 Gone: already deleted, by us on an earlier attempt or by someone else.
            Err(ConnectorError::Policy(PolicyError::Status { code: 410, .. })) => Ok(()),
            Err(err) => Err(map_error(err, "booking")),
        }
    }

    async fn health_check(&self, ctx: &RequestContext) -> Result<(), ConnectorError> {
        // operationId: calendar.calendars.get (GET calendars/{calendarId})
        self.client
            .get(&self.calendar_path(&[]))
            .send(ctx, "calendar")
            .await
            .map(|_| ())
    }
}

/// The vendor descriptor, registered in [`super::registry`].
pub static VENDOR: Vendor = Vendor {
    id: CONNECTOR,
    name: "Google Calendar",
    spec: "google-calendar/",
    default_base_url: Some(DEFAULT_BASE_URL),
    capabilities: &[Capability::Calendar],
    secret: SecretShape {
        bare_token: false,
        fields: &[
            SecretField {
                name: "client_id",
                aliases: &[],
                required: false,
                doc: "OAuth client id (with `client_secret` and `refresh_token`)",
            },
            SecretField {
                name: "client_secret",
                aliases: &[],
                required: false,
                doc: "OAuth client secret",
            },
            SecretField {
                name: "refresh_token",
                aliases: &[],
                required: false,
                doc: "OAuth refresh token",
            },
            SecretField {
                name: "calendar_id",
                aliases: &[],
                required: false,
                doc: "calendar to use (default `primary`)",
            },
            SecretField {
                name: "token_uri",
                aliases: &["token_url"],
                required: false,
                doc: "token endpoint (default Google's; checked by the egress guard)",
            },
        ],
        note: "or a service-account key file as downloaded (`\"type\": \"service_account\"`, `client_email`, `private_key`, `token_uri`), plus `calendar_id` and `subject` (user to impersonate)",
    },
    oauth: Some(google_oauth(&[(Capability::Calendar, &[GOOGLE_CALENDAR_SCOPE])])),
    webhooks: None,
    profile,
    build,
};

/// The policy profile (no vendor-specific rules).
pub fn profile() -> ConnectorProfile {
    ConnectorProfile::new(CONNECTOR)
}

fn build(ctx: BuildContext<'_>) -> Result<Built, BuildFailure> {
    let tokens: Arc<dyn TokenSource> = match &ctx.oauth {
        // A connected Google account: the gateway's tokens.
        Some(grant) => grant.tokens.clone(),
        None => Arc::new(token_source(&ctx.credentials, &ctx.policy)?),
    };
    let calendar_id = ctx.credentials.text("calendar_id").unwrap_or("primary");
    let config = GoogleCalendarConfig::new(ctx.base_url()?, calendar_id);
    Ok(Built {
        calendar: Some(Arc::new(GoogleCalendar::new(ctx.policy, config, tokens))),
        ..Built::default()
    })
}

/// The Google token source of a calendar secret (service-account key or refresh token), asking a
/// service account for the calendar scope.
fn token_source(
    credentials: &Credentials,
    policy: &HttpPolicy,
) -> Result<OAuthTokenSource, BuildFailure> {
    google_token_source(credentials, policy, CONNECTOR, GOOGLE_CALENDAR_SCOPE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_ids_follow_googles_rules_and_are_stable() {
        let id = event_id_for_key("0123456789abcdef0123456789abcdef");
        assert_eq!(id.len(), 26);
        assert!(
            id.chars()
                .all(|c| c.is_ascii_digit() || ('a'..='v').contains(&c)),
            "{id}"
        );
        assert_eq!(id, event_id_for_key("0123456789abcdef0123456789abcdef"));
        assert_ne!(id, event_id_for_key("another key"));
    }
}
