//! Redaction of secrets and personal data before anything about a vendor call is logged.
//!
//! Owns: which headers are secret, which body fields are secret, and how emails and phone
//! numbers are masked in text. It must not decide what gets logged (that is the policy's job)
//! and must never be bypassed: every header, URL and body the policy logs goes through here.

use std::borrow::Cow;
use std::sync::LazyLock;

use regex::Regex;
use reqwest::header::HeaderMap;

/// What a masked secret looks like in logs.
pub const REDACTED: &str = "[redacted]";
const EMAIL_MASK: &str = "[email]";
const PHONE_MASK: &str = "[phone]";

/// Header names (lower case) whose value is a credential. Anything containing one of the
/// fragments in [`SECRET_NAME_FRAGMENTS`] is treated the same way.
const SECRET_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
    "x-shopify-access-token",
];

/// Fragments that mark a header, query parameter or body field as secret wherever they appear
/// in its name (`x-api-key`, `apikey`, `access_token`, `client_secret`, …).
const SECRET_NAME_FRAGMENTS: &[&str] = &[
    "token",
    "secret",
    "password",
    "api-key",
    "api_key",
    "apikey",
    "auth",
    "signature",
    "session",
];

/// True if a header, query parameter or body field with this name carries a credential.
pub fn is_secret_name(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    SECRET_HEADERS.contains(&lower.as_str())
        || SECRET_NAME_FRAGMENTS
            .iter()
            .any(|fragment| lower.contains(fragment))
}

/// Headers as `(name, value)` pairs safe to log: secret values replaced, the rest masked for
/// personal data.
pub fn redact_headers(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(name, value)| {
            let shown = if is_secret_name(name.as_str()) || value.is_sensitive() {
                REDACTED.to_owned()
            } else {
                match value.to_str() {
                    Ok(text) => redact_text(text).into_owned(),
                    Err(_) => "[binary]".to_owned(),
                }
            };
            (name.as_str().to_owned(), shown)
        })
        .collect()
}

/// A URL safe to log: secret query values replaced, personal data in the rest masked.
pub fn redact_url(url: &reqwest::Url) -> String {
    // Incoming-webhook URLs (Slack, Teams, Power Automate) carry their credential in the path
    // or a signature query: only the origin is shown.
    if is_webhook_url(url) {
        return format!("{}/{REDACTED}", url.origin().ascii_serialization());
    }
    let mut shown = url.clone();
    // Userinfo is a credential however it is named.
    if shown.password().is_some() {
        let _ = shown.set_password(Some(REDACTED));
    }
    if url.query().is_some() {
        let pairs: Vec<(String, String)> = url
            .query_pairs()
            .map(|(name, value)| {
                let value = if is_secret_name(&name) {
                    REDACTED.to_owned()
                } else {
                    redact_text(&value).into_owned()
                };
                (name.into_owned(), value)
            })
            .collect();
        shown.query_pairs_mut().clear().extend_pairs(pairs);
    }
    redact_text(shown.as_str()).into_owned()
}

/// Whether `url` is an incoming webhook whose path or query is its secret.
pub fn is_webhook_url(url: &reqwest::Url) -> bool {
    let host = url.host_str().unwrap_or("").to_ascii_lowercase();
    let path = url.path().to_ascii_lowercase();
    host == "hooks.slack.com"
        || host.ends_with(".webhook.office.com")
        || path.contains("/webhookb2/")
        || path.contains("/workflows/")
        || path.starts_with("/services/t")
}

static SECRET_FIELD: LazyLock<Regex> = LazyLock::new(|| {
    // `"access_token": "…"`, `refresh_token=…`, `"apiKey":"…"` in JSON or form bodies.
    Regex::new(
        r#"(?i)("?[a-z0-9_\-]*(?:token|secret|password|api[_-]?key|apikey|authorization|signature)[a-z0-9_\-]*"?\s*[:=]\s*"?)([^"&,\s}]+)"#,
    )
    .expect("static regex is valid")
});

static EMAIL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)[a-z0-9._%+\-]+@[a-z0-9.\-]+\.[a-z]{2,}").expect("static regex is valid")
});

static PHONE_CANDIDATE: LazyLock<Regex> = LazyLock::new(|| {
    // A run of digits with the separators people put in phone numbers. Whether it really is a
    // phone number is decided in `mask_phone` (digit count, not a date or time).
    Regex::new(r"\+?\(?\d[\d\s().\-]{5,}\d").expect("static regex is valid")
});

static DATE_OR_TIME: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^\d{4}-\d{2}-\d{2}|^\d{2}:\d{2}").expect("static regex is valid")
});

/// Transcript text as logged: whole when DEBUG is on for callbridge (see
/// [`crate::logging::personal_data_shown`]), otherwise with phone numbers and emails masked.
pub fn text_for_log(text: &str) -> Cow<'_, str> {
    if crate::logging::personal_data_shown() {
        return Cow::Borrowed(text);
    }
    redact_text(text)
}

/// Text (a body, a header value, an error snippet) with secret fields, emails and phone
/// numbers masked.
pub fn redact_text(text: &str) -> Cow<'_, str> {
    let mut out: Cow<'_, str> = Cow::Borrowed(text);
    if SECRET_FIELD.is_match(&out) {
        out = Cow::Owned(
            SECRET_FIELD
                .replace_all(&out, format!("${{1}}{REDACTED}"))
                .into_owned(),
        );
    }
    if EMAIL.is_match(&out) {
        out = Cow::Owned(EMAIL.replace_all(&out, EMAIL_MASK).into_owned());
    }
    if PHONE_CANDIDATE.is_match(&out) {
        let replaced = PHONE_CANDIDATE.replace_all(&out, |caps: &regex::Captures<'_>| {
            mask_phone(caps.get(0).map_or("", |m| m.as_str()))
        });
        if let Cow::Owned(replaced) = replaced {
            out = Cow::Owned(replaced);
        }
    }
    out
}

fn mask_phone(candidate: &str) -> String {
    let digits = candidate.chars().filter(char::is_ascii_digit).count();
    let looks_like_phone = (7..=15).contains(&digits) || candidate.starts_with('+');
    if looks_like_phone && !DATE_OR_TIME.is_match(candidate) {
        PHONE_MASK.to_owned()
    } else {
        candidate.to_owned()
    }
}

/// At most `max_chars` characters of redacted text, for error messages and log lines.
pub fn snippet(text: &str, max_chars: usize) -> String {
    let redacted = redact_text(text);
    let mut out: String = redacted.chars().take(max_chars).collect();
    if redacted.chars().nth(max_chars).is_some() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};

    #[test]
    fn secret_headers_are_masked_and_others_kept() {
        let mut headers = HeaderMap::new();
        headers.insert(
            AUTHORIZATION,
            HeaderValue::from_static("Bearer sk_live_123"),
        );
        headers.insert("x-api-key", HeaderValue::from_static("abc"));
        headers.insert(
            "X-Shopify-Access-Token",
            HeaderValue::from_static("shpat_1"),
        );
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        let shown = redact_headers(&headers);
        let text = format!("{shown:?}");
        assert!(!text.contains("sk_live_123"), "{text}");
        assert!(!text.contains("abc"), "{text}");
        assert!(!text.contains("shpat_1"), "{text}");
        assert!(text.contains("application/json"), "{text}");
    }

    #[test]
    fn emails_phones_and_secret_fields_are_masked_in_bodies() {
        let body = r#"{"email":"ann.lee@example.com","phone":"+1 (415) 555-0100","refresh_token":"1//abc-def","start":"2025-03-04T10:00:00Z","id":"42"}"#;
        let shown = redact_text(body);
        assert!(!shown.contains("ann.lee@example.com"), "{shown}");
        assert!(!shown.contains("555-0100"), "{shown}");
        assert!(!shown.contains("1//abc-def"), "{shown}");
        assert!(shown.contains("2025-03-04T10:00:00Z"), "{shown}");
        assert!(shown.contains(r#""id":"42""#), "{shown}");
    }

    #[test]
    fn form_bodies_mask_secret_fields() {
        let body = "grant_type=refresh_token&refresh_token=1%2F%2Fxyz&client_secret=s3cr3t";
        let shown = redact_text(body);
        assert!(!shown.contains("xyz"), "{shown}");
        assert!(!shown.contains("s3cr3t"), "{shown}");
    }

    #[test]
    fn webhook_urls_show_only_their_origin() {
        let url = reqwest::Url::parse("https://hooks.slack.com/services/T000/B000/XXXXsecret")
            .expect("url");
        let shown = redact_url(&url);
        assert!(!shown.contains("XXXXsecret") && shown.starts_with("https://hooks.slack.com/"));
        let teams = reqwest::Url::parse(
            "https://prod-1.westus.logic.azure.com/workflows/abc/triggers/manual/paths/invoke?sig=s3cr3t",
        )
        .expect("url");
        assert!(!redact_url(&teams).contains("s3cr3t"));
    }

    #[test]
    fn url_query_secrets_and_emails_are_masked() {
        let url = reqwest::Url::parse(
            "https://api.example.com/v1/x?access_token=tok&invitee_email=a%40b.com&count=5",
        )
        .expect("valid url");
        let shown = redact_url(&url);
        assert!(!shown.contains("tok&"), "{shown}");
        assert!(
            !shown.contains("a@b.com") && !shown.contains("a%40b.com"),
            "{shown}"
        );
        assert!(shown.contains("count=5"), "{shown}");
    }

    #[test]
    fn snippet_truncates_on_char_boundaries() {
        assert_eq!(snippet("héllo wörld", 5), "héllo…");
        assert_eq!(snippet("short", 10), "short");
    }

    #[test]
    fn transcripts_are_masked_in_logs_unless_debug_is_on() {
        use tracing_subscriber::layer::SubscriberExt as _;
        let info = tracing_subscriber::registry().with(tracing_subscriber::EnvFilter::new("info"));
        tracing::subscriber::with_default(info, || {
            let text = text_for_log("call me on +1 415 555 0100 or ann@example.com");
            assert!(
                !text.contains("555 0100") && !text.contains("ann@"),
                "{text}"
            );
        });
        let debug = tracing_subscriber::registry()
            .with(tracing_subscriber::EnvFilter::new("callbridge=debug"));
        tracing::subscriber::with_default(debug, || {
            assert_eq!(text_for_log("+1 415 555 0100"), "+1 415 555 0100");
        });
    }
}
