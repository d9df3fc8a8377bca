//! Twilio as the telephony side: the media stream protocol, TwiML, request signatures and per-call
//! stream tokens. Nothing here holds call state; the call actor does.

pub mod signature;
pub mod stream;
pub mod token;
pub mod twiml;
