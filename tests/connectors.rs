//! Every vendor connector end to end against a 127.0.0.1 mock of its API, one module per vendor,
//! in one test binary (one link instead of six). Each test ends by checking every request its mock
//! received against the vendor's published spec (`callbridge_testkit::contract`).
//!
//! Adding a vendor: `tests/connectors/<id>.rs` and one `mod` line below.

#[path = "connectors/calcom.rs"]
mod calcom;
#[path = "connectors/calendly.rs"]
mod calendly;
#[path = "connectors/google_calendar.rs"]
mod google_calendar;
#[path = "connectors/google_service_account.rs"]
mod google_service_account;
#[path = "connectors/hubspot.rs"]
mod hubspot;
#[path = "connectors/klaviyo.rs"]
mod klaviyo;
#[path = "connectors/magento.rs"]
mod magento;
#[path = "connectors/microsoft_calendar.rs"]
mod microsoft_calendar;
#[path = "connectors/pipedrive.rs"]
mod pipedrive;
#[path = "connectors/shopify.rs"]
mod shopify;
#[path = "connectors/stripe.rs"]
mod stripe;
#[path = "connectors/wix.rs"]
mod wix;
#[path = "connectors/woocommerce.rs"]
mod woocommerce;
