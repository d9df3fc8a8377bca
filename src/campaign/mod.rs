//! Outbound calling: placing one call compliantly ([`dialer`]), number validation, and (later)
//! campaigns built on the same dialer.
//!
//! It owns the rules applied before a number is dialled (valid E.164, not on the tenant's
//! do-not-call list, a caller ID the tenant owns) and the call record written *before* the Twilio
//! request, so a call is never placed without a record to attach callbacks to. It must not run the
//! media path or serve HTTP: the voice webhook and status callback routes in [`crate::http`] read
//! what this module wrote.

pub mod dialer;

pub use dialer::{
    DialError, Dialer, OutboundRequest, PlacedCall, Voicemail, normalize_number,
    verify_call_reference,
};
