//! Validation errors shared by the health and breaker settings.
//!
//! Keys are named as operators write them in the vMCP YAML (`unhealthyThreshold`,
//! `circuitBreaker.timeout`), so a front end only has to prefix its own path.

use std::fmt;
use std::time::Duration;

/// A setting that cannot work, with the key that holds it and what would be accepted.
#[derive(Clone, Debug, PartialEq)]
pub enum ConfigError {
    /// A count that must be at least 1 was 0.
    BelowOne {
        /// The offending key.
        key: &'static str,
    },
    /// A duration that must be positive was zero.
    ZeroDuration {
        /// The offending key.
        key: &'static str,
    },
    /// A duration that must be shorter than another was not.
    NotShorter {
        /// The offending key.
        key: &'static str,
        /// Its value.
        value: Duration,
        /// The key it must stay below.
        limit_key: &'static str,
        /// That key's value.
        limit: Duration,
    },
    /// A duration that must not be shorter than another was.
    Shorter {
        /// The offending key.
        key: &'static str,
        /// Its value.
        value: Duration,
        /// The key it must be at least.
        limit_key: &'static str,
        /// That key's value.
        limit: Duration,
    },
    /// A ratio outside `[0, 1)`.
    RatioOutOfRange {
        /// The offending key.
        key: &'static str,
        /// Its value.
        value: f64,
    },
    /// A rate threshold outside `(0, 1]`.
    RateOutOfRange {
        /// The offending key.
        key: &'static str,
        /// Its value (as a ratio).
        value: f64,
    },
}

impl ConfigError {
    /// The key the error is about.
    pub const fn key(&self) -> &'static str {
        match self {
            ConfigError::BelowOne { key }
            | ConfigError::ZeroDuration { key }
            | ConfigError::NotShorter { key, .. }
            | ConfigError::Shorter { key, .. }
            | ConfigError::RatioOutOfRange { key, .. }
            | ConfigError::RateOutOfRange { key, .. } => key,
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::BelowOne { key } => {
                write!(f, "{key}: expected a whole number of at least 1, got 0")
            }
            ConfigError::ZeroDuration { key } => {
                write!(f, "{key}: expected a positive duration such as 10s, got 0s")
            }
            ConfigError::NotShorter {
                key,
                value,
                limit_key,
                limit,
            } => write!(
                f,
                "{key}: expected less than {limit_key} ({limit:?}), got {value:?}"
            ),
            ConfigError::Shorter {
                key,
                value,
                limit_key,
                limit,
            } => write!(
                f,
                "{key}: expected at least {limit_key} ({limit:?}), got {value:?}"
            ),
            ConfigError::RatioOutOfRange { key, value } => write!(
                f,
                "{key}: expected a ratio from 0 up to (not including) 1, got {value}"
            ),
            ConfigError::RateOutOfRange { key, value } => write!(
                f,
                "{key}: expected a rate above 0 % and at most 100 %, got {} %",
                value * 100.0
            ),
        }
    }
}

impl std::error::Error for ConfigError {}

pub(crate) fn at_least_one(key: &'static str, value: u32) -> Result<(), ConfigError> {
    if value == 0 {
        Err(ConfigError::BelowOne { key })
    } else {
        Ok(())
    }
}

pub(crate) fn positive(key: &'static str, value: Duration) -> Result<(), ConfigError> {
    if value.is_zero() {
        Err(ConfigError::ZeroDuration { key })
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_key_and_what_is_expected() {
        let e = ConfigError::NotShorter {
            key: "healthCheckTimeout",
            value: Duration::from_secs(30),
            limit_key: "healthCheckInterval",
            limit: Duration::from_secs(30),
        };
        assert_eq!(
            e.to_string(),
            "healthCheckTimeout: expected less than healthCheckInterval (30s), got 30s"
        );
        assert_eq!(e.key(), "healthCheckTimeout");
        assert_eq!(
            ConfigError::BelowOne {
                key: "unhealthyThreshold"
            }
            .to_string(),
            "unhealthyThreshold: expected a whole number of at least 1, got 0"
        );
    }
}
