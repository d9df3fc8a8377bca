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
#[path = "connectors/gmail.rs"]
mod gmail;
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
#[path = "connectors/klaviyo.rs"]
mod klaviyo;
#[path = "connectors/magento.rs"]
mod magento;
#[path = "connectors/microsoft_calendar.rs"]
mod microsoft_calendar;
#[path = "connectors/pipedrive.rs"]
mod pipedrive;
#[path = "connectors/salesforce.rs"]
mod salesforce;
#[path = "connectors/shopify.rs"]
mod shopify;
#[path = "connectors/slack.rs"]
mod slack;
#[path = "connectors/smtp.rs"]
mod smtp;
#[path = "connectors/stripe.rs"]
mod stripe;
#[path = "connectors/teams.rs"]
mod teams;
#[path = "connectors/twilio_sms.rs"]
mod twilio_sms;
#[path = "connectors/whatsapp.rs"]
mod whatsapp;
#[path = "connectors/wix.rs"]
mod wix;
#[path = "connectors/woocommerce.rs"]
mod woocommerce;
#[path = "connectors/zendesk.rs"]
mod zendesk;
#[path = "connectors/zoho_crm.rs"]
mod zoho_crm;
