//! The `TOOLHIVE_HEALTH_CHECK_*` variables, read as ToolHive reads them: every one is
//! optional, and a value that cannot be used (garbage, zero, negative, a bare number for
//! a duration, a fraction for the threshold) is ignored with a warning that names the
//! variable, the value and the default that applies instead.

use std::fmt;
use std::time::Duration;

use hale_core::{CheckLoopConfig, parse_go_duration};
use serde::Deserialize;

/// The common prefix of the variables.
pub const PREFIX: &str = "TOOLHIVE_HEALTH_CHECK_";

/// A variable that was set but could not be used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnvWarning {
    /// The variable's full name.
    pub variable: String,
    /// The value it had.
    pub value: String,
    /// Why it cannot be used.
    pub problem: String,
    /// The default used instead.
    pub default: String,
}

impl fmt::Display for EnvWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}={:?} is ignored ({}); using the default {}",
            self.variable, self.value, self.problem, self.default
        )
    }
}

/// The variables as strings: envy sorts them out, hale-core judges the values.
#[derive(Debug, Default, Deserialize)]
struct Raw {
    interval: Option<String>,
    ping_timeout: Option<String>,
    retry_delay: Option<String>,
    failure_threshold: Option<String>,
}

/// Reads the settings from `vars` (the process environment in production; a list in
/// tests), returning the settings in force and a warning per unusable variable.
pub fn from_vars(
    vars: impl IntoIterator<Item = (String, String)>,
) -> (CheckLoopConfig, Vec<EnvWarning>) {
    // Only our variables reach envy, so nothing else in the environment can trip it.
    let ours = vars.into_iter().filter(|(k, _)| k.starts_with(PREFIX));
    let raw: Raw = envy::prefixed(PREFIX).from_iter(ours).unwrap_or_default();
    let defaults = CheckLoopConfig::default();
    let mut warnings = Vec::new();
    let mut duration = |name: &str, value: Option<String>, default: Duration| -> Duration {
        let Some(value) = value else { return default };
        let problem = match parse_go_duration(value.trim()) {
            Ok(d) if !d.is_zero() => return d,
            Ok(_) => "zero is not a usable duration".to_string(),
            Err(e) => e.to_string(),
        };
        warnings.push(EnvWarning {
            variable: format!("{PREFIX}{name}"),
            value,
            problem,
            default: format!("{default:?}"),
        });
        default
    };
    let interval = duration("INTERVAL", raw.interval, defaults.interval);
    let ping_timeout = duration("PING_TIMEOUT", raw.ping_timeout, defaults.ping_timeout);
    let retry_delay = duration("RETRY_DELAY", raw.retry_delay, defaults.retry_delay);
    let failure_threshold = match raw.failure_threshold {
        None => defaults.failure_threshold,
        Some(value) => match value.trim().parse::<i64>() {
            Ok(n) if n > 0 => u32::try_from(n).unwrap_or(u32::MAX),
            parsed => {
                let problem = match parsed {
                    Ok(_) => "expected a whole number of at least 1".to_string(),
                    Err(e) => format!("expected a whole number of at least 1 ({e})"),
                };
                warnings.push(EnvWarning {
                    variable: format!("{PREFIX}FAILURE_THRESHOLD"),
                    value,
                    problem,
                    default: defaults.failure_threshold.to_string(),
                });
                defaults.failure_threshold
            }
        },
    };
    let config = CheckLoopConfig {
        interval,
        ping_timeout,
        retry_delay,
        failure_threshold,
    };
    (config, warnings)
}

/// Reads the settings from the process environment (variables that are not UTF-8 are
/// skipped rather than aborting, which `std::env::vars` would do).
pub fn from_process_env() -> (CheckLoopConfig, Vec<EnvWarning>) {
    from_vars(
        std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?))),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(pairs: &[(&str, &str)]) -> (CheckLoopConfig, Vec<EnvWarning>) {
        from_vars(
            pairs
                .iter()
                .map(|(k, v)| (format!("{PREFIX}{k}"), v.to_string())),
        )
    }

    #[test]
    fn nothing_set_means_toolhives_defaults() {
        let (config, warnings) = read(&[]);
        assert_eq!(config, CheckLoopConfig::default());
        assert_eq!(config.interval, Duration::from_secs(10));
        assert_eq!(config.ping_timeout, Duration::from_secs(5));
        assert_eq!(config.retry_delay, Duration::from_secs(5));
        assert_eq!(config.failure_threshold, 5);
        assert!(warnings.is_empty());
    }

    /// Each form a value can take, and what it becomes.
    #[test]
    fn every_form_of_every_variable() {
        let secs = Duration::from_secs;
        let cases: &[(&str, &str, Option<Duration>)] = &[
            ("INTERVAL", "30s", Some(secs(30))),
            ("INTERVAL", "1m30s", Some(secs(90))),
            ("INTERVAL", "250ms", Some(Duration::from_millis(250))),
            ("INTERVAL", "1h", Some(secs(3600))),
            ("INTERVAL", "1.5s", Some(Duration::from_millis(1500))),
            ("INTERVAL", " 20s ", Some(secs(20))),
            ("INTERVAL", "10", None),   // a bare integer: Go wants a unit
            ("INTERVAL", "0", None),    // zero
            ("INTERVAL", "0s", None),   // zero with a unit
            ("INTERVAL", "-5s", None),  // negative
            ("INTERVAL", "soon", None), // garbage
            ("INTERVAL", "", None),     // empty
            ("PING_TIMEOUT", "2s", Some(secs(2))),
            ("PING_TIMEOUT", "2", None),
            ("RETRY_DELAY", "100ms", Some(Duration::from_millis(100))),
            ("RETRY_DELAY", "-1s", None),
        ];
        for (name, value, expected) in cases {
            let (config, warnings) = read(&[(name, value)]);
            let got = match *name {
                "INTERVAL" => config.interval,
                "PING_TIMEOUT" => config.ping_timeout,
                _ => config.retry_delay,
            };
            let default = match *name {
                "INTERVAL" => secs(10),
                _ => secs(5),
            };
            match expected {
                Some(d) => {
                    assert_eq!(got, *d, "{name}={value:?}");
                    assert!(warnings.is_empty(), "{name}={value:?}: {warnings:?}");
                }
                None => {
                    assert_eq!(got, default, "{name}={value:?} falls back to the default");
                    assert_eq!(warnings.len(), 1, "{name}={value:?}");
                    let text = warnings[0].to_string();
                    assert!(
                        text.contains(&format!("TOOLHIVE_HEALTH_CHECK_{name}")),
                        "{text}"
                    );
                    assert!(text.contains(&format!("{value:?}")), "{text}");
                    assert!(text.contains(&format!("{default:?}")), "{text}");
                }
            }
        }
    }

    #[test]
    fn the_threshold_takes_whole_positive_numbers_only() {
        for (value, expected) in [
            ("3", Some(3)),
            ("1", Some(1)),
            (" 7 ", Some(7)),
            ("0", None),
            ("-2", None),
            ("2.5", None),
            ("three", None),
            ("", None),
            ("99999999999", Some(u32::MAX)),
        ] {
            let (config, warnings) = read(&[("FAILURE_THRESHOLD", value)]);
            match expected {
                Some(n) => {
                    assert_eq!(config.failure_threshold, n, "{value:?}");
                    assert!(warnings.is_empty());
                }
                None => {
                    assert_eq!(config.failure_threshold, 5, "{value:?}");
                    let text = warnings[0].to_string();
                    assert!(
                        text.contains("TOOLHIVE_HEALTH_CHECK_FAILURE_THRESHOLD")
                            && text.contains("default 5"),
                        "{text}"
                    );
                }
            }
        }
    }

    #[test]
    fn unrelated_and_unknown_variables_are_ignored() {
        let (config, warnings) = from_vars([
            ("PATH".to_string(), "/bin".to_string()),
            (format!("{PREFIX}SOMETHING_NEW"), "x".to_string()),
            (format!("{PREFIX}INTERVAL"), "3s".to_string()),
        ]);
        assert_eq!(config.interval, Duration::from_secs(3));
        assert!(warnings.is_empty());
    }
}
