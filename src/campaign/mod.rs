//! Outbound calling: placing one call compliantly ([`dialer`]), and the pure building blocks of
//! campaigns: contact import from CSV ([`import`]) and recipient-local calling windows
//! ([`window`]). The campaign store, pacing and leased dispatch are not built yet.
//!
//! It owns the rules applied before a number is dialled (valid E.164, not on the tenant's
//! do-not-call list, a caller ID the tenant owns) and the call record written *before* the Twilio
//! request, so a call is never placed without a record to attach callbacks to. It must not run the
//! media path or serve HTTP: the voice webhook and status callback routes in [`crate::http`] read
//! what this module wrote.

pub mod dialer;
pub mod import;
pub mod window;

pub use dialer::{
    DialError, Dialer, OutboundRequest, PlacedCall, Voicemail, normalize_number,
    verify_call_reference,
};
