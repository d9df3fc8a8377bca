//! Retry classification: what one attempt's outcome means (success, retry, stop) and the server's
//! `Retry-After` hint. Pure functions of a response; it must not send, sleep or know a vendor.

use std::fmt;
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{HeaderMap, RETRY_AFTER};

/// What to do with the outcome of one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RetryAction {
    /// The attempt succeeded; hand the response to the connector.
    Successful,
    /// A transient failure: try again if the request is safe to replay and time allows.
    Retry(String),
    /// A definite failure: stop and report it.
    DontRetry(String),
}

/// What one attempt produced, as seen by a classifier.
#[derive(Debug)]
pub enum AttemptOutcome<'a> {
    Response {
        status: StatusCode,
        headers: &'a HeaderMap,
        body: &'a [u8],
    },
    TimedOut,
    /// Connect refused, connection reset, TLS or protocol failure before a full response.
    Transport(&'a str),
}

/// Per-connector retry classification. The default retries 408, 429 and 5xx except 501, and
/// every timeout or transport failure.
pub trait RetryClassifier: Send + Sync + fmt::Debug {
    fn classify(&self, outcome: &AttemptOutcome<'_>) -> RetryAction {
        default_classification(outcome)
    }
}

/// The classification used when a connector has no vendor-specific rule.
pub fn default_classification(outcome: &AttemptOutcome<'_>) -> RetryAction {
    match outcome {
        AttemptOutcome::Response { status, .. } => {
            if status.is_success() {
                RetryAction::Successful
            } else if *status == StatusCode::REQUEST_TIMEOUT
                || *status == StatusCode::TOO_MANY_REQUESTS
                || (status.is_server_error() && *status != StatusCode::NOT_IMPLEMENTED)
            {
                RetryAction::Retry(format!("status {}", status.as_u16()))
            } else {
                RetryAction::DontRetry(format!("status {}", status.as_u16()))
            }
        }
        AttemptOutcome::TimedOut => RetryAction::Retry("attempt timed out".to_owned()),
        AttemptOutcome::Transport(reason) => RetryAction::Retry(format!("transport: {reason}")),
    }
}

/// The classifier for connectors without vendor-specific rules.
#[derive(Debug, Default, Clone, Copy)]
pub struct DefaultClassifier;
impl RetryClassifier for DefaultClassifier {}

/// `Retry-After` as a delay from `now`: delta-seconds or an HTTP-date; `None` if absent or
/// unreadable. A date in the past means "now".
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(
        when.duration_since(std::time::SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn default_classification_follows_the_table() {
        let headers = HeaderMap::new();
        let classify = |code: u16| {
            default_classification(&AttemptOutcome::Response {
                status: StatusCode::from_u16(code).expect("valid code"),
                headers: &headers,
                body: b"",
            })
        };
        assert_eq!(classify(200), RetryAction::Successful);
        assert_eq!(classify(201), RetryAction::Successful);
        for code in [408, 429, 500, 502, 503, 504] {
            assert!(matches!(classify(code), RetryAction::Retry(_)), "{code}");
        }
        for code in [400, 401, 403, 404, 409, 422, 501] {
            assert!(
                matches!(classify(code), RetryAction::DontRetry(_)),
                "{code}"
            );
        }
        assert!(matches!(
            default_classification(&AttemptOutcome::TimedOut),
            RetryAction::Retry(_)
        ));
        assert!(matches!(
            default_classification(&AttemptOutcome::Transport("reset")),
            RetryAction::Retry(_)
        ));
    }

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, HeaderValue::from_static("7"));
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(7)));

        let in_a_minute = std::time::SystemTime::now() + Duration::from_secs(60);
        let date = httpdate::fmt_http_date(in_a_minute);
        headers.insert(
            RETRY_AFTER,
            HeaderValue::from_str(&date).expect("ascii date"),
        );
        let delay = retry_after(&headers).expect("date form parsed");
        assert!(
            delay > Duration::from_secs(55) && delay <= Duration::from_secs(60),
            "{delay:?}"
        );

        headers.insert(
            RETRY_AFTER,
            HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        assert_eq!(retry_after(&headers), Some(Duration::ZERO));

        headers.insert(RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&headers), None);
    }
}
