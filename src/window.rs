//! Response windows and durations as people write them in rules and config:
//! `30s`, `30m`, `2h`, `1d`, and business days (`1bd`). This module owns their
//! parsing and their canonical spelling. It must never read a clock or know
//! what a business day means in hours: turning `1bd` into an instant needs the
//! `[business_hours]` calendar, which belongs to whoever schedules expiry.

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
const DURATION_FORMS: &str = "a positive whole number followed by s, m, h or d (e.g. \"30s\", \"120s\", \"30m\", \"2h\", \"1d\")";

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
    parse_fixed(s).ok_or_else(|| format!("invalid duration {s:?}: expected {DURATION_FORMS}"))
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
}
