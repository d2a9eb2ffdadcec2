//! Response windows and durations as people write them in rules and config:
//! `30s`, `30m`, `2h`, `1d`, and business days (`1bd`). This module owns their
//! parsing, their canonical spelling, and turning a window opened at an
//! instant into the instant it ends, on a [`WorkingClock`] built from
//! `[business_hours]`. It never reads the clock itself: callers pass `now`.

use std::fmt;
use std::time::Duration;

/// How long a held request may wait for a human before it expires unsent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Window {
    /// Wall-clock time, whatever the day or hour.
    Fixed(Duration),
    /// Counted in the configured business hours, so a Friday-evening hold does
    /// not expire before anyone is at work.
    BusinessDays(u32),
}

const WINDOW_FORMS: &str = "a positive whole number followed by s, m, h, d or bd \
     (e.g. \"30m\", \"2h\", \"1d\", \"1bd\")";
const DURATION_FORMS: &str = "a positive whole number followed by ms, s, m, h or d (e.g. \"500ms\", \"30s\", \"30m\", \"2h\", \"1d\")";

impl Window {
    /// Parses `30s`, `30m`, `2h`, `1d` or `1bd`; zero is refused because a
    /// window that has already ended would expire every hold unseen.
    pub fn parse(s: &str) -> Result<Window, String> {
        let invalid = || format!("invalid window {s:?}: expected {WINDOW_FORMS}");
        if let Some(digits) = s.strip_suffix("bd") {
            let days = parse_count(digits).ok_or_else(invalid)?;
            let days = u32::try_from(days).map_err(|_| invalid())?;
            return Ok(Window::BusinessDays(days));
        }
        parse_fixed(s).map(Window::Fixed).ok_or_else(invalid)
    }

    /// The wall-clock length, when it does not depend on a calendar.
    pub fn fixed(&self) -> Option<Duration> {
        match self {
            Window::Fixed(d) => Some(*d),
            Window::BusinessDays(_) => None,
        }
    }
}

impl fmt::Display for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Window::Fixed(d) => write_duration(f, *d),
            Window::BusinessDays(n) => write!(f, "{n}bd"),
        }
    }
}

/// Parses `30s`, `120s`, `30m`, `2h` or `1d`. Business days are refused: the
/// callers (escalation delays, wait caps) need a length, not a calendar.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    if s.ends_with("bd") {
        return Err(format!(
            "invalid duration {s:?}: business days are only accepted for a window; expected {DURATION_FORMS}"
        ));
    }
    // Milliseconds suit timeouts and retry delays, never a window.
    let millis = s.strip_suffix("ms").and_then(parse_count);
    millis
        .map(Duration::from_millis)
        .or_else(|| parse_fixed(s))
        .ok_or_else(|| format!("invalid duration {s:?}: expected {DURATION_FORMS}"))
}

/// The canonical spelling of a duration, in the largest unit that divides it
/// exactly (`7200s` → `2h`, `5400s` → `90m`), so the same length always reads
/// the same in tables and audit records.
pub fn format_duration(d: Duration) -> String {
    struct Show(Duration);
    impl fmt::Display for Show {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write_duration(f, self.0)
        }
    }
    Show(d).to_string()
}

fn write_duration(f: &mut fmt::Formatter<'_>, d: Duration) -> fmt::Result {
    if d.subsec_nanos() != 0 {
        // Not producible by the parser; still print something truthful.
        return write!(f, "{d:?}");
    }
    let secs = d.as_secs();
    if secs == 0 {
        return write!(f, "0s");
    }
    let (size, unit) = [(86_400, "d"), (3_600, "h"), (60, "m")]
        .into_iter()
        .find(|&(size, _)| secs.checked_rem(size) == Some(0))
        .unwrap_or((1, "s"));
    write!(f, "{}{unit}", secs / size)
}

fn parse_fixed(s: &str) -> Option<Duration> {
    let unit_at = s.len().checked_sub(1)?;
    let (digits, unit) = s.split_at_checked(unit_at)?;
    let scale = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        _ => return None,
    };
    let secs = parse_count(digits)?.checked_mul(scale)?;
    Some(Duration::from_secs(secs))
}

/// A positive whole number in plain ASCII digits: no sign, no spaces, no
/// fractions, so every accepted spelling has exactly one meaning.
fn parse_count(digits: &str) -> Option<u64> {
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    (n > 0).then_some(n)
}

/// The working week a business-day window counts in: which weekdays work,
/// the working hours on them, and the time zone they are read in.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkingClock {
    pub tz: jiff::tz::TimeZone,
    /// Monday = 0.
    pub days: [bool; 7],
    /// Minutes after midnight, `start < end`.
    pub start: u16,
    pub end: u16,
}

impl Default for WorkingClock {
    /// Monday to Friday, 09:00 to 17:00 UTC.
    fn default() -> WorkingClock {
        WorkingClock {
            tz: jiff::tz::TimeZone::UTC,
            days: [true, true, true, true, true, false, false],
            start: 9 * 60,
            end: 17 * 60,
        }
    }
}

impl Window {
    /// When a window opened at `from` ends.
    ///
    /// A business-day window ends at the same working-clock point N working
    /// days later: a request at Wednesday 10:00 with `1bd` ends Thursday
    /// 10:00. Outside working hours the clock stands still at the end of the
    /// last working period, so a request on Saturday, or Monday before
    /// opening, with `1bd` ends at the close of the next working day
    /// (Monday 17:00). Times are read as wall-clock times in the zone, so a
    /// daylight-saving change in between keeps 10:00 at 10:00; a wall-clock
    /// time that does not exist that day resolves forward.
    pub fn ends_at(&self, from: jiff::Timestamp, clock: &WorkingClock) -> jiff::Timestamp {
        match self {
            Window::Fixed(d) => {
                let d = jiff::SignedDuration::try_from(*d).unwrap_or(jiff::SignedDuration::MAX);
                from.checked_add(d).unwrap_or(jiff::Timestamp::MAX)
            }
            Window::BusinessDays(n) => clock.add_business_days(from, *n),
        }
    }
}

impl WorkingClock {
    fn works(&self, date: jiff::civil::Date) -> bool {
        self.days[date.weekday().to_monday_zero_offset() as usize]
    }

    fn step(&self, date: jiff::civil::Date, forward: bool) -> jiff::civil::Date {
        let mut d = date;
        // At most a week away, since validation keeps one working day.
        for _ in 0..7 {
            d = if forward { d.tomorrow() } else { d.yesterday() }.unwrap_or(d);
            if self.works(d) {
                return d;
            }
        }
        d
    }

    fn add_business_days(&self, from: jiff::Timestamp, n: u32) -> jiff::Timestamp {
        if !self.days.iter().any(|d| *d) {
            return from;
        }
        let local = from.to_zoned(self.tz.clone()).datetime();
        let date = local.date();
        let minute = i32::from(local.hour()) * 60 + i32::from(local.minute());
        let (start, end) = (i32::from(self.start), i32::from(self.end));
        // The working-clock point `from` stands at: (date, time of day).
        let (mut date, time) = if self.works(date) && minute >= start && minute < end {
            (date, local.time())
        } else if self.works(date) && minute >= end {
            (date, clock_time(end))
        } else {
            (self.step(date, false), clock_time(end))
        };
        for _ in 0..n {
            date = self.step(date, true);
        }
        date.to_datetime(time)
            .to_zoned(self.tz.clone())
            .map(|z| z.timestamp())
            .unwrap_or(from)
    }
}

fn clock_time(minutes: i32) -> jiff::civil::Time {
    if minutes >= 24 * 60 {
        return jiff::civil::Time::MAX;
    }
    jiff::civil::Time::new((minutes / 60) as i8, (minutes % 60) as i8, 0, 0)
        .unwrap_or(jiff::civil::Time::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_in_every_accepted_unit() {
        assert_eq!(
            Window::parse("30s"),
            Ok(Window::Fixed(Duration::from_secs(30)))
        );
        assert_eq!(
            Window::parse("30m"),
            Ok(Window::Fixed(Duration::from_secs(1_800)))
        );
        assert_eq!(
            Window::parse("2h"),
            Ok(Window::Fixed(Duration::from_secs(7_200)))
        );
        assert_eq!(
            Window::parse("1d"),
            Ok(Window::Fixed(Duration::from_secs(86_400)))
        );
        assert_eq!(Window::parse("1bd"), Ok(Window::BusinessDays(1)));
        assert_eq!(Window::parse("2bd"), Ok(Window::BusinessDays(2)));
    }

    #[test]
    fn window_prints_in_its_largest_exact_unit() {
        for (written, canonical) in [
            ("2h", "2h"),
            ("120m", "2h"),
            ("90m", "90m"),
            ("5400s", "90m"),
            ("48h", "2d"),
            ("45s", "45s"),
            ("1bd", "1bd"),
        ] {
            let window = Window::parse(written).unwrap_or_else(|e| panic!("{written}: {e}"));
            assert_eq!(window.to_string(), canonical, "{written}");
            assert_eq!(
                Window::parse(canonical),
                Ok(window),
                "round trip of {written}"
            );
        }
    }

    #[test]
    fn malformed_windows_say_what_is_accepted() {
        for bad in [
            "",
            "2",
            "h",
            "0h",
            "0bd",
            "-1h",
            "+1h",
            "1.5h",
            " 2h",
            "2h ",
            "2 h",
            "2H",
            "2w",
            "1ms",
            "bd",
            "99999999999bd",
            "99999999999999999999s",
            "18446744073709551615d",
        ] {
            let err = Window::parse(bad).expect_err(bad);
            assert!(err.contains("s, m, h, d or bd"), "{bad}: {err}");
            assert!(err.contains(&format!("{bad:?}")), "{bad}: {err}");
        }
    }

    #[test]
    fn durations_accept_the_fixed_units_only() {
        assert_eq!(parse_duration("120s"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("30m"), Ok(Duration::from_secs(1_800)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7_200)));
        assert_eq!(parse_duration("1d"), Ok(Duration::from_secs(86_400)));
        let err = parse_duration("1bd").expect_err("business days are not a duration");
        assert!(err.contains("business days"), "{err}");
        for bad in ["0s", "", "s", "1", "1.5m", "1 m", "-5s"] {
            let err = parse_duration(bad).expect_err(bad);
            assert!(err.contains("s, m, h or d"), "{bad}: {err}");
        }
    }

    #[test]
    fn durations_print_canonically() {
        assert_eq!(format_duration(Duration::from_secs(3_600)), "1h");
        assert_eq!(format_duration(Duration::from_secs(120)), "2m");
        assert_eq!(format_duration(Duration::from_secs(61)), "61s");
        assert_eq!(format_duration(Duration::ZERO), "0s");
        assert_eq!(format_duration(Duration::from_millis(1_500)), "1.5s");
    }

    mod business_days {
        use super::super::*;
        use jiff::Timestamp;

        fn at(s: &str) -> Timestamp {
            s.parse().unwrap()
        }

        fn paris() -> WorkingClock {
            WorkingClock {
                tz: jiff::tz::TimeZone::get("Europe/Paris").unwrap(),
                ..WorkingClock::default()
            }
        }

        #[test]
        fn within_hours_ends_at_the_same_time_next_working_day() {
            let w = Window::BusinessDays(1);
            let c = WorkingClock::default();
            // Wednesday 10:00 -> Thursday 10:00.
            assert_eq!(
                w.ends_at(at("2026-11-25T10:00:00Z"), &c),
                at("2026-11-26T10:00:00Z")
            );
            // Friday 16:00 -> Monday 16:00, across the weekend.
            assert_eq!(
                w.ends_at(at("2026-11-27T16:00:00Z"), &c),
                at("2026-11-30T16:00:00Z")
            );
            // Two business days from Thursday 11:30 -> Monday 11:30.
            assert_eq!(
                Window::BusinessDays(2).ends_at(at("2026-11-26T11:30:00Z"), &c),
                at("2026-11-30T11:30:00Z")
            );
        }

        #[test]
        fn outside_hours_the_clock_stands_at_the_last_close() {
            let w = Window::BusinessDays(1);
            let c = WorkingClock::default();
            // Saturday -> close of Monday.
            assert_eq!(
                w.ends_at(at("2026-11-28T12:00:00Z"), &c),
                at("2026-11-30T17:00:00Z")
            );
            // Friday evening -> close of Monday.
            assert_eq!(
                w.ends_at(at("2026-11-27T18:00:00Z"), &c),
                at("2026-11-30T17:00:00Z")
            );
            // Monday before opening -> close of Monday.
            assert_eq!(
                w.ends_at(at("2026-11-30T07:00:00Z"), &c),
                at("2026-11-30T17:00:00Z")
            );
        }

        #[test]
        fn daylight_saving_change_keeps_the_wall_clock_time() {
            let w = Window::BusinessDays(1);
            // Friday 27 March 2026 10:00 CET (09:00 UTC); clocks go forward
            // on Sunday 29 March; Monday 10:00 CEST is 08:00 UTC.
            assert_eq!(
                w.ends_at(at("2026-03-27T09:00:00Z"), &paris()),
                at("2026-03-30T08:00:00Z")
            );
            // And back in October: Friday 23 Oct 10:00 CEST -> Monday 26 Oct 10:00 CET.
            assert_eq!(
                w.ends_at(at("2026-10-23T08:00:00Z"), &paris()),
                at("2026-10-26T09:00:00Z")
            );
        }

        #[test]
        fn time_zone_decides_what_day_it_is() {
            // Saturday 00:30 in Tokyo is still Friday 15:30 UTC.
            let tokyo = WorkingClock {
                tz: jiff::tz::TimeZone::get("Asia/Tokyo").unwrap(),
                ..WorkingClock::default()
            };
            let w = Window::BusinessDays(1);
            // In UTC it is Friday within hours: ends Monday 15:30 UTC.
            assert_eq!(
                w.ends_at(at("2026-11-27T15:30:00Z"), &WorkingClock::default()),
                at("2026-11-30T15:30:00Z")
            );
            // In Tokyo it is Saturday: ends at the close of Monday, 17:00 JST.
            assert_eq!(
                w.ends_at(at("2026-11-27T15:30:00Z"), &tokyo),
                at("2026-11-30T08:00:00Z")
            );
        }

        #[test]
        fn fixed_windows_are_plain_durations() {
            let w = Window::Fixed(Duration::from_secs(2 * 3600));
            assert_eq!(
                w.ends_at(at("2026-11-28T12:00:00Z"), &WorkingClock::default()),
                at("2026-11-28T14:00:00Z")
            );
        }
    }
}
