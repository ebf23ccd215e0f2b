//! `--since` and `--until`: which directories and files can hold entries in range, read off
//! the load balancers' layout, and which entries are in range, by their own timestamp.
//!
//! The layout is `…/yyyy/mm/dd/…_<end>_…` (see [`crate::mock_elb`]), where `<end>` is the end
//! of the file's logging interval (`20261201T1205Z`) and the day is the day the file was
//! delivered: the end's day, or the day after for a file delivered just past midnight. A file
//! holds the requests of the interval before its end, which is 5 minutes for ALB (its names
//! carry `_app.`) and 5 or 60 for Classic (60 assumed). Names or directories that do not
//! follow the layout are always read; their entries are still filtered by time.
//!
//! Over 400 lines with its tests: pruning directories and files and filtering entries are one
//! reading of the layout, kept together.

use time::{Date, Month, OffsetDateTime};

const MICROS_PER_SECOND: i64 = 1_000_000;
const MINUTE: i64 = 60 * MICROS_PER_SECOND;
const DAY: i64 = 24 * 60 * MINUTE;
const ALB_INTERVAL: i64 = 5 * MINUTE;
/// Classic writes every 5 or every 60 minutes; the name does not say which.
const CLASSIC_INTERVAL: i64 = 60 * MINUTE;
/// End times in names are cut to the minute.
const NAME_SLACK: i64 = MINUTE;

/// A point in time, in microseconds since the Unix epoch (UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Timestamp(pub i64);

/// "Now", for relative times and `--follow`'s listings: the system clock, or a start that a
/// test pins (decode's hidden `--now`), running on from there at the system clock's pace.
#[derive(Debug, Clone, Copy, Default)]
pub struct Clock {
    offset_micros: i64,
}

impl Clock {
    pub fn starting_at(start: Timestamp) -> Self {
        Clock {
            offset_micros: start.0.saturating_sub(Self::system_now().0),
        }
    }

    pub fn now(&self) -> Timestamp {
        Timestamp(Self::system_now().0.saturating_add(self.offset_micros))
    }

    fn system_now() -> Timestamp {
        Timestamp::from_datetime(OffsetDateTime::now_utc())
    }
}

/// A time as given on the command line: a point, or a span before "now".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeSpec {
    At(Timestamp),
    Ago { micros: i64 },
}

impl TimeSpec {
    pub fn resolve(self, now: Timestamp) -> Timestamp {
        match self {
            TimeSpec::At(at) => at,
            TimeSpec::Ago { micros } => now.minus_micros(micros),
        }
    }
}

impl Timestamp {
    pub fn from_datetime(at: OffsetDateTime) -> Self {
        let micros = at.unix_timestamp_nanos() / 1000;
        Timestamp(i64::try_from(micros).unwrap_or(i64::MAX))
    }

    pub fn minus_micros(self, micros: i64) -> Self {
        Timestamp(self.0.saturating_sub(micros))
    }
}

/// Entries with `since <= time < until`; either end may be open.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Range {
    pub since: Option<Timestamp>,
    pub until: Option<Timestamp>,
}

impl Range {
    pub fn is_unbounded(&self) -> bool {
        self.since.is_none() && self.until.is_none()
    }

    /// Whether an entry logged at `time` (`2026-12-01T12:03:04.123456Z`) is in range; `None`
    /// if the time cannot be read.
    pub fn contains_entry(&self, time: &[u8]) -> Option<bool> {
        if self.is_unbounded() {
            return Some(true);
        }
        let at = entry_time(time)?;
        Some(
            self.since.is_none_or(|since| at >= since) && self.until.is_none_or(|until| at < until),
        )
    }

    /// Whether the directory at `path` (components, last one its name) can hold files with
    /// entries in range: always, unless its last components are a year, month or day.
    pub fn admits_dir<'a>(&self, path: impl DoubleEndedIterator<Item = &'a str>) -> bool {
        if self.is_unbounded() {
            return true;
        }
        let Some((from, to)) = dated_dir_entries(path) else {
            return true;
        };
        self.overlaps(from, to)
    }

    /// Whether a file named `name` can hold entries in range, judged by the end time in its
    /// name; names without one are always read.
    pub fn admits_file(&self, name: &str) -> bool {
        if self.is_unbounded() {
            return true;
        }
        let Some(end) = name_end_time(name) else {
            return true;
        };
        let interval = if name.contains("_app.") {
            ALB_INTERVAL
        } else {
            CLASSIC_INTERVAL
        };
        self.overlaps(end - interval - NAME_SLACK, end + NAME_SLACK + 1)
    }

    /// Whether `[from, to)` and the range overlap.
    fn overlaps(&self, from: i64, to: i64) -> bool {
        self.since.is_none_or(|since| to > since.0) && self.until.is_none_or(|until| from < until.0)
    }
}

/// The `[from, to)` of the log times that the files under a year, month or day directory (the
/// last components of `path`) can hold; `None` for any other directory.
pub(super) fn dated_dir_entries<'a>(
    path: impl DoubleEndedIterator<Item = &'a str>,
) -> Option<(i64, i64)> {
    let (start, end) = calendar_span(path)?;
    // Its files end in [start - 1 day, end): delivered on their end's day or the next.
    Some((
        start - DAY - CLASSIC_INTERVAL - NAME_SLACK,
        end + NAME_SLACK,
    ))
}

/// The `[start, end)` of the year, month or day named by the last components of a path.
pub(super) fn calendar_span<'a>(
    path: impl DoubleEndedIterator<Item = &'a str>,
) -> Option<(i64, i64)> {
    // The name first: [name, parent, grandparent], each a number of the width given or None.
    let last: Vec<Option<&str>> = {
        let mut names = path.rev();
        (0..3).map(|_| names.next()).collect()
    };
    let number = |index: usize, width: usize| -> Option<u16> {
        let text = last[index]?;
        (text.len() == width && text.bytes().all(|b| b.is_ascii_digit()))
            .then(|| text.parse().ok())
            .flatten()
    };
    let day_start = |year: u16, month: u16, day: u16| -> Option<i64> {
        let month = Month::try_from(u8::try_from(month).ok()?).ok()?;
        let date =
            Date::from_calendar_date(i32::from(year), month, u8::try_from(day).ok()?).ok()?;
        Some(days_since_epoch(date) * DAY)
    };
    // A name shaped like a date that is not one (2026/02/31, 2026/13) is not a span: None.
    if let (Some(year), Some(month), Some(day)) = (number(2, 4), number(1, 2), number(0, 2)) {
        let start = day_start(year, month, day)?;
        Some((start, start + DAY))
    } else if let (Some(year), Some(month)) = (number(1, 4), number(0, 2)) {
        let (next_year, next_month) = if month == 12 {
            (year + 1, 1)
        } else {
            (year, month + 1)
        };
        Some((
            day_start(year, month, 1)?,
            day_start(next_year, next_month, 1)?,
        ))
    } else {
        let year = number(0, 4)?;
        Some((day_start(year, 1, 1)?, day_start(year + 1, 1, 1)?))
    }
}

fn days_since_epoch(date: Date) -> i64 {
    /// The Julian day number of 1970-01-01.
    const UNIX_EPOCH_JULIAN_DAY: i64 = 2_440_588;
    i64::from(date.to_julian_day()) - UNIX_EPOCH_JULIAN_DAY
}

/// The `_yyyymmddThhmmZ_` end time in a log file's name.
pub(super) fn name_end_time(name: &str) -> Option<i64> {
    name.split('_').find_map(|part| {
        let bytes = part.as_bytes();
        let shaped = bytes.len() == 14
            && bytes[8] == b'T'
            && bytes[13] == b'Z'
            && bytes[..8]
                .iter()
                .chain(&bytes[9..13])
                .all(u8::is_ascii_digit);
        if !shaped {
            return None;
        }
        let field = |range: std::ops::Range<usize>| part.get(range)?.parse::<u8>().ok();
        let year: i32 = part.get(0..4)?.parse().ok()?;
        let date =
            Date::from_calendar_date(year, Month::try_from(field(4..6)?).ok()?, field(6..8)?)
                .ok()?;
        let (hour, minute) = (i64::from(field(9..11)?), i64::from(field(11..13)?));
        (hour < 24 && minute < 60)
            .then(|| days_since_epoch(date) * DAY + hour * 60 * MINUTE + minute * MINUTE)
    })
}

/// An access-log timestamp, `yyyy-mm-ddThh:mm:ss[.ffffff]Z`, in microseconds.
pub(super) fn entry_time(text: &[u8]) -> Option<Timestamp> {
    let digits = |range: std::ops::Range<usize>| -> Option<i64> {
        let part = text.get(range)?;
        part.iter().all(u8::is_ascii_digit).then(|| {
            part.iter()
                .fold(0i64, |value, digit| value * 10 + i64::from(digit - b'0'))
        })
    };
    let separators = [(4, b'-'), (7, b'-'), (10, b'T'), (13, b':'), (16, b':')];
    if separators
        .iter()
        .any(|&(at, expected)| text.get(at) != Some(&expected))
    {
        return None;
    }
    let (year, month, day) = (digits(0..4)?, digits(5..7)?, digits(8..10)?);
    let date = Date::from_calendar_date(
        i32::try_from(year).ok()?,
        Month::try_from(u8::try_from(month).ok()?).ok()?,
        u8::try_from(day).ok()?,
    )
    .ok()?;
    let (hour, minute, second) = (digits(11..13)?, digits(14..16)?, digits(17..19)?);
    if hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let rest = text.get(19..)?;
    let fraction = match rest {
        [b'Z'] => 0,
        [b'.', fraction @ .., b'Z'] if !fraction.is_empty() && fraction.len() <= 9 => {
            let value = digits(20..20 + fraction.len())?;
            // Scaled to microseconds, whatever the number of digits.
            let scale = 10i64.pow(u32::try_from(fraction.len().abs_diff(6)).ok()?);
            if fraction.len() >= 6 {
                value / scale
            } else {
                value * scale
            }
        }
        _ => return None,
    };
    let seconds = days_since_epoch(date) * 86_400 + hour * 3600 + minute * 60 + second;
    Some(Timestamp(seconds * MICROS_PER_SECOND + fraction))
}

/// Parses `--since` and `--until`: RFC 3339 (`2026-12-01T12:00:00Z`, any offset), a UTC date
/// (`2026-12-01`), or a time ago (`90s`, `30m`, `2h`, `1d`, `1w`).
pub fn parse_time(text: &str, now: Timestamp) -> Result<Timestamp, String> {
    parse_time_spec(text).map(|spec| spec.resolve(now))
}

/// `--since`/`--until`'s forms, with a time ago left relative to a "now" given later.
pub fn parse_time_spec(text: &str) -> Result<TimeSpec, String> {
    use time::format_description::well_known::Rfc3339;
    let trimmed = text.trim();
    if let Ok(at) = OffsetDateTime::parse(trimmed, &Rfc3339) {
        return Ok(TimeSpec::At(Timestamp::from_datetime(at)));
    }
    let format = time::macros::format_description!("[year]-[month]-[day]");
    if let Ok(date) = Date::parse(trimmed, &format) {
        return Ok(TimeSpec::At(Timestamp(days_since_epoch(date) * DAY)));
    }
    let split = trimmed
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(split);
    let unit_micros = match unit {
        "s" => MICROS_PER_SECOND,
        "m" => MINUTE,
        "h" => 60 * MINUTE,
        "d" => DAY,
        "w" => 7 * DAY,
        _ => 0,
    };
    match number.parse::<i64>() {
        Ok(count) if unit_micros > 0 => Ok(TimeSpec::Ago {
            micros: count.saturating_mul(unit_micros),
        }),
        _ => Err(format!(
            "`{trimmed}` is not a time such as 2026-12-01T12:00:00Z, 2026-12-01, 30m, 2h or 1d"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> Timestamp {
        parse_time(text, Timestamp(0)).expect("a time")
    }

    fn range(since: &str, until: &str) -> Range {
        Range {
            since: Some(at(since)),
            until: Some(at(until)),
        }
    }

    #[test]
    fn times_are_rfc3339_dates_or_ago() {
        assert_eq!(at("1970-01-01T00:00:01Z"), Timestamp(1_000_000));
        assert_eq!(at("1970-01-01T01:00:01+01:00"), Timestamp(1_000_000));
        assert_eq!(at("1970-01-02"), Timestamp(DAY));
        let now = Timestamp(10 * DAY);
        assert_eq!(parse_time("2h", now), Ok(now.minus_micros(120 * MINUTE)));
        assert_eq!(parse_time("1d", now), Ok(Timestamp(9 * DAY)));
        assert!(parse_time("2 fortnights", now).is_err());
        assert!(parse_time("h", now).is_err());
    }

    #[test]
    fn entries_are_in_range_by_their_own_time() {
        let window = range("2026-12-01T12:00:00Z", "2026-12-01T13:00:00Z");
        assert_eq!(
            window.contains_entry(b"2026-12-01T12:00:00.000000Z"),
            Some(true)
        );
        assert_eq!(
            window.contains_entry(b"2026-12-01T12:59:59.999999Z"),
            Some(true)
        );
        assert_eq!(
            window.contains_entry(b"2026-12-01T13:00:00.000000Z"),
            Some(false)
        );
        assert_eq!(
            window.contains_entry(b"2026-12-01T11:59:59.999999Z"),
            Some(false)
        );
        assert_eq!(window.contains_entry(b"2026-12-01T12:30:00Z"), Some(true));
        assert_eq!(window.contains_entry(b"2026-12-01T12:30:00.5Z"), Some(true));
        assert_eq!(window.contains_entry(b"2026-12-01 12:30:00Z"), None);
        assert_eq!(window.contains_entry(b"2026-13-01T12:30:00Z"), None);
        assert_eq!(
            entry_time(b"1970-01-01T00:00:01.5Z"),
            entry_time(b"1970-01-01T00:00:01.500000000Z")
        );
    }

    #[test]
    fn directories_are_pruned_by_their_date_widened_by_a_day() {
        let window = range("2026-12-01T00:10:00Z", "2026-12-01T02:00:00Z");
        let dir = |path: &'static str| window.admits_dir(path.split('/'));
        assert!(dir("AWSLogs/123/elasticloadbalancing"));
        assert!(dir("logs/2026") && !dir("logs/2025") && !dir("logs/2027"));
        assert!(dir("logs/2026/12") && !dir("logs/2026/11"));
        assert!(dir("logs/2026/12/01"));
        assert!(
            dir("logs/2026/12/02"),
            "files ending Dec 1 may be delivered Dec 2"
        );
        assert!(!dir("logs/2026/12/03") && !dir("logs/2026/11/30"));
        assert!(
            dir("logs/2026/02/31") && dir("logs/2026/13"),
            "not dates: always read"
        );
        let from_dec_2 = Range {
            since: Some(at("2026-12-02T00:00:00Z")),
            until: None,
        };
        assert!(!from_dec_2.admits_dir("2026/11".split('/')));
        assert!(from_dec_2.admits_dir("2026/12/01".split('/')));
    }

    #[test]
    fn files_are_pruned_by_the_end_time_in_their_name_widened_by_the_interval() {
        let window = range("2026-12-01T12:00:00Z", "2026-12-01T13:00:00Z");
        let alb = |end: &str| {
            window.admits_file(&format!(
                "123_elasticloadbalancing_eu-west-1_app.lb.abc_{end}_10.0.0.1_x.log.gz"
            ))
        };
        let classic = |end: &str| {
            window.admits_file(&format!(
                "123_elasticloadbalancing_eu-west-1_lb_{end}_10.0.0.1_x.log"
            ))
        };
        assert!(!alb("20261201T1158Z"));
        assert!(alb("20261201T1159Z"), "cut to the minute");
        assert!(
            alb("20261201T1305Z"),
            "holds requests up to 5 minutes before"
        );
        assert!(!alb("20261201T1307Z"));
        assert!(
            classic("20261201T1359Z"),
            "Classic: up to 60 minutes before"
        );
        assert!(!classic("20261201T1402Z"));
        assert!(window.admits_file("anything-else.log"));
        assert!(window.admits_file("x_20261301T0000Z_y.log"), "not a date");
    }
}
