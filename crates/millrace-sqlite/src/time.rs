//! Timestamps as River's SQLite schema stores them: UTC text, `YYYY-MM-DD HH:MM:SS.SSS`.
//!
//! SQLite has no time type; its date functions compare and produce text in this form
//! (`datetime('now', 'subsec')`), so a timestamp written any other way (RFC 3339 with its `T`
//! and `Z`, say) would store fine and then compare wrongly against `now`. River for Go and
//! River's Rust crate write milliseconds, rounded, in this form; so does Millrace. Reading is
//! lenient, as River's is: text with or without fraction, `T` or offset, Unix seconds as an
//! integer, or a Julian day number as a real.

use jiff::civil::DateTime;
use jiff::tz::TimeZone;
use jiff::{RoundMode, SignedDuration, Timestamp, TimestampRound, Unit};

/// SQL for the current time, in the stored form. SQLite evaluates `now` once per statement
/// step, so every use in one statement sees the same time.
pub(crate) const NOW: &str = "strftime('%Y-%m-%d %H:%M:%f', 'now')";

/// Encodes a timestamp for storage, rounded to the millisecond (half up).
pub(crate) fn encode(t: Timestamp) -> String {
    let rounded = t
        .round(
            TimestampRound::new()
                .smallest(Unit::Millisecond)
                .mode(RoundMode::HalfExpand),
        )
        // Rounding up the last half millisecond of time overflows; truncate that one.
        .unwrap_or(t);
    rounded.strftime("%Y-%m-%d %H:%M:%S%.3f").to_string()
}

/// Decodes stored text: with an offset it is that instant, without one it is UTC.
pub(crate) fn decode_text(text: &str) -> Result<Timestamp, jiff::Error> {
    text.parse::<Timestamp>().or_else(|_| {
        text.parse::<DateTime>()
            .and_then(|dt| dt.to_zoned(TimeZone::UTC))
            .map(|zoned| zoned.timestamp())
    })
}

/// Decodes Unix seconds, as an integer column holds a time.
pub(crate) fn decode_unix(seconds: i64) -> Result<Timestamp, jiff::Error> {
    Timestamp::from_second(seconds)
}

/// Decodes a Julian day number, as a real column holds a time.
pub(crate) fn decode_julian(days: f64) -> Result<Timestamp, jiff::Error> {
    // Julian day 2440587.5 is the Unix epoch.
    SignedDuration::try_from_secs_f64((days - 2_440_587.5) * 86_400.0)
        .and_then(|d| Timestamp::UNIX_EPOCH.checked_add(d))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_milliseconds_rounded_half_up() {
        for (input, expected) in [
            ("2026-01-02T03:04:05Z", "2026-01-02 03:04:05.000"),
            ("2026-01-02T03:04:05.1234Z", "2026-01-02 03:04:05.123"),
            ("2026-01-02T03:04:05.1235Z", "2026-01-02 03:04:05.124"),
            ("2026-01-02T03:04:05.9996Z", "2026-01-02 03:04:06.000"),
            ("1969-12-31T23:59:59.9994Z", "1969-12-31 23:59:59.999"),
        ] {
            assert_eq!(encode(input.parse().unwrap()), expected, "{input}");
        }
    }

    #[test]
    fn decodes_every_stored_form() {
        let expect = |s: &str| s.parse::<Timestamp>().unwrap();
        for (stored, expected) in [
            ("2026-01-02 03:04:05.123", "2026-01-02T03:04:05.123Z"),
            ("2026-01-02 03:04:05", "2026-01-02T03:04:05Z"),
            (
                "2026-01-02T03:04:05.123456789Z",
                "2026-01-02T03:04:05.123456789Z",
            ),
            ("2026-01-02 03:04:05.123+02:00", "2026-01-02T01:04:05.123Z"),
            ("2026-01-02 03:04:05.5", "2026-01-02T03:04:05.5Z"),
        ] {
            assert_eq!(decode_text(stored).unwrap(), expect(expected), "{stored}");
        }
        assert!(decode_text("yesterday").is_err());
        assert_eq!(decode_unix(0).unwrap(), Timestamp::UNIX_EPOCH);
        assert_eq!(decode_julian(2_440_587.5).unwrap(), Timestamp::UNIX_EPOCH);
    }

    #[test]
    fn encoded_text_sorts_as_time() {
        let a = encode("2026-01-02T03:04:05.099Z".parse().unwrap());
        let b = encode("2026-01-02T03:04:05.1Z".parse().unwrap());
        assert!(a < b);
    }
}
