//! Outbound calling: placing one call compliantly ([`dialer`]), and campaigns: contact import from
//! CSV ([`import`]), recipient-local calling windows ([`window`]), the retry policy by outcome
//! ([`outcome`]), the injectable clock ([`clock`]) and the dispatcher that dials exactly once
//! across restarts and nodes ([`runner`]; its transactions live in `store::campaigns`).
//!
//! It owns the rules applied before a number is dialled (valid E.164, not on the tenant's
//! do-not-call list, a caller ID the tenant owns, inside the recipient's calling window, within
//! pacing and caps) and the call record written *before* the Twilio request, so a call is never
//! placed without a record to attach callbacks to. It must not run the media path or serve HTTP:
//! the voice webhook and status callback routes in [`crate::http`] read what this module wrote.

pub mod clock;
pub mod csv_cell;
pub mod dialer;
pub mod import;
pub mod outcome;
pub mod runner;
pub mod window;

pub use clock::{Clock, ManualClock, SystemClock};
pub use dialer::{
    DialError, Dialer, OutboundRequest, PlacedCall, Voicemail, normalize_number,
    verify_call_reference,
};
pub use runner::{CampaignRunner, RunnerError, RunnerHandle, RunnerOptions, TickReport};
