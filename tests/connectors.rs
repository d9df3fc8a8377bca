//! Every vendor connector end to end against a 127.0.0.1 mock of its API, one module per vendor,
//! in one test binary (one link instead of six). Each test ends by checking every request its mock
//! received against the vendor's published spec (`callbridge_testkit::contract`).
//!
//! Adding a vendor: `tests/connectors/<id>.rs` and one `mod` line below.

#[path = "connectors/calcom.rs"]
mod calcom;
#[path = "connectors/calendly.rs"]
mod calendly;
#[path = "connectors/crisp.rs"]
mod crisp;
#[path = "connectors/freshdesk.rs"]
mod freshdesk;
#[path = "connectors/google_calendar.rs"]
mod google_calendar;
#[path = "connectors/google_service_account.rs"]
mod google_service_account;
#[path = "connectors/google_sheets.rs"]
mod google_sheets;
#[path = "connectors/hubspot.rs"]
mod hubspot;
#[path = "connectors/intercom.rs"]
mod intercom;
#[path = "connectors/microsoft_calendar.rs"]
mod microsoft_calendar;
#[path = "connectors/pipedrive.rs"]
mod pipedrive;
#[path = "connectors/shopify.rs"]
mod shopify;
#[path = "connectors/zendesk.rs"]
mod zendesk;
