//! Turning busy intervals into bookable slots, for vendors that report busy time rather than
//! free slots (Google Calendar free/busy, Microsoft Graph schedules).
//!
//! Owns: business hours in the business's own zone (DST included) and slot stepping. Pure
//! functions only: no IO, no clock.

use chrono::{Datelike, Duration, NaiveTime, TimeZone, Utc, Weekday};
use chrono_tz::Tz;

use super::{ConnectorError, Slot, TimeWindow};

/// Opening hours, the same every open day, in the business's zone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BusinessHours {
    pub open: NaiveTime,
    pub close: NaiveTime,
    pub days: Vec<Weekday>,
}

impl BusinessHours {
    pub fn new(
        open: NaiveTime,
        close: NaiveTime,
        days: Vec<Weekday>,
    ) -> Result<Self, ConnectorError> {
        if close <= open {
            return Err(ConnectorError::Config(
                "business hours close before they open".into(),
            ));
        }
        Ok(Self { open, close, days })
    }

    /// Monday to Friday, 09:00–17:00.
    pub fn weekdays_nine_to_five() -> Self {
        Self {
            open: NaiveTime::from_hms_opt(9, 0, 0).unwrap_or(NaiveTime::MIN),
            close: NaiveTime::from_hms_opt(17, 0, 0).unwrap_or(NaiveTime::MIN),
            days: vec![
                Weekday::Mon,
                Weekday::Tue,
                Weekday::Wed,
                Weekday::Thu,
                Weekday::Fri,
            ],
        }
    }
}

/// Slots of `duration`, starting every `step` from opening time, inside `window` and opening
/// hours, overlapping no `busy` interval; at most `max` of them, earliest first.
pub fn free_slots(
    window: TimeWindow,
    busy: &[TimeWindow],
    duration: Duration,
    step: Duration,
    hours: &BusinessHours,
    zone: Tz,
    max: usize,
) -> Vec<Slot> {
    let mut slots = Vec::new();
    if duration <= Duration::zero() || step <= Duration::zero() {
        return slots;
    }
    let first_day = window.start.with_timezone(&zone).date_naive();
    let last_day = window.end.with_timezone(&zone).date_naive();
    for day in first_day.iter_days().take_while(|day| *day <= last_day) {
        if !hours.days.contains(&day.weekday()) {
            continue;
        }
        // A local time that does not exist (DST gap) has no slot; an ambiguous one takes the
        // earlier instant.
        let (Some(open), Some(close)) = (
            zone.from_local_datetime(&day.and_time(hours.open))
                .earliest(),
            zone.from_local_datetime(&day.and_time(hours.close))
                .earliest(),
        ) else {
            continue;
        };
        let open = open.with_timezone(&Utc);
        let close = close.with_timezone(&Utc).min(window.end);
        let mut start = open;
        if start < window.start {
            // Stay on the step grid that starts at opening time.
            let behind = window.start - start;
            let steps = (behind.num_seconds() + step.num_seconds() - 1) / step.num_seconds();
            start += step * i32::try_from(steps).unwrap_or(i32::MAX);
        }
        while start + duration <= close {
            let candidate = TimeWindow {
                start,
                end: start + duration,
            };
            if !busy.iter().any(|taken| taken.overlaps(&candidate)) {
                slots.push(Slot {
                    start,
                    end: candidate.end,
                    zone,
                });
                if slots.len() >= max {
                    return slots;
                }
            }
            start += step;
        }
    }
    slots
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::DateTime;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .expect("valid time")
            .with_timezone(&Utc)
    }

    #[test]
    fn busy_time_and_closed_hours_are_skipped() {
        let zone = chrono_tz::Europe::Berlin;
        // Monday 3 March 2025, Berlin is UTC+1.
        let window = TimeWindow::new(at("2025-03-03T00:00:00Z"), at("2025-03-03T23:00:00Z"))
            .expect("window");
        let busy = [
            TimeWindow::new(at("2025-03-03T08:30:00Z"), at("2025-03-03T10:00:00Z")).expect("busy"),
        ];
        let slots = free_slots(
            window,
            &busy,
            Duration::minutes(30),
            Duration::minutes(30),
            &BusinessHours::weekdays_nine_to_five(),
            zone,
            3,
        );
        let starts: Vec<String> = slots
            .iter()
            .map(|slot| slot.local_start().format("%H:%M").to_string())
            .collect();
        // 09:00 local = 08:00Z free; 09:30–10:59 local busy; then 11:00, 11:30.
        assert_eq!(starts, ["09:00", "11:00", "11:30"]);
    }

    #[test]
    fn weekends_have_no_slots() {
        let window = TimeWindow::new(at("2025-03-08T00:00:00Z"), at("2025-03-09T23:00:00Z"))
            .expect("window");
        let slots = free_slots(
            window,
            &[],
            Duration::minutes(30),
            Duration::minutes(30),
            &BusinessHours::weekdays_nine_to_five(),
            chrono_tz::UTC,
            10,
        );
        assert!(slots.is_empty());
    }

    #[test]
    fn a_window_starting_mid_morning_stays_on_the_grid() {
        let window = TimeWindow::new(at("2025-03-03T10:10:00Z"), at("2025-03-03T11:30:00Z"))
            .expect("window");
        let slots = free_slots(
            window,
            &[],
            Duration::minutes(30),
            Duration::minutes(30),
            &BusinessHours::weekdays_nine_to_five(),
            chrono_tz::UTC,
            10,
        );
        let starts: Vec<String> = slots
            .iter()
            .map(|slot| slot.start.format("%H:%M").to_string())
            .collect();
        assert_eq!(starts, ["10:30", "11:00"]);
    }

    #[test]
    fn opening_hours_follow_daylight_saving_time() {
        let zone = chrono_tz::America::New_York;
        // DST starts on Sunday 9 March 2025; Friday is UTC-5, Monday UTC-4.
        let window = TimeWindow::new(at("2025-03-07T00:00:00Z"), at("2025-03-11T00:00:00Z"))
            .expect("window");
        let slots = free_slots(
            window,
            &[],
            Duration::hours(8),
            Duration::hours(8),
            &BusinessHours::weekdays_nine_to_five(),
            zone,
            10,
        );
        let starts: Vec<DateTime<Utc>> = slots.iter().map(|slot| slot.start).collect();
        assert_eq!(
            starts,
            [at("2025-03-07T14:00:00Z"), at("2025-03-10T13:00:00Z")]
        );
    }
}
