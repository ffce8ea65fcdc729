use std::time::Duration;

use crate::config::{ConfigError, at_least_one, positive};

/// How checks are judged, with ToolHive's vMCP defaults.
///
/// The interval and timeout are not used by the tracker itself (it only sees results), but
/// they are validated here together because one constrains the other.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HealthConfig {
    /// Time between checks (`healthCheckInterval`, default 30 s).
    pub check_interval: Duration,
    /// Deadline of one check (`healthCheckTimeout`, default 10 s); must be below the interval.
    pub check_timeout: Duration,
    /// Consecutive failures that make a backend `unhealthy` (`unhealthyThreshold`, default 3).
    pub unhealthy_threshold: u32,
    /// Consecutive successes that bring an `unhealthy` backend back (`healthyThreshold`,
    /// default 1).
    pub healthy_threshold: u32,
    /// Answers slower than this make a backend `degraded` (`degradedLatency`, default 5 s).
    pub degraded_latency: Duration,
}

impl Default for HealthConfig {
    fn default() -> Self {
        HealthConfig {
            check_interval: Duration::from_secs(30),
            check_timeout: Duration::from_secs(10),
            unhealthy_threshold: 3,
            healthy_threshold: 1,
            degraded_latency: Duration::from_secs(5),
        }
    }
}

impl HealthConfig {
    /// Checks every rule, returning the first broken one.
    ///
    /// ```
    /// use hale_core::HealthConfig;
    /// use std::time::Duration;
    ///
    /// let bad = HealthConfig { check_timeout: Duration::from_secs(30), ..Default::default() };
    /// let err = bad.validate().unwrap_err();
    /// assert_eq!(err.key(), "healthCheckTimeout");
    /// ```
    pub fn validate(&self) -> Result<(), ConfigError> {
        positive("healthCheckInterval", self.check_interval)?;
        positive("healthCheckTimeout", self.check_timeout)?;
        if self.check_timeout >= self.check_interval {
            return Err(ConfigError::NotShorter {
                key: "healthCheckTimeout",
                value: self.check_timeout,
                limit_key: "healthCheckInterval",
                limit: self.check_interval,
            });
        }
        at_least_one("unhealthyThreshold", self.unhealthy_threshold)?;
        at_least_one("healthyThreshold", self.healthy_threshold)?;
        positive("degradedLatency", self.degraded_latency)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_toolhives_and_valid() {
        let c = HealthConfig::default();
        assert_eq!(c.check_interval, Duration::from_secs(30));
        assert_eq!(c.check_timeout, Duration::from_secs(10));
        assert_eq!(c.unhealthy_threshold, 3);
        assert_eq!(c.healthy_threshold, 1);
        assert_eq!(c.degraded_latency, Duration::from_secs(5));
        assert_eq!(c.validate(), Ok(()));
    }

    #[test]
    fn each_broken_rule_names_its_key() {
        let cases: [(HealthConfig, &str); 6] = [
            (
                HealthConfig {
                    check_interval: Duration::ZERO,
                    ..Default::default()
                },
                "healthCheckInterval",
            ),
            (
                HealthConfig {
                    check_timeout: Duration::ZERO,
                    ..Default::default()
                },
                "healthCheckTimeout",
            ),
            (
                HealthConfig {
                    check_timeout: Duration::from_secs(31),
                    ..Default::default()
                },
                "healthCheckTimeout",
            ),
            (
                HealthConfig {
                    unhealthy_threshold: 0,
                    ..Default::default()
                },
                "unhealthyThreshold",
            ),
            (
                HealthConfig {
                    healthy_threshold: 0,
                    ..Default::default()
                },
                "healthyThreshold",
            ),
            (
                HealthConfig {
                    degraded_latency: Duration::ZERO,
                    ..Default::default()
                },
                "degradedLatency",
            ),
        ];
        for (config, key) in cases {
            assert_eq!(config.validate().map_err(|e| e.key()), Err(key));
        }
    }
}
