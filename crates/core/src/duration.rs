//! Go's duration syntax (`10s`, `1m30s`, `250ms`, `1.5h`), which ToolHive's variables and
//! configuration keys use: parsed exactly as Go's `time.ParseDuration` does, so a value
//! that works for ToolHive works for hale and one that fails there fails here.

use std::fmt;
use std::time::Duration;

/// Why a duration string was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DurationError {
    input: String,
    reason: &'static str,
}

impl fmt::Display for DurationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid duration {:?}: {} (expected Go syntax such as 10s, 1m30s, 250ms or 1h)",
            self.input, self.reason
        )
    }
}

impl std::error::Error for DurationError {}

/// Parses a Go duration. Negative durations are refused (nothing in hale can wait a
/// negative time); `0` is accepted, as in Go, and left to the caller to judge.
///
/// ```
/// use hale_core::parse_go_duration;
/// use std::time::Duration;
///
/// assert_eq!(parse_go_duration("1m30s").unwrap(), Duration::from_secs(90));
/// assert_eq!(parse_go_duration("250ms").unwrap(), Duration::from_millis(250));
/// assert_eq!(parse_go_duration("1.5h").unwrap(), Duration::from_secs(5400));
/// assert!(parse_go_duration("10").is_err()); // Go wants a unit
/// ```
pub fn parse_go_duration(input: &str) -> Result<Duration, DurationError> {
    let err = |reason| DurationError {
        input: input.to_string(),
        reason,
    };
    let mut s = input;
    if let Some(rest) = s.strip_prefix('-') {
        if rest.chars().all(|c| c == '0') && !rest.is_empty() {
            return Ok(Duration::ZERO);
        }
        return Err(err("negative durations are not allowed"));
    }
    s = s.strip_prefix('+').unwrap_or(s);
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.is_empty() {
        return Err(err("empty"));
    }
    let mut total_nanos: u128 = 0;
    while !s.is_empty() {
        let digits_end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let (whole, rest) = s.split_at(digits_end);
        let (frac, rest) = match rest.strip_prefix('.') {
            Some(r) => {
                let end = r.find(|c: char| !c.is_ascii_digit()).unwrap_or(r.len());
                r.split_at(end)
            }
            None => ("", rest),
        };
        if whole.is_empty() && frac.is_empty() {
            return Err(err("expected a number"));
        }
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let (unit, rest) = rest.split_at(unit_end);
        let unit_nanos: u128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            "" => return Err(err("missing unit (ns, us, ms, s, m or h)")),
            _ => return Err(err("unknown unit (expected ns, us, ms, s, m or h)")),
        };
        let whole: u128 = if whole.is_empty() {
            0
        } else {
            whole.parse().map_err(|_| err("number too large"))?
        };
        let mut nanos = whole
            .checked_mul(unit_nanos)
            .ok_or_else(|| err("too large"))?;
        // The fraction, digit by digit, as Go does (precision beyond 1 ns is dropped).
        let mut scale = unit_nanos;
        for digit in frac.bytes().map(|b| u128::from(b - b'0')) {
            scale /= 10;
            if scale == 0 {
                break;
            }
            nanos += digit * scale;
        }
        total_nanos = total_nanos
            .checked_add(nanos)
            .ok_or_else(|| err("too large"))?;
        s = rest;
    }
    // Go's durations are int64 nanoseconds.
    if total_nanos > i64::MAX as u128 {
        return Err(err("too large (more than about 292 years)"));
    }
    Ok(Duration::from_nanos(total_nanos as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_what_go_accepts() {
        let ok = [
            ("10s", Duration::from_secs(10)),
            ("0", Duration::ZERO),
            ("0s", Duration::ZERO),
            ("-0", Duration::ZERO),
            ("+5s", Duration::from_secs(5)),
            ("1m30s", Duration::from_secs(90)),
            ("1h2m3s4ms5us6ns", Duration::new(3723, 4_005_006)),
            ("250ms", Duration::from_millis(250)),
            ("1.5s", Duration::from_millis(1500)),
            (".5s", Duration::from_millis(500)),
            ("1.s", Duration::from_secs(1)),
            ("10µs", Duration::from_micros(10)),
            ("2h", Duration::from_secs(7200)),
        ];
        for (input, expected) in ok {
            assert_eq!(parse_go_duration(input), Ok(expected), "{input}");
        }
    }

    #[test]
    fn refuses_what_go_refuses_and_negatives() {
        for input in [
            "",
            "10",
            "s",
            "1x",
            "1 s",
            "-5s",
            "ten seconds",
            "1.5",
            ".s",
            "3d",
            "9999999999h",
        ] {
            let err = parse_go_duration(input).unwrap_err();
            assert!(
                err.to_string().contains("expected Go syntax"),
                "{input}: {err}"
            );
        }
        assert!(
            parse_go_duration("-5s")
                .unwrap_err()
                .to_string()
                .contains("negative")
        );
        assert!(
            parse_go_duration("10")
                .unwrap_err()
                .to_string()
                .contains("missing unit")
        );
    }
}
