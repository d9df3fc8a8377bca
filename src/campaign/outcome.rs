//! What happens to a contact after an attempt: the retry policy by call outcome, and what a Twilio
//! error on `CreateCall` means for the contact. Pure functions of their inputs (no store, no
//! clock), so every rule is a unit test.
//!
//! Outcomes (the `outcome` column and the export): `completed`, `voicemail`, `opted_out`,
//! `do_not_call`, `busy`, `no_answer`, `failed` (after the last attempt), `invalid_number`,
//! `no_calling_window`, `invalid_time_zone`, `cancelled`.

use std::time::Duration;

use crate::connectors::twilio_rest::TwilioError;
use crate::store::{CallStatus, FinishedAttempt, Settlement};

/// Decides about a contact whose call reached a final status. A person who asked not to be
/// called (the number is on the do-not-call list now) is never retried; answered calls (by a
/// person or a machine) are done; busy, no answer and failed are retried after the campaign's
/// delay until its attempts are used up.
pub fn settle(attempt: &FinishedAttempt, now_ms: i64) -> Settlement {
    let done = |outcome: &str| Settlement::Done {
        outcome: outcome.to_owned(),
    };
    if attempt.on_do_not_call {
        return done(if attempt.status == CallStatus::Completed {
            "opted_out"
        } else {
            "do_not_call"
        });
    }
    let retryable = match attempt.status {
        CallStatus::Completed => {
            let machine = attempt
                .answered_by
                .as_deref()
                .is_some_and(|a| a.starts_with("machine") || a == "fax");
            return done(if machine { "voicemail" } else { "completed" });
        }
        CallStatus::Canceled => return done("cancelled"),
        CallStatus::Busy => "busy",
        CallStatus::NoAnswer => "no_answer",
        CallStatus::Failed => "failed",
        // Not final: `finished_attempts` never returns these; treat as failed, never loop.
        CallStatus::Queued | CallStatus::Ringing | CallStatus::InProgress => "failed",
    };
    if attempt.attempts < attempt.max_attempts {
        Settlement::Retry {
            at_ms: now_ms.saturating_add(attempt.retry_delay_s.saturating_mul(1000)),
        }
    } else {
        done(retryable)
    }
}

/// What a failed `CreateCall` means.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DialFailure {
    /// Twilio answered and did not place the call: settle the contact (the attempt is not counted
    /// when retried).
    NotPlaced(Settlement),
    /// Twilio did not place it, and will not for any contact until an operator fixes the account
    /// (credentials, caller ID): pause the campaign; the contact waits.
    PauseCampaign { retry_at_ms: i64 },
    /// The answer was lost (network error, unreadable 2xx): the call may exist. Leave the contact
    /// `dialing`; when the lease runs out, reconciliation asks Twilio.
    Unknown,
}

/// How long to wait after Twilio said "not now" without a Retry-After.
pub const TRANSIENT_RETRY: Duration = Duration::from_secs(30);

pub fn classify_dial_error(error: &TwilioError, now_ms: i64) -> DialFailure {
    let later =
        |wait: Duration| now_ms.saturating_add(i64::try_from(wait.as_millis()).unwrap_or(i64::MAX));
    match error {
        TwilioError::InvalidNumber { .. } => DialFailure::NotPlaced(Settlement::Done {
            outcome: "invalid_number".into(),
        }),
        TwilioError::RateLimited { retry_after } => DialFailure::NotPlaced(Settlement::Retry {
            at_ms: later(retry_after.unwrap_or(TRANSIENT_RETRY)),
        }),
        TwilioError::Api { status, .. } if *status >= 500 => {
            DialFailure::NotPlaced(Settlement::Retry {
                at_ms: later(TRANSIENT_RETRY),
            })
        }
        TwilioError::NotSent(_) => DialFailure::NotPlaced(Settlement::Retry {
            at_ms: later(TRANSIENT_RETRY),
        }),
        TwilioError::Auth { .. }
        | TwilioError::Egress(_)
        | TwilioError::UnverifiedCallerId { .. }
        | TwilioError::NotFound { .. } => DialFailure::PauseCampaign {
            retry_at_ms: later(TRANSIENT_RETRY),
        },
        TwilioError::Api { .. } | TwilioError::InvalidRequest(_) => {
            DialFailure::NotPlaced(Settlement::Done {
                outcome: "failed".into(),
            })
        }
        TwilioError::Transport(_) | TwilioError::Decode(_) => DialFailure::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attempt(status: CallStatus, attempts: u32) -> FinishedAttempt {
        FinishedAttempt {
            campaign_id: "cmp".into(),
            seq: 0,
            call_id: "call".into(),
            status,
            end_reason: None,
            answered_by: None,
            attempts,
            max_attempts: 3,
            retry_delay_s: 600,
            on_do_not_call: false,
        }
    }

    fn outcome(s: Settlement) -> String {
        match s {
            Settlement::Done { outcome } => outcome,
            Settlement::Retry { at_ms } => format!("retry@{at_ms}"),
        }
    }

    #[test]
    fn busy_no_answer_and_failed_retry_until_attempts_run_out() {
        for (status, last) in [
            (CallStatus::Busy, "busy"),
            (CallStatus::NoAnswer, "no_answer"),
            (CallStatus::Failed, "failed"),
        ] {
            assert_eq!(outcome(settle(&attempt(status, 1), 1_000)), "retry@601000");
            assert_eq!(outcome(settle(&attempt(status, 2), 1_000)), "retry@601000");
            assert_eq!(outcome(settle(&attempt(status, 3), 1_000)), last);
        }
    }

    #[test]
    fn answered_opted_out_and_cancelled_are_never_retried() {
        assert_eq!(
            outcome(settle(&attempt(CallStatus::Completed, 1), 0)),
            "completed"
        );
        let mut machine = attempt(CallStatus::Completed, 1);
        machine.answered_by = Some("machine_end_beep".into());
        assert_eq!(outcome(settle(&machine, 0)), "voicemail");
        let mut opted = attempt(CallStatus::Completed, 1);
        opted.on_do_not_call = true;
        assert_eq!(outcome(settle(&opted, 0)), "opted_out");
        let mut listed = attempt(CallStatus::Busy, 1);
        listed.on_do_not_call = true;
        assert_eq!(outcome(settle(&listed, 0)), "do_not_call");
        assert_eq!(
            outcome(settle(&attempt(CallStatus::Canceled, 1), 0)),
            "cancelled"
        );
    }

    #[test]
    fn dial_errors_separate_refusals_from_lost_answers() {
        let invalid = TwilioError::InvalidNumber {
            message: "bad".into(),
        };
        assert_eq!(
            classify_dial_error(&invalid, 0),
            DialFailure::NotPlaced(Settlement::Done {
                outcome: "invalid_number".into()
            })
        );
        let limited = TwilioError::RateLimited {
            retry_after: Some(Duration::from_secs(5)),
        };
        assert_eq!(
            classify_dial_error(&limited, 1_000),
            DialFailure::NotPlaced(Settlement::Retry { at_ms: 6_000 })
        );
        let auth = TwilioError::Auth {
            message: "no".into(),
        };
        assert!(matches!(
            classify_dial_error(&auth, 0),
            DialFailure::PauseCampaign { .. }
        ));
        assert_eq!(
            classify_dial_error(&TwilioError::Transport("reset".into()), 0),
            DialFailure::Unknown
        );
        assert_eq!(
            classify_dial_error(&TwilioError::Decode("eof".into()), 0),
            DialFailure::Unknown
        );
    }
}
