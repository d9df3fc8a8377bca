//! The circuit breaker kept per (tenant, connector): closed, open after repeated failures, one
//! half-open probe after the cool-down. Pure state; it must not send or sleep.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

pub(super) fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding one of these short, non-awaiting locks leaves plain data that is
    // still consistent, so recover the guard rather than propagate the poison.
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Observable state of one breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    Closed { consecutive_failures: u32 },
    Open { until: Instant },
    HalfOpen { probe_in_flight: bool },
}

/// Closed → Open after `threshold` consecutive failures → HalfOpen after `cool_down` (one probe)
/// → Closed on the probe's success, Open again on its failure.
#[derive(Debug)]
pub struct Breaker {
    state: BreakerState,
    threshold: u32,
    cool_down: Duration,
}

impl Breaker {
    pub fn new(threshold: u32, cool_down: Duration) -> Self {
        Self {
            state: BreakerState::Closed {
                consecutive_failures: 0,
            },
            threshold: threshold.max(1),
            cool_down,
        }
    }

    pub fn state(&self) -> BreakerState {
        self.state
    }

    /// Let an attempt through: `Ok(true)` if it is the half-open probe, `Ok(false)` for a
    /// normal attempt, `Err(retry_in)` when failing fast.
    pub fn admit(&mut self, now: Instant) -> Result<bool, Duration> {
        match self.state {
            BreakerState::Closed { .. } => Ok(false),
            BreakerState::Open { until } if now < until => Err(until - now),
            BreakerState::Open { .. }
            | BreakerState::HalfOpen {
                probe_in_flight: false,
            } => {
                self.state = BreakerState::HalfOpen {
                    probe_in_flight: true,
                };
                Ok(true)
            }
            BreakerState::HalfOpen {
                probe_in_flight: true,
            } => Err(Duration::ZERO),
        }
    }

    /// Record the outcome of an admitted attempt.
    pub fn record(&mut self, probe: bool, success: bool, now: Instant) {
        self.state = match (self.state, success) {
            (_, true) if probe => BreakerState::Closed {
                consecutive_failures: 0,
            },
            (_, false) if probe => BreakerState::Open {
                until: now + self.cool_down,
            },
            (BreakerState::Closed { .. }, true) => BreakerState::Closed {
                consecutive_failures: 0,
            },
            (
                BreakerState::Closed {
                    consecutive_failures,
                },
                false,
            ) => {
                let failures = consecutive_failures + 1;
                if failures >= self.threshold {
                    BreakerState::Open {
                        until: now + self.cool_down,
                    }
                } else {
                    BreakerState::Closed {
                        consecutive_failures: failures,
                    }
                }
            }
            // A non-probe attempt admitted before the breaker opened finishes late: the
            // current state already reflects newer information.
            (state, _) => state,
        };
    }

    /// An admitted attempt ended without a verdict (cancelled, or no permit).
    pub fn abandon(&mut self, probe: bool) {
        if probe
            && self.state
                == (BreakerState::HalfOpen {
                    probe_in_flight: true,
                })
        {
            self.state = BreakerState::HalfOpen {
                probe_in_flight: false,
            };
        }
    }
}

/// Reports an admitted attempt to the breaker exactly once, also when the future is dropped.
/// A ticket created already `reported` (breaker off for the vendor) never touches the breaker.
pub(super) struct BreakerTicket<'a> {
    pub(super) breaker: &'a Mutex<Breaker>,
    pub(super) probe: bool,
    pub(super) reported: bool,
}

impl BreakerTicket<'_> {
    pub(super) fn report(&mut self, success: bool, now: Instant) {
        if !self.reported {
            lock(self.breaker).record(self.probe, success, now);
            self.reported = true;
        }
    }

    pub(super) fn release_unjudged(&mut self) {
        if !self.reported {
            lock(self.breaker).abandon(self.probe);
            self.reported = true;
        }
    }
}

impl Drop for BreakerTicket<'_> {
    fn drop(&mut self) {
        if !self.reported {
            lock(self.breaker).abandon(self.probe);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn breaker_cycles_closed_open_half_open_closed() {
        let t0 = Instant::now();
        let cool = Duration::from_secs(10);
        let mut breaker = Breaker::new(3, cool);
        for _ in 0..2 {
            assert_eq!(breaker.admit(t0), Ok(false));
            breaker.record(false, false, t0);
        }
        assert_eq!(
            breaker.state(),
            BreakerState::Closed {
                consecutive_failures: 2
            }
        );
        assert_eq!(breaker.admit(t0), Ok(false));
        breaker.record(false, false, t0);
        assert_eq!(breaker.state(), BreakerState::Open { until: t0 + cool });
        assert_eq!(
            breaker.admit(t0 + Duration::from_secs(4)),
            Err(Duration::from_secs(6))
        );

        // After the cool-down exactly one probe goes through.
        let later = t0 + cool;
        assert_eq!(breaker.admit(later), Ok(true));
        assert_eq!(breaker.admit(later), Err(Duration::ZERO));
        breaker.record(true, false, later);
        assert_eq!(
            breaker.state(),
            BreakerState::Open {
                until: later + cool
            }
        );

        let later = later + cool;
        assert_eq!(breaker.admit(later), Ok(true));
        breaker.record(true, true, later);
        assert_eq!(
            breaker.state(),
            BreakerState::Closed {
                consecutive_failures: 0
            }
        );
    }

    #[test]
    fn a_success_resets_the_failure_count() {
        let t0 = Instant::now();
        let mut breaker = Breaker::new(2, Duration::from_secs(1));
        breaker.record(false, false, t0);
        breaker.record(false, true, t0);
        breaker.record(false, false, t0);
        assert_eq!(
            breaker.state(),
            BreakerState::Closed {
                consecutive_failures: 1
            }
        );
    }

    #[test]
    fn an_abandoned_probe_lets_the_next_one_through() {
        let t0 = Instant::now();
        let mut breaker = Breaker::new(1, Duration::from_secs(1));
        breaker.record(false, false, t0);
        let later = t0 + Duration::from_secs(1);
        assert_eq!(breaker.admit(later), Ok(true));
        breaker.abandon(true);
        assert_eq!(breaker.admit(later), Ok(true));
    }
}
