//! Per-call stream tokens: the signed voice webhook mints one, the media WebSocket's `start` message
//! must carry it back.
//!
//! Why: the WebSocket upgrade's signature covers only the fixed stream URL, so it is the same for
//! every call and a captured one could be replayed; the `start` message's custom parameters (caller,
//! called number) are not signed at all. The token binds those parameters to the call SID and an
//! expiry with an HMAC, so a replayed upgrade or a forged parameter is refused. Stateless, so any
//! node sharing the auth token can verify it. This module must not know about sockets or HTTP.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

type HmacSha256 = Hmac<Sha256>;

/// What a token vouches for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamClaims {
    pub call_sid: String,
    pub from: String,
    pub to: String,
    /// The tenant and agent the webhook routed the call to (empty for the default agent).
    pub tenant: String,
    pub agent: String,
    /// Unix seconds after which the token is refused.
    pub expires_at: u64,
    /// Empty for a call's first stream; for a caller taken back to the agent after a warm transfer
    /// did not go through, the transfer's resume note (`id|destination|outcome`, see
    /// `call::warm`). Signed like the rest, and it names the stream claim, so each resume streams once.
    pub resume: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("stream token missing")]
    Missing,
    #[error("stream token does not match the call")]
    Mismatch,
    #[error("stream token expired")]
    Expired,
}

/// Derives the token for `claims` with `secret` (the Twilio auth token).
pub fn mint(secret: &str, claims: &StreamClaims) -> String {
    let mut mac = HmacSha256::new_from_slice(secret.as_bytes()).expect("any key length");
    // Length-prefixed fields: no value can be shifted into its neighbour.
    for field in [
        "callbridge-stream-v1",
        &claims.call_sid,
        &claims.from,
        &claims.to,
        &claims.tenant,
        &claims.agent,
        &claims.expires_at.to_string(),
    ] {
        mac.update(&(field.len() as u64).to_be_bytes());
        mac.update(field.as_bytes());
    }
    // Only present on resumed streams, so a first stream's token is unchanged by the field.
    if !claims.resume.is_empty() {
        mac.update(&(claims.resume.len() as u64).to_be_bytes());
        mac.update(claims.resume.as_bytes());
    }
    URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
}

/// Checks `token` against `claims` at time `now_unix`.
pub fn verify(
    secret: &str,
    claims: &StreamClaims,
    token: Option<&str>,
    now_unix: u64,
) -> Result<(), TokenError> {
    let token = token.ok_or(TokenError::Missing)?;
    let expected = mint(secret, claims);
    if !bool::from(expected.as_bytes().ct_eq(token.as_bytes())) {
        return Err(TokenError::Mismatch);
    }
    if now_unix > claims.expires_at {
        return Err(TokenError::Expired);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims() -> StreamClaims {
        StreamClaims {
            call_sid: "CA1".into(),
            from: "+14155551234".into(),
            to: "+15005550006".into(),
            tenant: "acme".into(),
            agent: "agent_1".into(),
            expires_at: 1_000,
            resume: String::new(),
        }
    }

    #[test]
    fn round_trip_and_tampering() {
        let token = mint("secret", &claims());
        assert_eq!(verify("secret", &claims(), Some(&token), 999), Ok(()));
        assert_eq!(
            verify("secret", &claims(), Some(&token), 1_001),
            Err(TokenError::Expired)
        );
        assert_eq!(
            verify("other", &claims(), Some(&token), 999),
            Err(TokenError::Mismatch)
        );
        let mut forged = claims();
        forged.from = "+19999999999".into();
        assert_eq!(
            verify("secret", &forged, Some(&token), 999),
            Err(TokenError::Mismatch)
        );
        let mut other_tenant = claims();
        other_tenant.tenant = "globex".into();
        assert_eq!(
            verify("secret", &other_tenant, Some(&token), 999),
            Err(TokenError::Mismatch)
        );
        let mut other_call = claims();
        other_call.call_sid = "CA2".into();
        assert_eq!(
            verify("secret", &other_call, Some(&token), 999),
            Err(TokenError::Mismatch)
        );
        assert_eq!(
            verify("secret", &claims(), None, 999),
            Err(TokenError::Missing)
        );
        let mut resumed = claims();
        resumed.resume = "0123456789abcdef|front-desk|busy".into();
        assert_eq!(
            verify("secret", &resumed, Some(&token), 999),
            Err(TokenError::Mismatch),
            "a first stream's token does not open a resumed stream"
        );
        let resumed_token = mint("secret", &resumed);
        assert_eq!(
            verify("secret", &resumed, Some(&resumed_token), 999),
            Ok(())
        );
    }
}
