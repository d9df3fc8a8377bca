//! Microsoft Outlook / Microsoft 365 calendars through Microsoft Graph as a [`Calendar`]: the
//! business mailbox's free/busy (`getSchedule`) → slots inside business hours, and events
//! create/patch/delete.
//!
//! Built from the held Graph v1.0 calendar spec (`vendor-specs/msgraph/…derived.prism.json`,
//! server `https://graph.microsoft.com/v1.0`). Every request names the mailbox
//! (`/users/{id}`, a user principal name or object id) and works on its default calendar, the
//! only one the held spec reaches. Auth is the tenant's OAuth connection (Microsoft identity
//! platform v2.0) or a bearer access token in the secret. Bookings carry a `transactionId`
//! derived from the ledger's key, so Graph folds a retried create into the first one. Event
//! times are written as wall-clock times in the business's zone with its IANA name. This module
//! must not hold any state about calls; the ledger does that.

use std::sync::Arc;

use chrono::{DateTime, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;
use reqwest::Url;
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};

use super::client::{Auth, VendorClient};
use super::kit::{
    BuildContext, BuildFailure, Built, Capability, OAuthSpec, SecretField, SecretShape, Vendor,
};
use super::slots::{BusinessHours, free_slots};
use super::{Attendee, Booking, BookingStatus, Calendar, ConnectorError, Slot, TimeWindow};
use crate::connectors::http::{ConnectorProfile, HttpPolicy, Replay, RequestContext};

pub const CONNECTOR: &str = "microsoft_calendar";
pub const DEFAULT_BASE_URL: &str = "https://graph.microsoft.com/v1.0/";

/// Per-tenant settings.
#[derive(Debug, Clone)]
pub struct MicrosoftCalendarConfig {
    /// `https://graph.microsoft.com/v1.0/` unless overridden (tests).
    pub base_url: Url,
    /// The business mailbox: user principal name (`bookings@contoso.com`) or object id.
    pub mailbox: String,
    pub business_hours: BusinessHours,
    /// Grid on which slots start.
    pub slot_step: chrono::Duration,
    /// Most slots offered at once: the model reads a few, not a page.
    pub max_slots: usize,
    /// Subject of booked events.
    pub event_subject: String,
}

impl MicrosoftCalendarConfig {
    pub fn new(base_url: Url, mailbox: impl Into<String>) -> Self {
        Self {
            base_url,
            mailbox: mailbox.into(),
            business_hours: BusinessHours::weekdays_nine_to_five(),
            slot_step: chrono::Duration::minutes(30),
            max_slots: 8,
            event_subject: "Appointment".into(),
        }
    }
}

pub struct MicrosoftCalendar {
    client: VendorClient,
    config: MicrosoftCalendarConfig,
}

impl MicrosoftCalendar {
    /// A calendar whose requests carry `auth` (a bearer token or the tenant's OAuth tokens).
    pub fn new(policy: HttpPolicy, config: MicrosoftCalendarConfig, auth: Auth) -> Self {
        Self {
            client: VendorClient::new(policy, profile(), config.base_url.clone(), auth),
            config,
        }
    }

    fn mailbox_path<'a>(&'a self, tail: &[&'a str]) -> Vec<&'a str> {
        let mut segments = vec!["users", self.config.mailbox.as_str()];
        segments.extend_from_slice(tail);
        segments
    }

    fn booking_from_event(event: Event, zone: Tz) -> Result<Booking, ConnectorError> {
        let start = event.start.instant()?;
        let end = event.end.instant()?;
        let status = if event.is_cancelled == Some(true) {
            BookingStatus::Cancelled
        } else if event.show_as.as_deref() == Some("tentative") {
            BookingStatus::Pending
        } else {
            BookingStatus::Confirmed
        };
        Ok(Booking {
            id: event.id,
            slot: Slot { start, end, zone },
            status,
            link: event.web_link,
        })
    }
}

/// The `transactionId` of a booking: stable per idempotency key, so Graph recognises a retried
/// create; the key itself is not sent.
pub fn transaction_id_for_key(idempotency_key: &str) -> String {
    let digest = Sha256::digest(idempotency_key.as_bytes());
    let hex: String = digest
        .iter()
        .take(16)
        .map(|byte| format!("{byte:02x}"))
        .collect();
    format!("callbridge-{hex}")
}

#[derive(Deserialize)]
struct ScheduleResponse {
    #[serde(default)]
    value: Vec<ScheduleInformation>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ScheduleInformation {
    #[serde(default)]
    schedule_id: Option<String>,
    #[serde(default)]
    schedule_items: Vec<ScheduleItem>,
    #[serde(default)]
    error: Option<FreeBusyError>,
}

#[derive(Deserialize)]
struct ScheduleItem {
    #[serde(default)]
    status: Option<String>,
    start: DateTimeTimeZone,
    end: DateTimeTimeZone,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct FreeBusyError {
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    response_code: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Event {
    id: String,
    #[serde(default)]
    is_cancelled: Option<bool>,
    #[serde(default)]
    show_as: Option<String>,
    #[serde(default)]
    web_link: Option<String>,
    start: DateTimeTimeZone,
    end: DateTimeTimeZone,
}

/// Graph's `dateTimeTimeZone`: a wall-clock time and the zone it is in.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DateTimeTimeZone {
    date_time: String,
    #[serde(default)]
    time_zone: Option<String>,
}

impl DateTimeTimeZone {
    fn instant(&self) -> Result<DateTime<Utc>, ConnectorError> {
        let bad = || ConnectorError::UnexpectedResponse(format!("bad time {:?}", self.date_time));
        // Graph writes up to seven fractional digits and no offset.
        let naive = NaiveDateTime::parse_from_str(&self.date_time, "%Y-%m-%dT%H:%M:%S%.f")
            .map_err(|_| bad())?;
        match self.time_zone.as_deref() {
            None | Some("UTC") | Some("Etc/UTC") | Some("tzone://Microsoft/Utc") => {
                Ok(Utc.from_utc_datetime(&naive))
            }
            Some(name) => {
                let zone: Tz = name.parse().map_err(|_| {
                    ConnectorError::UnexpectedResponse(format!("unknown time zone {name:?}"))
                })?;
                zone.from_local_datetime(&naive)
                    .earliest()
                    .map(|at| at.with_timezone(&Utc))
                    .ok_or_else(bad)
            }
        }
    }
}

/// A Graph `dateTimeTimeZone` for `at`, as wall-clock time in `zone`.
fn local_time(at: &DateTime<Utc>, zone: Tz) -> serde_json::Value {
    json!({
        "dateTime": at.with_timezone(&zone).naive_local().format("%Y-%m-%dT%H:%M:%S").to_string(),
        "timeZone": zone.name(),
    })
}

#[async_trait::async_trait]
impl Calendar for MicrosoftCalendar {
    async fn availability(
        &self,
        ctx: &RequestContext,
        window: TimeWindow,
        duration: chrono::Duration,
        zone: Tz,
    ) -> Result<Vec<Slot>, ConnectorError> {
        // POST /users/{id}/calendar/getSchedule (parameter names as the spec spells them).
        let body = json!({
            "Schedules": [self.config.mailbox],
            "StartTime": local_time(&window.start, zone),
            "EndTime": local_time(&window.end, zone),
            "AvailabilityViewInterval": 15,
        });
        // A query sent as POST: it changes nothing, so it may be replayed.
        let schedule: ScheduleResponse = self
            .client
            .post(&self.mailbox_path(&["calendar", "getSchedule"]))
            .json(body)
            .replay(Replay::Idempotent)
            .send_json(ctx, "mailbox")
            .await?;
        let mailbox = &self.config.mailbox;
        let info = schedule
            .value
            .iter()
            .find(|info| {
                info.schedule_id
                    .as_deref()
                    .is_none_or(|id| id.eq_ignore_ascii_case(mailbox))
            })
            .ok_or_else(|| {
                ConnectorError::UnexpectedResponse("free/busy answer lacks the mailbox".into())
            })?;
        if let Some(error) = &info.error {
            return Err(match error.response_code.as_deref() {
                Some("ErrorMailboxNotFound" | "ErrorInvalidSmtpAddress" | "ErrorItemNotFound") => {
                    ConnectorError::NotFound("mailbox".into())
                }
                Some("ErrorAccessDenied" | "ErrorFreeBusyAccessDenied") => {
                    ConnectorError::Auth("mailbox: free/busy access denied".into())
                }
                code => ConnectorError::UnexpectedResponse(format!(
                    "free/busy error: {}",
                    code.or(error.message.as_deref()).unwrap_or("unknown")
                )),
            });
        }
        let busy = info
            .schedule_items
            .iter()
            // `free` and `workingElsewhere` leave the business's own time open.
            .filter(|item| {
                !matches!(
                    item.status.as_deref(),
                    Some("free" | "workingElsewhere" | "unknown")
                )
            })
            .map(|item| {
                Ok(TimeWindow {
                    start: item.start.instant()?,
                    end: item.end.instant()?,
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
        // POST /users/{id}/events
        let content = attendee.booking_note();
        let mut body = json!({
            "subject": format!("{}: {}", self.config.event_subject, attendee.name),
            "body": { "contentType": "text", "content": content },
            "start": local_time(&slot.start, slot.zone),
            "end": local_time(&slot.end, slot.zone),
            "transactionId": transaction_id_for_key(idempotency_key),
        });
        if let Some(email) = &attendee.email {
            body["attendees"] = json!([{
                "emailAddress": { "address": email, "name": attendee.name },
                "type": "required",
            }]);
        }
        // The transactionId makes a retried create return the first event.
        let event = self
            .client
            .post(&self.mailbox_path(&["events"]))
            .json(body)
            .replay(Replay::Idempotent)
            .send_json(ctx, "event")
            .await?;
        Self::booking_from_event(event, slot.zone)
    }

    async fn reschedule(
        &self,
        ctx: &RequestContext,
        booking_id: &str,
        new_slot: &Slot,
        _idempotency_key: &str,
    ) -> Result<Booking, ConnectorError> {
        // PATCH /users/{id}/events/{id_1}
        let body = json!({
            "start": local_time(&new_slot.start, new_slot.zone),
            "end": local_time(&new_slot.end, new_slot.zone),
        });
        // Setting the same start and end twice leaves the same event: safe to replay.
        let event = self
            .client
            .patch(&self.mailbox_path(&["events", booking_id]))
            .json(body)
            .replay(Replay::Idempotent)
            .send_json(ctx, "booking")
            .await?;
        Self::booking_from_event(event, new_slot.zone)
    }

    async fn cancel(
        &self,
        ctx: &RequestContext,
        booking_id: &str,
        _reason: Option<&str>,
    ) -> Result<(), ConnectorError> {
        // DELETE /users/{id}/events/{id_1} (the held spec has no `cancel` action).
        self.client
            .delete(&self.mailbox_path(&["events", booking_id]))
            .replay(Replay::Idempotent)
            .send(ctx, "booking")
            .await
            .map(|_| ())
    }

    async fn health_check(&self, ctx: &RequestContext) -> Result<(), ConnectorError> {
        // GET /users/{id}/events?$top=1: a harmless read of the mailbox's calendar (the held
        // spec has no GET of the calendar itself).
        self.client
            .get(&self.mailbox_path(&["events"]))
            .query("$top", "1")
            .send(ctx, "mailbox")
            .await
            .map(|_| ())
    }
}

/// The vendor descriptor, registered in [`super::registry`].
pub static VENDOR: Vendor = Vendor {
    id: CONNECTOR,
    name: "Microsoft Outlook / Microsoft 365 calendar",
    spec: "microsoft_calendar/",
    default_base_url: Some(DEFAULT_BASE_URL),
    capabilities: &[Capability::Calendar],
    secret: SecretShape {
        bare_token: false,
        fields: &[
            SecretField {
                name: "mailbox",
                aliases: &[],
                required: true,
                doc: "the business mailbox: user principal name or object id",
            },
            SecretField {
                name: "access_token",
                aliases: &["token"],
                required: false,
                doc: "Graph access token (sent as Bearer); not needed with an OAuth connection",
            },
            SecretField {
                name: "slot_minutes",
                aliases: &[],
                required: false,
                doc: "grid on which offered slots start, default 30",
            },
        ],
        note: "uses the mailbox's default calendar",
    },
    oauth: Some(OAuthSpec {
        // `{directory}`: the OAuth app's directory (`CALLBRIDGE_OAUTH_MICROSOFT_CALENDAR_DIRECTORY`
        // or the admin API), `common` by default: work, school and personal accounts alike.
        authorize_url: "https://login.microsoftonline.com/{directory}/oauth2/v2.0/authorize",
        token_url: "https://login.microsoftonline.com/{directory}/oauth2/v2.0/token",
        // The identity platform has no token revocation endpoint.
        revoke_url: None,
        scopes: &[(
            Capability::Calendar,
            &["Calendars.ReadWrite", "offline_access"],
        )],
        pkce: true,
        extra_authorize_params: &[],
        api_base_fields: &[],
        client_secret_in_body: true,
        account_fields: &[],
        accounts_server_param: None,
        ok_envelope: false,
        accounts_server_hosts: &[],
    }),
    webhooks: None,
    profile,
    build,
};

/// The policy profile (no vendor-specific rules: 429/503 with `Retry-After` are the shared
/// policy's).
pub fn profile() -> ConnectorProfile {
    ConnectorProfile::new(CONNECTOR)
}

fn build(ctx: BuildContext<'_>) -> Result<Built, BuildFailure> {
    let auth = match &ctx.oauth {
        // A connected Microsoft account: the gateway's tokens (refreshed once on a 401).
        Some(grant) => Auth::OAuth(grant.tokens.clone()),
        None => Auth::Bearer(ctx.credentials.secret(&["access_token", "token"])?),
    };
    let mut config =
        MicrosoftCalendarConfig::new(ctx.base_url()?, ctx.credentials.required_text("mailbox")?);
    let minutes = ctx.credentials.unsigned("slot_minutes");
    if minutes.is_some() || ctx.credentials.text("slot_minutes").is_some() {
        config.slot_step = slot_step(minutes)?;
    }
    Ok(Built {
        calendar: Some(Arc::new(MicrosoftCalendar::new(ctx.policy, config, auth))),
        ..Built::default()
    })
}

/// `slot_minutes` as a step: 5 to 240 minutes.
fn slot_step(minutes: Option<u64>) -> Result<chrono::Duration, BuildFailure> {
    match minutes {
        Some(minutes @ 5..=240) => Ok(chrono::Duration::minutes(minutes as i64)),
        _ => Err(BuildFailure::InvalidCredentials(
            "slot_minutes must be a whole number from 5 to 240".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transaction_ids_are_stable_per_key_and_hide_it() {
        let id = transaction_id_for_key("key-1");
        assert_eq!(id, transaction_id_for_key("key-1"));
        assert_ne!(id, transaction_id_for_key("key-2"));
        assert!(!id.contains("key-1"));
        assert_eq!(id.len(), "callbridge-".len() + 32);
    }

    #[test]
    fn graph_times_are_read_in_their_zone() {
        let utc = DateTimeTimeZone {
            date_time: "2025-03-03T08:30:00.0000000".into(),
            time_zone: Some("UTC".into()),
        };
        assert_eq!(
            utc.instant().expect("parses").to_rfc3339(),
            "2025-03-03T08:30:00+00:00"
        );
        let berlin = DateTimeTimeZone {
            date_time: "2025-03-03T09:30:00".into(),
            time_zone: Some("Europe/Berlin".into()),
        };
        assert_eq!(
            berlin.instant().expect("parses").to_rfc3339(),
            "2025-03-03T08:30:00+00:00"
        );
        let unknown = DateTimeTimeZone {
            date_time: "2025-03-03T09:30:00".into(),
            time_zone: Some("Mars Standard Time".into()),
        };
        assert!(unknown.instant().is_err());
    }

    #[test]
    fn event_times_are_wall_clock_in_the_business_zone() {
        let at = Utc.with_ymd_and_hms(2025, 3, 3, 10, 0, 0).single().expect("valid");
        assert_eq!(
            local_time(&at, chrono_tz::Europe::Berlin),
            json!({"dateTime": "2025-03-03T11:00:00", "timeZone": "Europe/Berlin"})
        );
    }

    fn build_from(secret: &str) -> Result<Built, BuildFailure> {
        let credentials = super::super::kit::Credentials::parse(&secrecy::SecretString::from(
            secret.to_owned(),
        ))?;
        credentials.validate(&VENDOR.secret)?;
        let policy = HttpPolicy::new(crate::connectors::http::PolicyConfig::default())
            .map_err(|err| BuildFailure::InvalidCredentials(err.to_string()))?;
        (VENDOR.build)(BuildContext {
            vendor: &VENDOR,
            base_url: None,
            credentials,
            policy,
            oauth: None,
        })
    }

    #[test]
    fn a_secret_builds_a_calendar_or_says_what_is_missing() {
        let built = build_from(r#"{"mailbox": "bookings@contoso.example", "access_token": "t", "slot_minutes": 15}"#);
        assert!(matches!(built, Ok(Built { calendar: Some(_), .. })));
        let no_mailbox = build_from(r#"{"access_token": "t"}"#);
        assert!(matches!(no_mailbox, Err(BuildFailure::Missing(ref f)) if f == "mailbox"));
        let no_token = build_from(r#"{"mailbox": "bookings@contoso.example"}"#);
        assert!(matches!(no_token, Err(BuildFailure::Missing(ref f)) if f == "access_token"));
        let bad_grid = build_from(
            r#"{"mailbox": "bookings@contoso.example", "access_token": "t", "slot_minutes": "soon"}"#,
        );
        assert!(matches!(bad_grid, Err(BuildFailure::InvalidCredentials(_))));
        // A bare token lacks the mailbox: refused with a pointer to the documented shape.
        assert!(matches!(
            build_from("eyJ0eXAi"),
            Err(BuildFailure::InvalidCredentials(_))
        ));
    }

    #[test]
    fn slot_minutes_are_bounded() {
        assert_eq!(slot_step(Some(15)), Ok(chrono::Duration::minutes(15)));
        assert!(slot_step(Some(0)).is_err());
        assert!(slot_step(None).is_err());
    }
}
