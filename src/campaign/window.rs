//! Recipient-local calling windows: may this number be called now, and if not, when next?
//!
//! A number's time zones come from its country (via `phonenumber`), or from a per-contact
//! override. Countries spanning several zones are handled conservatively: the window must be open
//! in *every* zone of the country, so a number is never called outside hours wherever in the
//! country it is; an explicit `time_zone` column narrows it to one zone. Local times are computed
//! with `chrono-tz`, so DST changes are applied by the tz database, never by fixed offsets. This
//! module is pure: it takes the current instant as an argument (the injectable clock lives with the
//! dispatcher) and must not read the clock or the store.

use chrono::{DateTime, Datelike, Duration, NaiveTime, TimeZone, Timelike, Utc, Weekday};
use chrono_tz::Tz;

use crate::store::{E164, WindowSpec};

/// Why a window or zone could not be set up.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WindowError {
    #[error("unknown time zone {0:?} (use an IANA name such as America/Chicago)")]
    UnknownTimeZone(String),
    #[error("no time zone is known for numbers of country {0}; give a time_zone column")]
    UnknownCountry(String),
    #[error("invalid calling window: {0}")]
    Invalid(String),
}

/// Daily hours (recipient-local, `start` inclusive, `end` exclusive) on the allowed weekdays.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallingWindow {
    pub start: NaiveTime,
    pub end: NaiveTime,
    /// Monday first.
    pub days: [bool; 7],
}

impl Default for CallingWindow {
    /// 09:00–20:00, Monday to Saturday.
    fn default() -> Self {
        Self {
            start: NaiveTime::from_hms_opt(9, 0, 0).unwrap_or_default(),
            end: NaiveTime::from_hms_opt(20, 0, 0).unwrap_or_default(),
            days: [true, true, true, true, true, true, false],
        }
    }
}

impl CallingWindow {
    pub fn new(start: NaiveTime, end: NaiveTime, days: [bool; 7]) -> Result<Self, WindowError> {
        if start >= end {
            return Err(WindowError::Invalid("start must be before end".into()));
        }
        if !days.contains(&true) {
            return Err(WindowError::Invalid("no day is allowed".into()));
        }
        Ok(Self { start, end, days })
    }

    fn open_in(&self, zone: Tz, now: DateTime<Utc>) -> bool {
        let local = now.with_timezone(&zone);
        let day = local.weekday().num_days_from_monday() as usize;
        let time = local.time();
        self.days[day] && time >= self.start && time < self.end
    }

    /// The window as the store keeps it (minutes after midnight, weekday bits).
    pub fn to_spec(&self) -> WindowSpec {
        let minutes = |t: NaiveTime| (t.hour() * 60 + t.minute()) as u16;
        // `end` of 24:00 is stored as 1440; NaiveTime cannot say 24:00, so `end` is 23:59:59 then.
        let end = if self.end.hour() == 23 && self.end.minute() == 59 && self.end.second() == 59 {
            24 * 60
        } else {
            minutes(self.end)
        };
        let days_mask = self
            .days
            .iter()
            .enumerate()
            .fold(0u8, |mask, (i, on)| if *on { mask | 1 << i } else { mask });
        WindowSpec {
            start_min: minutes(self.start),
            end_min: end,
            days_mask,
        }
    }

    /// The window a stored spec describes.
    pub fn from_spec(spec: WindowSpec) -> Result<Self, WindowError> {
        let time = |min: u16| {
            if min >= 24 * 60 {
                NaiveTime::from_hms_opt(23, 59, 59)
            } else {
                NaiveTime::from_hms_opt(u32::from(min / 60), u32::from(min % 60), 0)
            }
        };
        let (Some(start), Some(end)) = (time(spec.start_min), time(spec.end_min)) else {
            return Err(WindowError::Invalid("minutes out of range".into()));
        };
        let mut days = [false; 7];
        for (i, day) in days.iter_mut().enumerate() {
            *day = spec.days_mask & (1 << i) != 0;
        }
        Self::new(start, end, days)
    }

    /// Parses `HH:MM-HH:MM` (end may be `24:00`) and a day list such as `mon-sat` or
    /// `mon,wed,fri` (`all` for every day).
    pub fn parse(hours: &str, days: &str) -> Result<Self, WindowError> {
        let bad = |what: &str| {
            WindowError::Invalid(format!("{what}: expected e.g. 09:00-20:00 and mon-sat"))
        };
        let (start, end) = hours.trim().split_once('-').ok_or_else(|| bad(hours))?;
        let minutes = |text: &str| -> Option<u16> {
            let (h, m) = text.trim().split_once(':')?;
            let (h, m): (u16, u16) = (h.parse().ok()?, m.parse().ok()?);
            // `then`, not `then_some`: the sum must not be computed for an hour out of range
            // (65535 * 60 overflows u16).
            (m < 60 && (h < 24 || (h == 24 && m == 0))).then(|| h * 60 + m)
        };
        let (start_min, end_min) = (
            minutes(start).ok_or_else(|| bad(hours))?,
            minutes(end).ok_or_else(|| bad(hours))?,
        );
        const NAMES: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
        let index = |name: &str| {
            NAMES
                .iter()
                .position(|n| *n == name.trim().to_ascii_lowercase())
        };
        let mut days_mask = 0u8;
        for part in days.split(',') {
            let part = part.trim().to_ascii_lowercase();
            if part == "all" {
                days_mask = 0x7f;
            } else if let Some((a, b)) = part.split_once('-') {
                let (a, b) = (
                    index(a).ok_or_else(|| bad(days))?,
                    index(b).ok_or_else(|| bad(days))?,
                );
                if a > b {
                    return Err(bad(days));
                }
                for i in a..=b {
                    days_mask |= 1 << i;
                }
            } else {
                days_mask |= 1 << index(&part).ok_or_else(|| bad(days))?;
            }
        }
        Self::from_spec(WindowSpec {
            start_min,
            end_min,
            days_mask,
        })
    }

    /// Whether every one of `zones` is inside the window at `now`.
    pub fn is_open(&self, zones: &[Tz], now: DateTime<Utc>) -> bool {
        !zones.is_empty() && zones.iter().all(|zone| self.open_in(*zone, now))
    }

    /// The first whole minute at or after `now` when the window is open in all `zones`; `None`
    /// when it never is within 8 days (zones too far apart for the window).
    pub fn next_open(&self, zones: &[Tz], now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        if self.is_open(zones, now) {
            return Some(now);
        }
        let mut at = now.with_second(0)?.with_nanosecond(0)? + Duration::minutes(1);
        let limit = now + Duration::days(8);
        while at < limit {
            if self.is_open(zones, at) {
                return Some(at);
            }
            at += Duration::minutes(1);
        }
        None
    }
}

/// Parses an IANA zone name.
pub fn parse_zone(name: &str) -> Result<Tz, WindowError> {
    name.trim()
        .parse::<Tz>()
        .map_err(|_| WindowError::UnknownTimeZone(name.chars().take(64).collect()))
}

/// The zones a number may be in, from its country.
pub fn zones_for_number(number: &E164) -> Result<Vec<Tz>, WindowError> {
    use chrono_tz::{America, Asia, Atlantic, Australia, Europe, Pacific};
    let parsed = phonenumber::parse(None, number.as_str())
        .map_err(|_| WindowError::UnknownCountry("?".into()))?;
    let country = parsed
        .country()
        .id()
        .map(|id| format!("{id:?}"))
        .unwrap_or_else(|| "?".into());
    let zones: &[Tz] = match country.as_str() {
        "US" => &[
            America::New_York,
            America::Chicago,
            America::Denver,
            America::Phoenix,
            America::Los_Angeles,
            America::Anchorage,
            Pacific::Honolulu,
        ],
        "CA" => &[
            America::St_Johns,
            America::Halifax,
            America::Toronto,
            America::Winnipeg,
            America::Edmonton,
            America::Vancouver,
        ],
        "GB" => &[Europe::London],
        "IE" => &[Europe::Dublin],
        "DE" => &[Europe::Berlin],
        "FR" => &[Europe::Paris],
        "ES" => &[Europe::Madrid, Atlantic::Canary],
        "IT" => &[Europe::Rome],
        "NL" => &[Europe::Amsterdam],
        "PT" => &[Europe::Lisbon, Atlantic::Azores],
        "AU" => &[
            Australia::Sydney,
            Australia::Brisbane,
            Australia::Adelaide,
            Australia::Darwin,
            Australia::Perth,
        ],
        "NZ" => &[Pacific::Auckland],
        "IN" => &[Asia::Kolkata],
        "JP" => &[Asia::Tokyo],
        "SG" => &[Asia::Singapore],
        _ => return Err(WindowError::UnknownCountry(country)),
    };
    Ok(zones.to_vec())
}

/// `at` local time in `zone` as a UTC instant (the earlier one when ambiguous), for tests and
/// schedules written in local time.
pub fn local(zone: Tz, y: i32, m: u32, d: u32, h: u32, min: u32) -> Option<DateTime<Utc>> {
    zone.with_ymd_and_hms(y, m, d, h, min, 0)
        .earliest()
        .map(|t| t.with_timezone(&Utc))
}

/// Monday-first weekday index, for building `days`.
pub fn weekday_index(day: Weekday) -> usize {
    day.num_days_from_monday() as usize
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono_tz::America::{Chicago, Los_Angeles, New_York};
    use chrono_tz::Europe::London;

    fn number(raw: &str) -> E164 {
        E164::parse(raw).expect("valid test number")
    }

    #[test]
    fn window_follows_the_recipients_clock_across_dst() {
        let window = CallingWindow::default();
        // 2026-03-08: US DST starts at 02:00 local. 13:30 UTC is 09:30 EDT (open); a day
        // earlier the same UTC instant is 08:30 EST (closed).
        let after = Utc
            .with_ymd_and_hms(2026, 3, 9, 13, 30, 0)
            .single()
            .expect("valid");
        let before = Utc
            .with_ymd_and_hms(2026, 3, 6, 13, 30, 0)
            .single()
            .expect("valid");
        assert!(window.is_open(&[New_York], after));
        assert!(!window.is_open(&[New_York], before));
        // London changes on 2026-03-29, three weeks later: 08:30 UTC is 08:30 GMT on the 27th
        // (closed) and 09:30 BST on the 30th (open).
        let gmt = Utc
            .with_ymd_and_hms(2026, 3, 27, 8, 30, 0)
            .single()
            .expect("valid");
        let bst = Utc
            .with_ymd_and_hms(2026, 3, 30, 8, 30, 0)
            .single()
            .expect("valid");
        assert!(!window.is_open(&[London], gmt));
        assert!(window.is_open(&[London], bst));
    }

    #[test]
    fn sundays_and_late_evenings_are_closed_and_next_open_finds_monday() {
        let window = CallingWindow::default();
        // Saturday 2026-11-21 20:00 Chicago: closed (end is exclusive); Sunday closed all day.
        let saturday_evening = local(Chicago, 2026, 11, 21, 20, 0).expect("valid");
        assert!(!window.is_open(&[Chicago], saturday_evening));
        let next = window
            .next_open(&[Chicago], saturday_evening)
            .expect("opens within a week");
        assert_eq!(next, local(Chicago, 2026, 11, 23, 9, 0).expect("valid"));
    }

    #[test]
    fn multi_zone_countries_need_every_zone_open() {
        let zones = zones_for_number(&number("+14155552671")).expect("US zones");
        assert!(zones.contains(&Los_Angeles) && zones.contains(&New_York));
        let window = CallingWindow::default();
        // 10:00 in New York is 07:00 in Los Angeles: closed for an unknown-zone US number.
        let ny_morning = local(New_York, 2026, 6, 10, 10, 0).expect("valid");
        assert!(window.is_open(&[New_York], ny_morning));
        assert!(!window.is_open(&zones, ny_morning));
        assert!(window.next_open(&zones, ny_morning).is_some());
        assert_eq!(zones_for_number(&number("+442079460958")), Ok(vec![London]));
        assert!(matches!(
            zones_for_number(&number("+5511987654321")),
            Err(WindowError::UnknownCountry(_))
        ));
    }

    #[test]
    fn windows_parse_and_round_trip_through_the_store_form() {
        let window = CallingWindow::parse("09:00-20:00", "mon-sat").expect("valid");
        assert_eq!(window, CallingWindow::default());
        assert_eq!(
            window.to_spec(),
            WindowSpec {
                start_min: 540,
                end_min: 1200,
                days_mask: 0b0011_1111
            }
        );
        assert_eq!(CallingWindow::from_spec(window.to_spec()), Ok(window));
        let late = CallingWindow::parse("18:30-24:00", "fri,sun").expect("valid");
        assert_eq!(late.to_spec().end_min, 1440);
        assert_eq!(late.to_spec().days_mask, 0b0101_0000);
        assert_eq!(CallingWindow::from_spec(late.to_spec()), Ok(late));
        for (hours, days) in [
            ("9-20", "mon"),
            ("20:00-09:00", "mon"),
            ("09:00-20:00", "sat-mon"),
            ("09:00-20:00", "funday"),
            ("09:00-25:00", "mon"),
        ] {
            assert!(CallingWindow::parse(hours, days).is_err(), "{hours} {days}");
        }
    }

    #[test]
    fn bad_windows_and_zones_are_refused() {
        let nine = NaiveTime::from_hms_opt(9, 0, 0).expect("valid");
        assert!(CallingWindow::new(nine, nine, [true; 7]).is_err());
        assert!(CallingWindow::new(nine, NaiveTime::MIN, [true; 7]).is_err());
        assert!(parse_zone("Mars/Olympus").is_err());
        assert_eq!(parse_zone(" America/Chicago "), Ok(Chicago));
    }

    /// Regression: an hour near `u16::MAX` used to overflow `h * 60 + m` (a panic in debug
    /// builds, a wrapped and wrongly accepted window in release). Found by the window fuzz target.
    #[test]
    fn huge_hours_are_refused_without_overflow() {
        for hours in [
            "65535:00-20:00",
            "09:00-65535:59",
            "1093:00-1094:00",
            "65535:65535-65535:65535",
            "99999999999999999999:00-20:00",
        ] {
            assert!(
                matches!(
                    CallingWindow::parse(hours, "mon"),
                    Err(WindowError::Invalid(_))
                ),
                "{hours}"
            );
        }
    }
}
