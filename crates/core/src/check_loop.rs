//! The health-check loop of a proxy that shuts down when its one server is gone: ToolHive's
//! transparent-proxy loop (issue #4084), as a sans-IO machine.
//!
//! Every `interval` a check runs. A failed check counts one failure and schedules one
//! retry after `retry_delay`: a successful retry resets the count to 0, a failed one adds
//! nothing. A successful check also resets the count. The check that brings the count to
//! `failure_threshold` ends the loop: the driver shuts down. Checks never overlap: when a
//! check and its retry take longer than the interval (a hanging server), the next check
//! starts as soon as the retry is done.

use std::time::{Duration, Instant};

use crate::config::{ConfigError, at_least_one, positive};

/// The four `TOOLHIVE_HEALTH_CHECK_*` settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CheckLoopConfig {
    /// Time between checks (`TOOLHIVE_HEALTH_CHECK_INTERVAL`, default 10 s).
    pub interval: Duration,
    /// Deadline of one check attempt (`TOOLHIVE_HEALTH_CHECK_PING_TIMEOUT`, default 5 s).
    pub ping_timeout: Duration,
    /// Delay before the one retry of a failed check (`TOOLHIVE_HEALTH_CHECK_RETRY_DELAY`,
    /// default 5 s).
    pub retry_delay: Duration,
    /// Consecutive failed checks that end the loop
    /// (`TOOLHIVE_HEALTH_CHECK_FAILURE_THRESHOLD`, default 5).
    pub failure_threshold: u32,
}

impl Default for CheckLoopConfig {
    fn default() -> Self {
        CheckLoopConfig {
            interval: Duration::from_secs(10),
            ping_timeout: Duration::from_secs(5),
            retry_delay: Duration::from_secs(5),
            failure_threshold: 5,
        }
    }
}

impl CheckLoopConfig {
    /// Checks every rule, returning the first broken one.
    pub fn validate(&self) -> Result<(), ConfigError> {
        positive("TOOLHIVE_HEALTH_CHECK_INTERVAL", self.interval)?;
        positive("TOOLHIVE_HEALTH_CHECK_PING_TIMEOUT", self.ping_timeout)?;
        positive("TOOLHIVE_HEALTH_CHECK_RETRY_DELAY", self.retry_delay)?;
        at_least_one(
            "TOOLHIVE_HEALTH_CHECK_FAILURE_THRESHOLD",
            self.failure_threshold,
        )
    }

    /// How long after the first failed check the loop ends, for a server that fails at
    /// once (connection refused) and for one that hangs (every attempt runs into
    /// `ping_timeout`). Add up to one `interval` for the time until the first failed check.
    pub fn tolerance(&self) -> (Duration, Duration) {
        let n = self.failure_threshold.saturating_sub(1);
        let refused = self.interval.saturating_mul(n);
        let hang_cycle = self.interval.max(
            self.ping_timeout
                .saturating_mul(2)
                .saturating_add(self.retry_delay),
        );
        let hanging = hang_cycle
            .saturating_mul(n)
            .saturating_add(self.ping_timeout);
        (refused, hanging)
    }
}

/// Which attempt the driver should run now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attempt {
    /// The periodic check.
    Check,
    /// The one retry after a failed check.
    Retry,
}

/// What a recorded result meant; its `Display` is a log line's message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoopEvent {
    /// A check failed; a retry follows at `retry_at`.
    CheckFailed {
        /// Consecutive failures counted, below the threshold.
        failures: u32,
        /// When the retry runs.
        retry_at: Instant,
    },
    /// A retry failed; the count stands.
    RetryFailed {
        /// Consecutive failures counted.
        failures: u32,
    },
    /// A check or retry succeeded after failures: the count is back to 0.
    Recovered {
        /// The count before.
        after: u32,
    },
    /// The threshold was reached: the driver must shut down.
    Shutdown {
        /// Consecutive failures counted (the threshold).
        failures: u32,
    },
}

impl std::fmt::Display for LoopEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LoopEvent::CheckFailed { failures, .. } => {
                write!(
                    f,
                    "health check failed ({failures} in a row); retrying once"
                )
            }
            LoopEvent::RetryFailed { failures } => {
                write!(f, "health check retry failed ({failures} in a row)")
            }
            LoopEvent::Recovered { after } => {
                write!(f, "health check recovered after {after} failed")
            }
            LoopEvent::Shutdown { failures } => write!(
                f,
                "{failures} consecutive health checks failed: shutting down"
            ),
        }
    }
}

/// The loop's state: when to check next, and how many checks failed in a row.
///
/// ```
/// use hale_core::{Attempt, CheckLoop, CheckLoopConfig, LoopEvent};
/// use std::time::{Duration, Instant};
///
/// let config = CheckLoopConfig { failure_threshold: 2, ..Default::default() };
/// let t0 = Instant::now();
/// let mut checks = CheckLoop::new(&config, t0)?;
///
/// let t = checks.poll_timeout().unwrap();
/// assert_eq!(t, t0 + Duration::from_secs(10));
/// assert_eq!(checks.handle_timeout(t), Some(Attempt::Check));
/// assert!(matches!(checks.record(t, false), Some(LoopEvent::CheckFailed { failures: 1, .. })));
/// let retry = checks.poll_timeout().unwrap();
/// assert_eq!(checks.handle_timeout(retry), Some(Attempt::Retry));
/// assert_eq!(checks.record(retry, false), Some(LoopEvent::RetryFailed { failures: 1 }));
/// let next = checks.poll_timeout().unwrap();
/// checks.handle_timeout(next);
/// assert_eq!(checks.record(next, false), Some(LoopEvent::Shutdown { failures: 2 }));
/// assert_eq!(checks.poll_timeout(), None);
/// # Ok::<(), hale_core::ConfigError>(())
/// ```
#[derive(Clone, Debug)]
pub struct CheckLoop {
    config: CheckLoopConfig,
    failures: u32,
    phase: Phase,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Waiting for the next periodic check.
    Waiting { next: Instant },
    /// An attempt is running; `next` is when the following check is due.
    Running { attempt: Attempt, next: Instant },
    /// A check failed; its retry is due at `at`.
    RetryDue { at: Instant, next: Instant },
    /// The threshold was reached.
    Done,
}

impl CheckLoop {
    /// A loop whose first check is one interval after `now`, or the first rule `config`
    /// breaks.
    pub fn new(config: &CheckLoopConfig, now: Instant) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(CheckLoop {
            config: *config,
            failures: 0,
            phase: Phase::Waiting {
                next: later(now, config.interval),
            },
        })
    }

    /// When the driver should next call [`handle_timeout`](Self::handle_timeout); `None`
    /// while an attempt runs, and once the loop has ended.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.phase {
            Phase::Waiting { next } => Some(next),
            Phase::RetryDue { at, .. } => Some(at),
            Phase::Running { .. } | Phase::Done => None,
        }
    }

    /// Starts the attempt that is due at `now`, if any; the driver runs it with
    /// `ping_timeout` and reports with [`record`](Self::record).
    pub fn handle_timeout(&mut self, now: Instant) -> Option<Attempt> {
        let (attempt, next) = match self.phase {
            Phase::Waiting { next } if now >= next => {
                (Attempt::Check, later(next, self.config.interval))
            }
            Phase::RetryDue { at, next } if now >= at => (Attempt::Retry, next),
            _ => return None,
        };
        self.phase = Phase::Running { attempt, next };
        Some(attempt)
    }

    /// Records the running attempt's result at `now`.
    pub fn record(&mut self, now: Instant, success: bool) -> Option<LoopEvent> {
        let Phase::Running { attempt, next } = self.phase else {
            return None;
        };
        // Checks never overlap: a late attempt pushes the next check back.
        let waiting = Phase::Waiting {
            next: next.max(now),
        };
        match (attempt, success) {
            (_, true) => {
                self.phase = waiting;
                let after = std::mem::take(&mut self.failures);
                (after > 0).then_some(LoopEvent::Recovered { after })
            }
            (Attempt::Retry, false) => {
                self.phase = waiting;
                Some(LoopEvent::RetryFailed {
                    failures: self.failures,
                })
            }
            (Attempt::Check, false) => {
                self.failures = self.failures.saturating_add(1);
                if self.failures >= self.config.failure_threshold {
                    self.phase = Phase::Done;
                    return Some(LoopEvent::Shutdown {
                        failures: self.failures,
                    });
                }
                let retry_at = later(now, self.config.retry_delay);
                self.phase = Phase::RetryDue { at: retry_at, next };
                Some(LoopEvent::CheckFailed {
                    failures: self.failures,
                    retry_at,
                })
            }
        }
    }

    /// Consecutive failed checks.
    pub fn consecutive_failures(&self) -> u32 {
        self.failures
    }

    /// Whether the threshold was reached.
    pub fn is_done(&self) -> bool {
        self.phase == Phase::Done
    }

    /// The settings in force.
    pub fn config(&self) -> &CheckLoopConfig {
        &self.config
    }
}

/// `t + d`, or as late as can be represented.
fn later(t: Instant, d: Duration) -> Instant {
    t.checked_add(d).unwrap_or_else(|| {
        // Halve until it fits: "never" for any practical purpose.
        let mut d = d;
        loop {
            d /= 2;
            if let Some(t) = t.checked_add(d) {
                return t;
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    /// Drives the loop against a scripted server: `down(t)` says whether an attempt
    /// starting at `t` (seconds after start) fails, and `hang` whether a failing attempt
    /// takes the whole ping timeout. Returns the shutdown time, if it came before `until`.
    fn run(
        config: CheckLoopConfig,
        down: impl Fn(u64) -> bool,
        hang: bool,
        until: u64,
    ) -> Option<Duration> {
        let t0 = Instant::now();
        let mut l = CheckLoop::new(&config, t0).unwrap();
        while let Some(at) = l.poll_timeout() {
            if at > t0 + Duration::from_secs(until) {
                return None;
            }
            l.handle_timeout(at).unwrap();
            let failed = down((at - t0).as_secs());
            let done = if failed && hang {
                at + config.ping_timeout
            } else {
                at
            };
            if let Some(LoopEvent::Shutdown { .. }) = l.record(done, !failed) {
                return Some(done - t0);
            }
        }
        None
    }

    #[test]
    fn a_refused_server_is_given_up_after_threshold_minus_one_intervals() {
        let c = CheckLoopConfig::default();
        // First failed check at 10 s; failures at 10, 20, 30, 40, 50 s.
        assert_eq!(run(c, |_| true, false, 1000), Some(50 * S));
        assert_eq!(c.tolerance().0, 40 * S);
    }

    #[test]
    fn a_hanging_server_costs_a_timeout_per_attempt() {
        let c = CheckLoopConfig::default();
        // Cycle: check 5 s + retry delay 5 s + retry 5 s = 15 s; fifth check times out
        // at 10 + 4 × 15 + 5 = 75 s.
        assert_eq!(run(c, |_| true, true, 1000), Some(75 * S));
        assert_eq!(c.tolerance().1, 65 * S);
    }

    #[test]
    fn a_successful_retry_resets_the_count() {
        let c = CheckLoopConfig::default();
        // Every periodic check fails but every retry (5 s later) succeeds: never shut down.
        assert_eq!(run(c, |t| t % 10 == 0, false, 10_000), None);
    }

    #[test]
    fn a_blip_shorter_than_the_tolerance_window_never_shuts_down() {
        let c = CheckLoopConfig::default();
        // Down for 40 s (four failed checks and their retries), then back.
        assert_eq!(run(c, |t| (10..50).contains(&t), false, 10_000), None);
        // Down for 41 s: the fifth check at 50 s fails too.
        assert_eq!(
            run(c, |t| (10..51).contains(&t), false, 10_000),
            Some(50 * S)
        );
    }

    #[test]
    fn a_failed_retry_does_not_add_to_the_count() {
        let c = CheckLoopConfig::default();
        let t0 = Instant::now();
        let mut l = CheckLoop::new(&c, t0).unwrap();
        let t = l.poll_timeout().unwrap();
        l.handle_timeout(t);
        assert_eq!(
            l.record(t, false),
            Some(LoopEvent::CheckFailed {
                failures: 1,
                retry_at: t + 5 * S
            })
        );
        assert_eq!(l.handle_timeout(t + 4 * S), None, "not due yet");
        assert_eq!(l.handle_timeout(t + 5 * S), Some(Attempt::Retry));
        assert_eq!(
            l.record(t + 5 * S, false),
            Some(LoopEvent::RetryFailed { failures: 1 })
        );
        assert_eq!(l.consecutive_failures(), 1);
        assert_eq!(
            l.poll_timeout(),
            Some(t + 10 * S),
            "the next check keeps the rhythm"
        );
        l.handle_timeout(t + 10 * S);
        assert_eq!(
            l.record(t + 10 * S, true),
            Some(LoopEvent::Recovered { after: 1 })
        );
        assert_eq!(l.consecutive_failures(), 0);
    }

    #[test]
    fn a_threshold_of_one_shuts_down_on_the_first_failure_without_a_retry() {
        let c = CheckLoopConfig {
            failure_threshold: 1,
            ..CheckLoopConfig::default()
        };
        assert_eq!(run(c, |_| true, false, 1000), Some(10 * S));
    }

    #[test]
    fn results_without_a_running_attempt_are_ignored() {
        let t0 = Instant::now();
        let mut l = CheckLoop::new(&CheckLoopConfig::default(), t0).unwrap();
        assert_eq!(l.record(t0, false), None);
        assert_eq!(l.consecutive_failures(), 0);
        assert_eq!(
            l.handle_timeout(t0),
            None,
            "the first check is one interval away"
        );
    }

    #[test]
    fn huge_settings_neither_overflow_nor_panic() {
        let c = CheckLoopConfig {
            interval: Duration::MAX,
            ping_timeout: Duration::MAX,
            retry_delay: Duration::MAX,
            failure_threshold: u32::MAX,
        };
        let t0 = Instant::now();
        let mut l = CheckLoop::new(&c, t0).unwrap();
        let t = l.poll_timeout().unwrap();
        assert!(t > t0);
        l.handle_timeout(t);
        l.record(t, false);
        assert!(l.poll_timeout().is_some());
        let _ = c.tolerance();
    }

    /// The rows of the tolerance table in docs/configuration.md.
    #[test]
    fn the_documented_tolerance_table() {
        let rows = [
            ((10, 5, 5, 5), (40, 65)),
            ((10, 5, 5, 3), (20, 35)),
            ((5, 2, 1, 3), (10, 12)),
            ((30, 10, 10, 5), (120, 130)),
            ((10, 5, 5, 1), (0, 5)),
        ];
        for ((interval, timeout, delay, threshold), (refused, hanging)) in rows {
            let c = CheckLoopConfig {
                interval: interval * S,
                ping_timeout: timeout * S,
                retry_delay: delay * S,
                failure_threshold: threshold,
            };
            assert_eq!(c.tolerance(), (refused * S, hanging * S), "{c:?}");
            // And the loop itself agrees, measured from the first failed check.
            let first = c.interval;
            assert_eq!(run(c, |_| true, false, 100_000), Some(first + refused * S));
            assert_eq!(run(c, |_| true, true, 100_000), Some(first + hanging * S));
        }
    }

    #[test]
    fn invalid_settings_name_the_variable() {
        let c = CheckLoopConfig {
            failure_threshold: 0,
            ..CheckLoopConfig::default()
        };
        assert_eq!(
            CheckLoop::new(&c, Instant::now()).unwrap_err().key(),
            "TOOLHIVE_HEALTH_CHECK_FAILURE_THRESHOLD"
        );
    }
}
