//! Signature verification of one webhook delivery, per the vendor's scheme
//! ([`WebhookScheme`]): pure functions over the raw bytes, the headers, the URL the vendor posted
//! to and the current time. Every comparison is constant-time (`Mac::verify_slice`, `subtle`).
//!
//! It must not parse the body before the signature holds, read the clock, or know where secrets
//! come from: the caller passes the decrypted secret and `now`.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;

use crate::connectors::kit::{WebhookScheme, WebhookSpec};

type HmacSha256 = Hmac<Sha256>;

/// The HubSpot v3 timestamp header (milliseconds since the epoch).
pub const HUBSPOT_TIMESTAMP: &str = "X-HubSpot-Request-Timestamp";

/// One delivery as received, before anything is parsed.
#[derive(Clone, Copy, Debug)]
pub struct Delivery<'a> {
    pub method: &'a str,
    /// The public URL the vendor posted to (the configured public URL, the path and the query),
    /// never one rebuilt from request headers.
    pub url: &'a str,
    /// Header names and values (names in any case).
    pub headers: &'a [(String, String)],
    pub body: &'a [u8],
}

impl Delivery<'_> {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }
}

/// Why a delivery is refused. Each maps to one status and one metric label.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("no {0} header: unsigned delivery")]
    Unsigned(&'static str),
    #[error("the signature does not match")]
    BadSignature,
    #[error("the signed timestamp is outside the {0} s tolerance")]
    Stale(u32),
    #[error("malformed delivery: {0}")]
    Malformed(String),
}

impl Rejection {
    /// 401 for missing, wrong and stale signatures (authentication failed); 400 for a
    /// delivery whose signature header or body cannot be read.
    pub fn status(&self) -> u16 {
        match self {
            Self::Unsigned(_) | Self::BadSignature | Self::Stale(_) => 401,
            Self::Malformed(_) => 400,
        }
    }

    /// The metric label.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Unsigned(_) => "unsigned",
            Self::BadSignature => "bad_signature",
            Self::Stale(_) => "stale",
            Self::Malformed(_) => "malformed",
        }
    }
}

/// The scheme's name, as stored with each event (`verified_by`).
pub fn scheme_name(scheme: WebhookScheme) -> &'static str {
    match scheme {
        WebhookScheme::HmacSha256Base64 => "hmac-sha256-base64",
        WebhookScheme::HmacSha256Hex => "hmac-sha256-hex",
        WebhookScheme::PrefixedHmacSha256Hex(_) => "hmac-sha256-prefixed-hex",
        WebhookScheme::TimestampedHmacSha256Hex => "timestamped-hmac-sha256",
        WebhookScheme::HubSpotV3 => "hubspot-v3",
        WebhookScheme::StandardWebhooks => "standard-webhooks-v1",
        WebhookScheme::TwilioSha1 => "twilio-sha1",
    }
}

/// Checks `delivery` against `spec` with `secret`, at `now_ms` (Unix milliseconds).
pub fn verify(
    spec: &WebhookSpec,
    secret: &SecretString,
    delivery: &Delivery<'_>,
    now_ms: i64,
) -> Result<(), Rejection> {
    let signature = delivery
        .header(spec.header)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .ok_or(Rejection::Unsigned(spec.header))?;
    let key = secret.expose_secret().as_bytes();
    match spec.scheme {
        WebhookScheme::HmacSha256Base64 => {
            let tag = STANDARD
                .decode(signature)
                .map_err(|_| Rejection::BadSignature)?;
            check(key, &[delivery.body], &tag)
        }
        WebhookScheme::HmacSha256Hex => {
            let tag = decode_hex(signature).ok_or(Rejection::BadSignature)?;
            check(key, &[delivery.body], &tag)
        }
        WebhookScheme::PrefixedHmacSha256Hex(prefix) => {
            let hex = signature.strip_prefix(prefix).ok_or_else(|| {
                Rejection::Malformed(format!("the signature must start with {prefix:?}"))
            })?;
            let tag = decode_hex(hex).ok_or(Rejection::BadSignature)?;
            check(key, &[delivery.body], &tag)
        }
        WebhookScheme::TimestampedHmacSha256Hex => {
            let mut timestamp = None;
            let mut tags = Vec::new();
            for part in signature.split(',') {
                match part.trim().split_once('=') {
                    Some(("t", value)) => timestamp = Some(value),
                    Some(("v1", value)) => tags.push(value),
                    _ => {}
                }
            }
            let timestamp = timestamp.ok_or_else(|| {
                Rejection::Malformed(format!("{} has no t= timestamp", spec.header))
            })?;
            let seconds: i64 = timestamp
                .parse()
                .map_err(|_| Rejection::Malformed("the t= timestamp is not a number".into()))?;
            if tags.is_empty() {
                return Err(Rejection::Malformed(format!(
                    "{} has no v1= signature",
                    spec.header
                )));
            }
            // The signature first: a stale but forged delivery is a forgery.
            let mut ok = false;
            for tag in tags {
                if let Some(tag) = decode_hex(tag) {
                    ok |= check(key, &[timestamp.as_bytes(), b".", delivery.body], &tag).is_ok();
                }
            }
            if !ok {
                return Err(Rejection::BadSignature);
            }
            within(spec.tolerance_secs, seconds.saturating_mul(1000), now_ms)
        }
        WebhookScheme::HubSpotV3 => {
            let timestamp = delivery
                .header(HUBSPOT_TIMESTAMP)
                .map(str::trim)
                .ok_or(Rejection::Unsigned(HUBSPOT_TIMESTAMP))?;
            let millis: i64 = timestamp.parse().map_err(|_| {
                Rejection::Malformed(format!("{HUBSPOT_TIMESTAMP} is not a number"))
            })?;
            let tag = STANDARD
                .decode(signature)
                .map_err(|_| Rejection::BadSignature)?;
            let uri = hubspot_uri(delivery.url);
            check(
                key,
                &[
                    delivery.method.as_bytes(),
                    uri.as_bytes(),
                    delivery.body,
                    timestamp.as_bytes(),
                ],
                &tag,
            )?;
            within(spec.tolerance_secs, millis, now_ms)
        }
        WebhookScheme::StandardWebhooks => {
            let id = delivery
                .header("webhook-id")
                .ok_or(Rejection::Unsigned("webhook-id"))?;
            let timestamp = delivery
                .header("webhook-timestamp")
                .map(str::trim)
                .ok_or(Rejection::Unsigned("webhook-timestamp"))?;
            let seconds: i64 = timestamp
                .parse()
                .map_err(|_| Rejection::Malformed("webhook-timestamp is not a number".into()))?;
            let text = secret.expose_secret();
            let key = STANDARD
                .decode(text.strip_prefix("whsec_").unwrap_or(text))
                .map_err(|_| {
                    Rejection::Malformed("the source's secret is not whsec_<base64>".into())
                })?;
            let mut ok = false;
            for entry in signature.split(' ') {
                if let Some(("v1", tag)) = entry.split_once(',')
                    && let Ok(tag) = STANDARD.decode(tag)
                {
                    ok |= check(
                        &key,
                        &[
                            id.as_bytes(),
                            b".",
                            timestamp.as_bytes(),
                            b".",
                            delivery.body,
                        ],
                        &tag,
                    )
                    .is_ok();
                }
            }
            if !ok {
                return Err(Rejection::BadSignature);
            }
            within(spec.tolerance_secs, seconds.saturating_mul(1000), now_ms)
        }
        WebhookScheme::TwilioSha1 => {
            let params: Vec<(String, String)> = serde_urlencoded::from_bytes(delivery.body)
                .map_err(|_| Rejection::Malformed("the body is not a form".into()))?;
            if crate::twilio::signature::is_valid(
                secret.expose_secret(),
                delivery.url,
                &params,
                signature,
            ) {
                Ok(())
            } else {
                Err(Rejection::BadSignature)
            }
        }
    }
}

/// HMAC-SHA256 over `parts` in order, compared in constant time with `tag`.
fn check(key: &[u8], parts: &[&[u8]], tag: &[u8]) -> Result<(), Rejection> {
    let mut mac = HmacSha256::new_from_slice(key).map_err(|_| Rejection::BadSignature)?;
    for part in parts {
        mac.update(part);
    }
    mac.verify_slice(tag).map_err(|_| Rejection::BadSignature)
}

/// A signed instant `at_ms` no further than `tolerance_secs` from `now_ms` (either way: a clock
/// ahead of ours is as suspect as a replay).
fn within(tolerance_secs: u32, at_ms: i64, now_ms: i64) -> Result<(), Rejection> {
    if tolerance_secs == 0 {
        return Ok(());
    }
    let tolerance_ms = i64::from(tolerance_secs) * 1000;
    if now_ms.saturating_sub(at_ms).abs() > tolerance_ms {
        return Err(Rejection::Stale(tolerance_secs));
    }
    Ok(())
}

/// The URI HubSpot signs: the full URL with these percent-escapes decoded
/// (`%3A : %2F / %3F ? %40 @ %21 ! %24 $ %27 ' %28 ( %29 ) %2A * %2C , %3B ;`).
pub fn hubspot_uri(url: &str) -> String {
    const DECODED: [(&str, char); 13] = [
        ("3A", ':'),
        ("2F", '/'),
        ("3F", '?'),
        ("40", '@'),
        ("21", '!'),
        ("24", '$'),
        ("27", '\''),
        ("28", '('),
        ("29", ')'),
        ("2A", '*'),
        ("2C", ','),
        ("3B", ';'),
        ("23", '#'),
    ];
    let mut out = String::with_capacity(url.len());
    let mut rest = url;
    while let Some(pos) = rest.find('%') {
        out.push_str(&rest[..pos]);
        let code = rest.get(pos + 1..pos + 3).unwrap_or("");
        match DECODED
            .iter()
            .find(|(hex, _)| hex.eq_ignore_ascii_case(code))
        {
            Some((_, c)) => {
                out.push(*c);
                rest = &rest[pos + 3..];
            }
            None => {
                out.push('%');
                rest = &rest[pos + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}

pub(crate) fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Lowercase hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    //! Vectors in `fixtures/inbound/`, each computed outside this code (Python's `hmac`) in the
    //! vendor's documented format; here: they verify, and every tampering is refused.
    use super::*;
    use crate::inbound::specs::spec_for;

    #[derive(serde::Deserialize)]
    struct Vector {
        kind: String,
        secret: String,
        method: String,
        url: String,
        headers: Vec<(String, String)>,
        body: String,
        now_ms: i64,
    }

    fn vectors() -> Vec<Vector> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/inbound");
        let mut out = Vec::new();
        for entry in std::fs::read_dir(&dir).expect("fixtures/inbound") {
            let path = entry.expect("entry").path();
            if path.extension().is_some_and(|e| e == "json") {
                let text = std::fs::read_to_string(&path).expect("read vector");
                out.push(serde_json::from_str(&text).expect("vector"));
            }
        }
        assert!(out.len() >= 8, "one vector per source kind");
        out
    }

    fn run(
        v: &Vector,
        headers: &[(String, String)],
        body: &[u8],
        now_ms: i64,
    ) -> Result<(), Rejection> {
        let kind = crate::inbound::SourceKind::parse(&v.kind).expect("kind");
        let spec = spec_for(kind);
        let delivery = Delivery {
            method: &v.method,
            url: &v.url,
            headers,
            body,
        };
        verify(
            &spec,
            &SecretString::from(v.secret.clone()),
            &delivery,
            now_ms,
        )
    }

    #[test]
    fn documented_vectors_verify() {
        for v in vectors() {
            assert_eq!(
                run(&v, &v.headers, v.body.as_bytes(), v.now_ms),
                Ok(()),
                "{}",
                v.kind
            );
        }
    }

    #[test]
    fn tampered_body_wrong_secret_and_missing_header_are_refused() {
        for v in vectors() {
            let mut body = v.body.clone().into_bytes();
            body.push(b' ');
            assert!(
                matches!(
                    run(&v, &v.headers, &body, v.now_ms),
                    Err(Rejection::BadSignature | Rejection::Malformed(_))
                ),
                "{}: tampered body accepted",
                v.kind
            );
            let other = Vector {
                secret: format!("{}x", v.secret).replace("whsec_", "whsec_AAAA"),
                ..v
            };
            assert!(
                run(&other, &other.headers, other.body.as_bytes(), other.now_ms).is_err(),
                "{}: wrong secret accepted",
                other.kind
            );
            let spec = spec_for(crate::inbound::SourceKind::parse(&other.kind).expect("kind"));
            let stripped: Vec<(String, String)> = other
                .headers
                .iter()
                .filter(|(k, _)| !k.eq_ignore_ascii_case(spec.header))
                .cloned()
                .collect();
            assert!(
                matches!(
                    run(&other, &stripped, other.body.as_bytes(), other.now_ms),
                    Err(Rejection::Unsigned(_))
                ),
                "{}: unsigned accepted",
                other.kind
            );
        }
    }

    #[test]
    fn timestamps_outside_the_tolerance_are_stale() {
        for v in vectors() {
            let spec = spec_for(crate::inbound::SourceKind::parse(&v.kind).expect("kind"));
            if spec.tolerance_secs == 0 {
                continue;
            }
            let late = v.now_ms + i64::from(spec.tolerance_secs) * 1000 + 1000;
            assert_eq!(
                run(&v, &v.headers, v.body.as_bytes(), late),
                Err(Rejection::Stale(spec.tolerance_secs)),
                "{}",
                v.kind
            );
            // Further before the signed instant than the tolerance (vectors are signed at most 60 s
            // before their `now`).
            let early = v.now_ms - 2 * i64::from(spec.tolerance_secs) * 1000 - 60_000;
            assert!(
                run(&v, &v.headers, v.body.as_bytes(), early).is_err(),
                "{}",
                v.kind
            );
        }
    }

    #[test]
    fn hubspot_uri_decodes_only_the_documented_escapes() {
        assert_eq!(
            hubspot_uri("https://x.example/hooks/a/b?q=a%3Ab%2Fc%20d"),
            "https://x.example/hooks/a/b?q=a:b/c%20d"
        );
        assert_eq!(hubspot_uri("https://x/%"), "https://x/%");
    }
}
