//! The ways a testkit server can misbehave, switchable at run time.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// A fault: what the server does to every MCP request while it is in force.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// The listener is closed and open connections are cut: clients see connection refused.
    Down,
    /// Connections are accepted and requests read, but never answered.
    Hang,
    /// Every answer is delayed by this much.
    Slow(Duration),
    /// Every request is answered with this HTTP status and a plain-text body (429 with
    /// `Retry-After: 2`).
    Status(u16),
    /// Every request is answered 200 with a body that is not JSON.
    Malformed,
    /// Up for the first duration, down for the second, repeating.
    Flap {
        /// Time up in each cycle.
        up: Duration,
        /// Time down in each cycle.
        down: Duration,
    },
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::Down => f.write_str("down"),
            Fault::Hang => f.write_str("hang"),
            Fault::Slow(d) => write!(f, "slow={}", humantime::format_duration(*d)),
            Fault::Status(code) => write!(f, "status={code}"),
            Fault::Malformed => f.write_str("malformed"),
            Fault::Flap { up, down } => write!(
                f,
                "flap={}/{}",
                humantime::format_duration(*up),
                humantime::format_duration(*down)
            ),
        }
    }
}

impl FromStr for Fault {
    type Err = String;

    /// `down`, `hang`, `slow=250ms`, `status=503`, `malformed`, `flap=20s/10s`.
    fn from_str(spec: &str) -> Result<Self, String> {
        let (name, arg) = spec.split_once('=').unwrap_or((spec, ""));
        let duration = |s: &str| {
            humantime::parse_duration(s)
                .map_err(|e| format!("fault {spec:?}: bad duration {s:?}: {e}"))
        };
        match (name, arg) {
            ("down", "") => Ok(Fault::Down),
            ("hang", "") => Ok(Fault::Hang),
            ("malformed", "") => Ok(Fault::Malformed),
            ("slow", d) if !d.is_empty() => Ok(Fault::Slow(duration(d)?)),
            ("status", code) => match code.parse::<u16>() {
                Ok(code @ 100..=599) => Ok(Fault::Status(code)),
                _ => Err(format!(
                    "fault {spec:?}: expected status=CODE with CODE from 100 to 599"
                )),
            },
            ("flap", times) => {
                let (up, down) = times.split_once('/').ok_or_else(|| {
                    format!("fault {spec:?}: expected flap=UP/DOWN, e.g. flap=20s/10s")
                })?;
                Ok(Fault::Flap {
                    up: duration(up)?,
                    down: duration(down)?,
                })
            }
            _ => Err(format!(
                "unknown fault {spec:?}: expected down, hang, slow=DURATION, status=CODE, malformed or flap=UP/DOWN"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_parse_and_print_round_trip() {
        for spec in [
            "down",
            "hang",
            "slow=250ms",
            "status=503",
            "malformed",
            "flap=20s/10s",
        ] {
            let fault: Fault = spec.parse().unwrap();
            assert_eq!(fault.to_string(), spec);
        }
        assert!("status=42".parse::<Fault>().is_err());
        assert!("slow".parse::<Fault>().is_err());
        assert!(
            "flap=1s"
                .parse::<Fault>()
                .unwrap_err()
                .contains("flap=UP/DOWN")
        );
        assert!(
            "explode"
                .parse::<Fault>()
                .unwrap_err()
                .contains("unknown fault")
        );
    }
}
