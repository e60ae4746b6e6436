//! Time windows of a rule: `hours = ["Mon-Fri 08:00-18:00"]` in a
//! `timezone`.
//!
//! A window is `DAYS HH:MM-HH:MM`. `DAYS` is a day (`Mon`), a range
//! (`Mon-Fri`, or `Fri-Mon` across the week end) or a comma list of both
//! (`Mon,Wed,Fri-Sat`). Times are wall-clock times in the rule's IANA time
//! zone, `24:00` may end a window, and a window whose end is before its
//! start crosses midnight: `Fri 22:00-06:00` runs from Friday 22:00 to
//! Saturday 06:00. The start is inclusive and the end exclusive.
//!
//! Matching converts the instant to the zone's wall clock with the tz
//! database, so daylight saving time moves the windows with local time. In
//! the hour repeated when clocks go back, both passes are inside a window
//! that covers that wall-clock time, and wall-clock times skipped when
//! clocks go forward never occur.

use std::fmt;
use std::time::SystemTime;

use jiff::Timestamp;
use jiff::civil::Weekday;
use jiff::tz::TimeZone;

/// Minutes in a day, the exclusive upper bound of a window end.
const DAY_MINUTES: u16 = 24 * 60;

/// Day abbreviations in the order of [`Weekday::to_monday_zero_offset`].
const DAY_NAMES: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];

/// Why a window or a time zone is invalid.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WindowError {
    #[error("expected `DAYS HH:MM-HH:MM` such as \"Mon-Fri 08:00-18:00\", found {0:?}")]
    Shape(String),
    #[error("expected a day among Mon, Tue, Wed, Thu, Fri, Sat, Sun, found {0:?}")]
    Day(String),
    #[error("expected a time from 00:00 to 24:00, found {0:?}")]
    Time(String),
    #[error("window {0:?} starts and ends at the same time; use 00:00-24:00 for a whole day")]
    Empty(String),
    #[error("unknown time zone {0:?}: expected an IANA name such as \"Europe/Brussels\" or \"UTC\"")]
    TimeZone(String),
}

/// One `DAYS HH:MM-HH:MM` window.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Window {
    /// The days the window starts on, Monday first.
    days: [bool; 7],
    /// Start, in minutes after midnight.
    start: u16,
    /// End, in minutes after midnight, up to 1440; before `start` when the
    /// window crosses midnight.
    end: u16,
    text: String,
}

/// The `hours` of a rule with their `timezone`: a call is inside when any
/// window contains the zone's wall-clock time.
#[derive(Clone, Debug)]
pub struct Schedule {
    windows: Vec<Window>,
    timezone: TimeZone,
    timezone_name: String,
}

// === impl Window ===

impl Window {
    /// Parses `DAYS HH:MM-HH:MM`.
    pub fn parse(text: &str) -> Result<Self, WindowError> {
        let shape = || WindowError::Shape(text.to_owned());
        let (days_text, times_text) = text.trim().split_once(char::is_whitespace).ok_or_else(shape)?;
        let (start_text, end_text) = times_text.trim().split_once('-').ok_or_else(shape)?;

        let days = parse_days(days_text)?;
        let start = parse_time(start_text, false)?;
        let end = parse_time(end_text, true)?;
        if start == end {
            return Err(WindowError::Empty(text.to_owned()));
        }
        Ok(Self { days, start, end, text: text.trim().to_owned() })
    }

    /// Tells whether the wall-clock time `minute` on `weekday` is inside.
    pub fn contains(&self, weekday: Weekday, minute: u16) -> bool {
        let day = usize::from(weekday.to_monday_zero_offset().unsigned_abs());
        let previous = (day + 6) % 7;
        if self.start < self.end {
            return self.days[day] && self.start <= minute && minute < self.end;
        }
        // Crosses midnight: the evening part on a listed day, the morning
        // part on the day after one.
        (self.days[day] && minute >= self.start) || (self.days[previous] && minute < self.end)
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }
}

fn parse_days(text: &str) -> Result<[bool; 7], WindowError> {
    let mut days = [false; 7];
    for part in text.split(',') {
        match part.split_once('-') {
            None => days[day_index(part)?] = true,
            Some((first, last)) => {
                let (first, last) = (day_index(first)?, day_index(last)?);
                let mut day = first;
                loop {
                    days[day] = true;
                    if day == last {
                        break;
                    }
                    day = (day + 1) % 7;
                }
            }
        }
    }
    Ok(days)
}

fn day_index(text: &str) -> Result<usize, WindowError> {
    DAY_NAMES
        .iter()
        .position(|name| name.eq_ignore_ascii_case(text.trim()))
        .ok_or_else(|| WindowError::Day(text.to_owned()))
}

/// Parses `HH:MM`; `24:00` only as an end.
fn parse_time(text: &str, is_end: bool) -> Result<u16, WindowError> {
    let invalid = || WindowError::Time(text.to_owned());
    let (hours, minutes) = text.trim().split_once(':').ok_or_else(invalid)?;
    let two_digits = |part: &str| part.len() == 2 && part.bytes().all(|b| b.is_ascii_digit());
    if !two_digits(hours) || !two_digits(minutes) {
        return Err(invalid());
    }
    let hours: u16 = hours.parse().map_err(|_| invalid())?;
    let minutes: u16 = minutes.parse().map_err(|_| invalid())?;
    let total = hours * 60 + minutes;
    let valid = minutes < 60 && (total < DAY_MINUTES || (is_end && total == DAY_MINUTES));
    if !valid {
        return Err(invalid());
    }
    Ok(total)
}

// === impl Schedule ===

impl Schedule {
    /// Builds a schedule from window texts and an IANA time zone name,
    /// looked up in the system tz database.
    pub fn new(windows: Vec<Window>, timezone_name: &str) -> Result<Self, WindowError> {
        let timezone = TimeZone::get(timezone_name).map_err(|_| WindowError::TimeZone(timezone_name.to_owned()))?;
        Ok(Self { windows, timezone, timezone_name: timezone_name.to_owned() })
    }

    /// Tells whether `now` falls inside one of the windows. An instant
    /// outside jiff's range (beyond year 9999) is outside every window.
    pub fn contains(&self, now: SystemTime) -> bool {
        let Ok(timestamp) = Timestamp::try_from(now) else {
            return false;
        };
        let local = timestamp.to_zoned(self.timezone.clone());
        let minute = u16::try_from(local.hour()).unwrap_or(0) * 60 + u16::try_from(local.minute()).unwrap_or(0);
        self.windows.iter().any(|window| window.contains(local.weekday(), minute))
    }

    pub fn windows(&self) -> &[Window] {
        &self.windows
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let windows: Vec<&str> = self.windows.iter().map(Window::as_str).collect();
        write!(f, "hours [{}] in {}", windows.join(", "), self.timezone_name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> SystemTime {
        let timestamp: Timestamp = text.parse().expect("valid timestamp");
        SystemTime::from(timestamp)
    }

    fn schedule(windows: &[&str], zone: &str) -> Schedule {
        let windows = windows.iter().map(|w| Window::parse(w).expect("valid window")).collect();
        Schedule::new(windows, zone).expect("known zone")
    }

    #[test]
    fn weekday_window_bounds() {
        let office = schedule(&["Mon-Fri 08:00-18:00"], "UTC");
        // 2026-12-07 is a Monday.
        assert!(office.contains(at("2026-12-07T08:00:00Z")));
        assert!(office.contains(at("2026-12-07T17:59:59Z")));
        assert!(!office.contains(at("2026-12-07T18:00:00Z")));
        assert!(!office.contains(at("2026-12-07T07:59:59Z")));
        assert!(!office.contains(at("2026-12-12T10:00:00Z")), "Saturday");
    }

    #[test]
    fn window_crossing_midnight() {
        let night = schedule(&["Fri 22:00-06:00"], "UTC");
        assert!(night.contains(at("2026-12-11T23:00:00Z")), "Friday evening");
        assert!(night.contains(at("2026-12-12T05:59:00Z")), "Saturday morning");
        assert!(!night.contains(at("2026-12-12T06:00:00Z")));
        assert!(!night.contains(at("2026-12-11T05:00:00Z")), "Friday morning follows Thursday");
        assert!(!night.contains(at("2026-12-12T23:00:00Z")), "Saturday evening");
    }

    #[test]
    fn day_range_across_week_end() {
        let window = Window::parse("Sat-Mon 00:00-24:00").unwrap();
        assert_eq!(window.days, [true, false, false, false, false, true, true]);
    }

    #[test]
    fn time_zone_follows_daylight_saving() {
        let office = schedule(&["Mon-Fri 08:00-18:00"], "Europe/Brussels");
        // Winter, UTC+1: 07:30 UTC is 08:30 in Brussels.
        assert!(office.contains(at("2026-12-07T07:30:00Z")));
        assert!(!office.contains(at("2026-12-07T17:30:00Z")));
        // Summer, UTC+2: 06:30 UTC is 08:30, 16:30 UTC is 18:30.
        assert!(office.contains(at("2026-07-06T06:30:00Z")));
        assert!(!office.contains(at("2026-07-06T16:30:00Z")));
    }

    #[test]
    fn invalid_windows_are_rejected() {
        assert_eq!(Window::parse("Mon-Fri"), Err(WindowError::Shape("Mon-Fri".to_owned())));
        assert_eq!(Window::parse("Mo 08:00-18:00"), Err(WindowError::Day("Mo".to_owned())));
        assert_eq!(Window::parse("Mon 8:00-18:00"), Err(WindowError::Time("8:00".to_owned())));
        assert_eq!(Window::parse("Mon 24:00-18:00"), Err(WindowError::Time("24:00".to_owned())));
        assert_eq!(Window::parse("Mon 08:60-18:00"), Err(WindowError::Time("08:60".to_owned())));
        assert_eq!(Window::parse("Mon 08:00-08:00"), Err(WindowError::Empty("Mon 08:00-08:00".to_owned())));
    }

    #[test]
    fn unknown_zone_is_rejected() {
        let error = Schedule::new(Vec::new(), "Europe/Nowhere").unwrap_err();
        assert_eq!(error, WindowError::TimeZone("Europe/Nowhere".to_owned()));
    }
}
