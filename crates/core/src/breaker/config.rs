use std::time::Duration;

use crate::config::{ConfigError, at_least_one, positive};
use crate::window::RateRules;

/// How a breaker trips and recovers, with ToolHive's defaults.
#[derive(Clone, Debug, PartialEq)]
pub struct BreakerConfig {
    /// Consecutive failures that open a closed breaker (`failureThreshold`, default 5).
    pub failure_threshold: u32,
    /// Consecutive half-open successes that close it (`successThreshold`, default 1).
    pub success_threshold: u32,
    /// How long the first opening lasts (`timeout`, default 60 s).
    pub timeout: Duration,
    /// The cap for the doubled timeout of repeated openings (`maxTimeout`, default 5 min).
    pub max_timeout: Duration,
    /// Calls admitted at once while half-open (`halfOpenMaxRequests`, default 1).
    pub half_open_max_requests: u32,
    /// Spread of each open timeout, as a ratio in `[0, 1)` (`jitter`, default 0: none).
    pub jitter: f64,
    /// The rate rules judged beside the consecutive count, either one opening
    /// (`failureRateThreshold`, `slowCall*`, `slidingWindow`, `minimumCalls`; default on,
    /// Resilience4j's defaults). `None`: consecutive failures only, as ToolHive judges.
    pub rates: Option<RateRules>,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            failure_threshold: 5,
            success_threshold: 1,
            timeout: Duration::from_secs(60),
            max_timeout: Duration::from_secs(300),
            half_open_max_requests: 1,
            jitter: 0.0,
            rates: Some(RateRules::default()),
        }
    }
}

impl BreakerConfig {
    /// Checks every rule, returning the first broken one.
    ///
    /// ```
    /// use hale_core::BreakerConfig;
    /// use std::time::Duration;
    ///
    /// let bad = BreakerConfig { max_timeout: Duration::from_secs(10), ..Default::default() };
    /// assert_eq!(
    ///     bad.validate().unwrap_err().to_string(),
    ///     "circuitBreaker.maxTimeout: expected at least circuitBreaker.timeout (60s), got 10s"
    /// );
    /// ```
    pub fn validate(&self) -> Result<(), ConfigError> {
        at_least_one("circuitBreaker.failureThreshold", self.failure_threshold)?;
        at_least_one("circuitBreaker.successThreshold", self.success_threshold)?;
        at_least_one(
            "circuitBreaker.halfOpenMaxRequests",
            self.half_open_max_requests,
        )?;
        positive("circuitBreaker.timeout", self.timeout)?;
        if self.max_timeout < self.timeout {
            return Err(ConfigError::Shorter {
                key: "circuitBreaker.maxTimeout",
                value: self.max_timeout,
                limit_key: "circuitBreaker.timeout",
                limit: self.timeout,
            });
        }
        if !(0.0..1.0).contains(&self.jitter) {
            return Err(ConfigError::RatioOutOfRange {
                key: "circuitBreaker.jitter",
                value: self.jitter,
            });
        }
        if let Some(rates) = &self.rates {
            rates.validate()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_toolhives_and_valid() {
        let c = BreakerConfig::default();
        assert_eq!(c.failure_threshold, 5);
        assert_eq!(c.timeout, Duration::from_secs(60));
        assert_eq!(c.max_timeout, Duration::from_secs(300));
        assert_eq!(c.half_open_max_requests, 1);
        assert_eq!(c.validate(), Ok(()));
    }

    #[test]
    fn each_broken_rule_names_its_key() {
        let d = BreakerConfig::default;
        let cases = [
            (
                BreakerConfig {
                    failure_threshold: 0,
                    ..d()
                },
                "circuitBreaker.failureThreshold",
            ),
            (
                BreakerConfig {
                    success_threshold: 0,
                    ..d()
                },
                "circuitBreaker.successThreshold",
            ),
            (
                BreakerConfig {
                    half_open_max_requests: 0,
                    ..d()
                },
                "circuitBreaker.halfOpenMaxRequests",
            ),
            (
                BreakerConfig {
                    timeout: Duration::ZERO,
                    ..d()
                },
                "circuitBreaker.timeout",
            ),
            (
                BreakerConfig {
                    max_timeout: Duration::from_secs(59),
                    ..d()
                },
                "circuitBreaker.maxTimeout",
            ),
            (
                BreakerConfig { jitter: 1.0, ..d() },
                "circuitBreaker.jitter",
            ),
            (
                BreakerConfig {
                    jitter: f64::NAN,
                    ..d()
                },
                "circuitBreaker.jitter",
            ),
        ];
        for (config, key) in cases {
            assert_eq!(config.validate().map_err(|e| e.key()), Err(key));
        }
    }
}
