//! Go-style durations (`90s`, `5m`, `1h30m`, `1.5h`, `250ms`), as users write them in annotations,
//! `spec.renewal.renewBefore` and flags. Parsed with checked integer arithmetic: any text a user can write
//! yields a value or an error, never a panic or an overflow.

use std::time::Duration;

/// The longest duration accepted: Go's own limit (the nanoseconds of an `int64`, about 292 years).
pub const MAX_DURATION: Duration = Duration::from_nanos(i64::MAX as u64);

/// Why a text is not a duration.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// Empty text.
    #[error("is empty; write a duration such as 30s, 10m or 1h30m")]
    Empty,
    /// Something other than `<number><unit>` pairs.
    #[error("\"{0}\" is not a duration; write a number and a unit (ns, us, ms, s, m, h), such as 30s, 10m or 1h30m")]
    Malformed(String),
    /// Longer than [`MAX_DURATION`].
    #[error("\"{0}\" is longer than the 2562047h (about 292 years) a duration may be")]
    TooLong(String),
}

/// Parses a Go duration such as `90s`, `5m`, `1h30m`, `1.5h`, `250ms`.
pub fn parse_go_duration(text: &str) -> Result<Duration, DurationError> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(DurationError::Empty);
    }
    let malformed = || DurationError::Malformed(trimmed.to_string());
    let too_long = || DurationError::TooLong(trimmed.to_string());
    let mut rest = trimmed;
    let mut total_nanos: u128 = 0;
    while !rest.is_empty() {
        let number_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(malformed)?;
        let (whole, fraction) = match rest[..number_end].split_once('.') {
            Some((w, f)) => (w, f),
            None => (&rest[..number_end], ""),
        };
        if (whole.is_empty() && fraction.is_empty()) || fraction.contains('.') {
            return Err(malformed());
        }
        rest = &rest[number_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit_nanos: u128 = match &rest[..unit_end] {
            "ns" => 1,
            "us" | "µs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => return Err(malformed()),
        };
        rest = &rest[unit_end..];
        // Digits beyond what u128 holds are certainly too long; a fraction needs only its first 20 digits.
        let whole_value: u128 = if whole.is_empty() {
            0
        } else {
            whole.parse().map_err(|_| too_long())?
        };
        let mut part = whole_value.checked_mul(unit_nanos).ok_or_else(too_long)?;
        let mut scale = unit_nanos;
        for digit in fraction.bytes().take(20) {
            scale /= 10;
            part = part
                .checked_add(u128::from(digit - b'0') * scale)
                .ok_or_else(too_long)?;
        }
        total_nanos = total_nanos.checked_add(part).ok_or_else(too_long)?;
        if total_nanos > MAX_DURATION.as_nanos() {
            return Err(too_long());
        }
    }
    let nanos = u64::try_from(total_nanos).map_err(|_| too_long())?;
    Ok(Duration::from_nanos(nanos))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        assert_eq!(parse_go_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_go_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_go_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_go_duration(".5m"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_go_duration("2562047h"), Ok(Duration::from_secs(2_562_047 * 3600)));
        assert!(matches!(parse_go_duration("5"), Err(DurationError::Malformed(_))));
        assert!(matches!(parse_go_duration("5x"), Err(DurationError::Malformed(_))));
        assert!(matches!(parse_go_duration("1..5s"), Err(DurationError::Malformed(_))));
        assert!(matches!(parse_go_duration(".s"), Err(DurationError::Malformed(_))));
        assert_eq!(parse_go_duration(" "), Err(DurationError::Empty));
    }

    #[test]
    fn any_text_parses_or_is_refused_and_sums_round_trip() {
        let mut g = crate::fuzz::Gen::new(1);
        let pieces = [
            "1", "0", ".", "5", "h", "m", "s", "ms", "us", "µs", "ns", "-", " ", "+", "e",
        ];
        for _ in 0..crate::fuzz::CASES {
            let text = g.text(&pieces, 10);
            if let Ok(d) = parse_go_duration(&text) {
                assert!(d <= MAX_DURATION, "{text:?}");
            }
        }
        // Property: "<h>h<m>m<s>s" is h·3600 + m·60 + s seconds.
        for seed in 0..crate::fuzz::CASES as u64 {
            let mut rng = fastrand::Rng::with_seed(seed);
            let (h, m, s) = (rng.u64(..100_000), rng.u64(..100_000), rng.u64(..100_000));
            assert_eq!(
                parse_go_duration(&format!("{h}h{m}m{s}s")),
                Ok(Duration::from_secs(h * 3600 + m * 60 + s))
            );
        }
    }

    #[test]
    fn any_length_of_digits_is_an_error_not_a_panic() {
        for text in [
            "99999999999999999999h",
            "2562048h",
            "999999999999999999999999999999999999999999999ns",
            "1e400h",
        ] {
            assert!(parse_go_duration(text).is_err(), "{text}");
        }
        let many = format!("{}h", "9".repeat(5000));
        assert!(matches!(parse_go_duration(&many), Err(DurationError::TooLong(_))));
        let long_fraction = format!("1.{}s", "9".repeat(5000));
        assert!(parse_go_duration(&long_fraction).is_ok());
    }
}
