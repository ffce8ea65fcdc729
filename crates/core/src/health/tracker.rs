use std::fmt;
use std::time::{Duration, Instant};

use super::{HealthConfig, HealthState};
use crate::config::ConfigError;
use crate::outcome::{CheckOutcome, Failure, FailureCategory};

/// Turns check results for one backend into a health state.
///
/// ```
/// use hale_core::{CheckOutcome, FailureCategory, HealthConfig, HealthState, HealthTracker};
/// use std::time::{Duration, Instant};
///
/// let mut tracker = HealthTracker::new(&HealthConfig::default())?;
/// let t0 = Instant::now();
/// let refused = || CheckOutcome::failure(FailureCategory::ConnectionRefused, "refused");
///
/// tracker.record(t0, CheckOutcome::success(Duration::from_millis(3)));
/// assert_eq!(tracker.state(), HealthState::Healthy);
///
/// // Two failures are a blip: the state holds.
/// assert!(tracker.record(t0, refused()).is_none());
/// assert!(tracker.record(t0, refused()).is_none());
/// // The third is the threshold.
/// let change = tracker.record(t0, refused()).expect("third failure is the threshold");
/// assert_eq!((change.from, change.to), (HealthState::Healthy, HealthState::Unhealthy));
/// # Ok::<(), hale_core::ConfigError>(())
/// ```
#[derive(Clone, Debug)]
pub struct HealthTracker {
    unhealthy_threshold: u32,
    healthy_threshold: u32,
    degraded_latency: Duration,

    state: HealthState,
    consecutive_failures: u32,
    consecutive_successes: u32,
    last_check: Option<Instant>,
    last_success: Option<Instant>,
    last_error: Option<LastError>,
    last_transition: Option<Instant>,
    last_latency: Option<Duration>,
}

/// The most recent failure, kept until the next one replaces it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LastError {
    /// What failed and how.
    pub failure: Failure,
    /// When it was recorded.
    pub at: Instant,
}

/// A change of health state, returned by [`HealthTracker::record`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HealthTransition {
    /// The state before.
    pub from: HealthState,
    /// The state after.
    pub to: HealthState,
    /// Why it changed.
    pub reason: HealthReason,
}

/// Why a health state changed; its `Display` is what goes after `reason=` in logs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HealthReason {
    /// A backend that had not answered (yet, or with credentials) answered.
    Answered {
        /// The answer's latency.
        latency: Duration,
    },
    /// An unhealthy backend passed `healthyThreshold` checks in a row.
    Recovered {
        /// Consecutive successes counted.
        successes: u32,
    },
    /// An answer was slower than `degradedLatency`.
    Slow {
        /// The answer's latency.
        latency: Duration,
        /// The configured limit.
        limit: Duration,
    },
    /// An answer was back within `degradedLatency`.
    Fast {
        /// The answer's latency.
        latency: Duration,
    },
    /// `unhealthyThreshold` checks in a row failed.
    Failures {
        /// Consecutive failures counted.
        count: u32,
        /// The category of the last one.
        last: FailureCategory,
    },
    /// The backend answered 401/403.
    Unauthenticated,
}

impl fmt::Display for HealthReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HealthReason::Answered { latency } => write!(f, "answered in {latency:?}"),
            HealthReason::Recovered { successes: 1 } => f.write_str("check succeeded"),
            HealthReason::Recovered { successes } => {
                write!(f, "{successes} consecutive successful checks")
            }
            HealthReason::Slow { latency, limit } => {
                write!(f, "answered in {latency:?}, slower than {limit:?}")
            }
            HealthReason::Fast { latency } => write!(f, "answered in {latency:?} again"),
            HealthReason::Failures { count, last } => {
                write!(f, "{count} consecutive failed checks, last: {last}")
            }
            HealthReason::Unauthenticated => f.write_str("answered 401/403 without credentials"),
        }
    }
}

impl HealthTracker {
    /// A tracker in state `unknown`, or the first rule `config` breaks.
    pub fn new(config: &HealthConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(HealthTracker {
            unhealthy_threshold: config.unhealthy_threshold,
            healthy_threshold: config.healthy_threshold,
            degraded_latency: config.degraded_latency,
            state: HealthState::Unknown,
            consecutive_failures: 0,
            consecutive_successes: 0,
            last_check: None,
            last_success: None,
            last_error: None,
            last_transition: None,
            last_latency: None,
        })
    }

    /// Records one check made at `now`, returning the transition it caused, if any.
    pub fn record(&mut self, now: Instant, outcome: CheckOutcome) -> Option<HealthTransition> {
        self.last_check = Some(now);
        let (to, reason) = match outcome {
            CheckOutcome::Success { latency } => self.on_success(now, latency),
            CheckOutcome::Unauthenticated { .. } => self.on_unauthenticated(),
            CheckOutcome::Failure(failure) => self.on_failure(now, failure),
        };
        if to == self.state {
            return None;
        }
        let from = std::mem::replace(&mut self.state, to);
        self.last_transition = Some(now);
        Some(HealthTransition { from, to, reason })
    }

    /// A success resets the failure count. It moves `unknown` and `unauthenticated` at
    /// once, `healthy` ⇄ `degraded` by latency at once, and `unhealthy` only after
    /// `healthyThreshold` successes in a row.
    fn on_success(&mut self, now: Instant, latency: Duration) -> (HealthState, HealthReason) {
        self.consecutive_failures = 0;
        self.consecutive_successes = self.consecutive_successes.saturating_add(1);
        self.last_success = Some(now);
        self.last_latency = Some(latency);
        let by_latency = if latency > self.degraded_latency {
            HealthState::Degraded
        } else {
            HealthState::Healthy
        };
        match self.state {
            HealthState::Unhealthy if self.consecutive_successes < self.healthy_threshold => {
                (HealthState::Unhealthy, HealthReason::Answered { latency })
            }
            HealthState::Unhealthy => (
                by_latency,
                HealthReason::Recovered {
                    successes: self.consecutive_successes,
                },
            ),
            HealthState::Unknown | HealthState::Unauthenticated => {
                (by_latency, HealthReason::Answered { latency })
            }
            HealthState::Healthy | HealthState::Degraded => {
                let reason = if by_latency == HealthState::Degraded {
                    HealthReason::Slow {
                        latency,
                        limit: self.degraded_latency,
                    }
                } else {
                    HealthReason::Fast { latency }
                };
                (by_latency, reason)
            }
        }
    }

    /// A 401/403 proves the backend is up, so it counts neither way: both streaks
    /// restart, and the state says why the backend cannot be used.
    fn on_unauthenticated(&mut self) -> (HealthState, HealthReason) {
        self.consecutive_failures = 0;
        self.consecutive_successes = 0;
        (HealthState::Unauthenticated, HealthReason::Unauthenticated)
    }

    /// A failure counts up; the state holds until exactly `unhealthyThreshold` in a row.
    fn on_failure(&mut self, now: Instant, failure: Failure) -> (HealthState, HealthReason) {
        self.consecutive_successes = 0;
        self.consecutive_failures = self.consecutive_failures.saturating_add(1);
        let reason = HealthReason::Failures {
            count: self.consecutive_failures,
            last: failure.category,
        };
        self.last_error = Some(LastError { failure, at: now });
        if self.consecutive_failures >= self.unhealthy_threshold {
            (HealthState::Unhealthy, reason)
        } else {
            (self.state, reason)
        }
    }

    /// The current state.
    pub fn state(&self) -> HealthState {
        self.state
    }

    /// Failed checks in a row (0 after any answer).
    pub fn consecutive_failures(&self) -> u32 {
        self.consecutive_failures
    }

    /// Successful checks in a row (0 after any failure or 401/403).
    pub fn consecutive_successes(&self) -> u32 {
        self.consecutive_successes
    }

    /// When the last check of any kind was recorded.
    pub fn last_check(&self) -> Option<Instant> {
        self.last_check
    }

    /// When the last successful check was recorded.
    pub fn last_success(&self) -> Option<Instant> {
        self.last_success
    }

    /// The last failure, if there was one.
    pub fn last_error(&self) -> Option<&LastError> {
        self.last_error.as_ref()
    }

    /// When the state last changed.
    pub fn last_transition(&self) -> Option<Instant> {
        self.last_transition
    }

    /// The latency of the last successful check.
    pub fn last_latency(&self) -> Option<Duration> {
        self.last_latency
    }

    /// The configured `unhealthyThreshold`.
    pub fn unhealthy_threshold(&self) -> u32 {
        self.unhealthy_threshold
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FAST: Duration = Duration::from_millis(20);
    const SLOW: Duration = Duration::from_secs(6);

    fn tracker(unhealthy: u32, healthy: u32) -> HealthTracker {
        HealthTracker::new(&HealthConfig {
            unhealthy_threshold: unhealthy,
            healthy_threshold: healthy,
            ..HealthConfig::default()
        })
        .unwrap()
    }

    fn ok(latency: Duration) -> CheckOutcome {
        CheckOutcome::success(latency)
    }

    fn timeout() -> CheckOutcome {
        CheckOutcome::failure(FailureCategory::Timeout, "no answer in 10s")
    }

    fn unauthorized() -> CheckOutcome {
        CheckOutcome::Unauthenticated {
            message: "401 Unauthorized".into(),
        }
    }

    fn step(
        t: &mut HealthTracker,
        at: Instant,
        o: CheckOutcome,
    ) -> Option<(HealthState, HealthState)> {
        t.record(at, o).map(|tr| (tr.from, tr.to))
    }

    #[test]
    fn a_new_backend_is_unknown_until_it_answers() {
        let mut t = tracker(3, 1);
        let t0 = Instant::now();
        assert_eq!(t.state(), HealthState::Unknown);
        assert_eq!(t.last_check(), None);

        let change = t.record(t0, ok(FAST)).unwrap();
        assert_eq!(
            (change.from, change.to),
            (HealthState::Unknown, HealthState::Healthy)
        );
        assert_eq!(change.reason, HealthReason::Answered { latency: FAST });
        assert_eq!(t.last_success(), Some(t0));
        assert_eq!(t.last_transition(), Some(t0));
        assert_eq!(t.last_latency(), Some(FAST));
    }

    #[test]
    fn a_slow_first_answer_is_degraded_not_healthy() {
        let mut t = tracker(3, 1);
        assert_eq!(
            step(&mut t, Instant::now(), ok(SLOW)),
            Some((HealthState::Unknown, HealthState::Degraded))
        );
    }

    #[test]
    fn a_backend_down_from_the_start_stays_unknown_until_the_threshold() {
        let mut t = tracker(3, 1);
        let t0 = Instant::now();
        assert_eq!(step(&mut t, t0, timeout()), None);
        assert_eq!(step(&mut t, t0, timeout()), None);
        assert_eq!(t.state(), HealthState::Unknown);
        assert_eq!(t.consecutive_failures(), 2);
        assert_eq!(
            step(&mut t, t0, timeout()),
            Some((HealthState::Unknown, HealthState::Unhealthy))
        );
    }

    #[test]
    fn a_healthy_backend_rides_out_a_blip_below_the_threshold() {
        let mut t = tracker(3, 1);
        let t0 = Instant::now();
        t.record(t0, ok(FAST));
        assert_eq!(step(&mut t, t0, timeout()), None);
        assert_eq!(step(&mut t, t0, timeout()), None);
        assert_eq!(t.state(), HealthState::Healthy);
        // The blip ends: the count starts over, so two more failures are again harmless.
        assert_eq!(step(&mut t, t0, ok(FAST)), None);
        assert_eq!(t.consecutive_failures(), 0);
        assert_eq!(step(&mut t, t0, timeout()), None);
        assert_eq!(step(&mut t, t0, timeout()), None);
        assert_eq!(t.state(), HealthState::Healthy);
    }

    #[test]
    fn exactly_the_threshold_of_failures_makes_it_unhealthy_and_more_change_nothing() {
        let mut t = tracker(3, 1);
        let t0 = Instant::now();
        t.record(t0, ok(FAST));
        t.record(t0, timeout());
        t.record(t0, timeout());
        let change = t.record(t0 + FAST, timeout()).unwrap();
        assert_eq!(change.to, HealthState::Unhealthy);
        assert_eq!(
            change.reason,
            HealthReason::Failures {
                count: 3,
                last: FailureCategory::Timeout
            }
        );
        assert_eq!(
            change.reason.to_string(),
            "3 consecutive failed checks, last: timeout"
        );
        assert_eq!(t.last_transition(), Some(t0 + FAST));
        assert_eq!(step(&mut t, t0, timeout()), None);
        assert_eq!(t.consecutive_failures(), 4);
        let last = t.last_error().unwrap();
        assert_eq!(last.failure.category, FailureCategory::Timeout);
        assert_eq!(last.failure.message, "no answer in 10s");
    }

    #[test]
    fn a_degraded_backend_goes_unhealthy_at_the_same_threshold() {
        let mut t = tracker(2, 1);
        let t0 = Instant::now();
        t.record(t0, ok(SLOW));
        assert_eq!(step(&mut t, t0, timeout()), None);
        assert_eq!(
            step(&mut t, t0, timeout()),
            Some((HealthState::Degraded, HealthState::Unhealthy))
        );
    }

    #[test]
    fn latency_moves_between_healthy_and_degraded_at_once() {
        let mut t = tracker(3, 1);
        let t0 = Instant::now();
        t.record(t0, ok(FAST));
        let slow = t.record(t0, ok(SLOW)).unwrap();
        assert_eq!(slow.to, HealthState::Degraded);
        assert_eq!(
            slow.reason,
            HealthReason::Slow {
                latency: SLOW,
                limit: Duration::from_secs(5)
            }
        );
        // Exactly the limit is still healthy: only slower than it degrades.
        assert_eq!(
            step(&mut t, t0, ok(Duration::from_secs(5))),
            Some((HealthState::Degraded, HealthState::Healthy))
        );
    }

    #[test]
    fn one_success_recovers_with_the_default_healthy_threshold() {
        let mut t = tracker(1, 1);
        let t0 = Instant::now();
        t.record(t0, timeout());
        assert_eq!(t.state(), HealthState::Unhealthy);
        let change = t.record(t0, ok(FAST)).unwrap();
        assert_eq!(
            (change.from, change.to),
            (HealthState::Unhealthy, HealthState::Healthy)
        );
        assert_eq!(change.reason, HealthReason::Recovered { successes: 1 });
    }

    #[test]
    fn a_higher_healthy_threshold_needs_that_many_successes_in_a_row() {
        let mut t = tracker(1, 3);
        let t0 = Instant::now();
        t.record(t0, timeout());
        assert_eq!(step(&mut t, t0, ok(FAST)), None);
        assert_eq!(step(&mut t, t0, ok(FAST)), None);
        // A failure in between restarts the count.
        assert_eq!(step(&mut t, t0, timeout()), None);
        assert_eq!(step(&mut t, t0, ok(FAST)), None);
        assert_eq!(step(&mut t, t0, ok(FAST)), None);
        assert_eq!(t.state(), HealthState::Unhealthy);
        assert_eq!(
            step(&mut t, t0, ok(SLOW)),
            Some((HealthState::Unhealthy, HealthState::Degraded))
        );
    }

    #[test]
    fn unauthenticated_is_not_a_failure_and_says_why_the_backend_is_unusable() {
        let mut t = tracker(3, 1);
        let t0 = Instant::now();
        t.record(t0, ok(FAST));
        t.record(t0, timeout());
        t.record(t0, timeout());
        let change = t.record(t0, unauthorized()).unwrap();
        assert_eq!(
            (change.from, change.to),
            (HealthState::Healthy, HealthState::Unauthenticated)
        );
        assert_eq!(t.consecutive_failures(), 0);
        assert!(!t.state().is_routable());
        // Repeated 401s never accumulate into unhealthy.
        for _ in 0..10 {
            assert_eq!(step(&mut t, t0, unauthorized()), None);
        }
        // Credentials fixed: the next answer is usable at once.
        assert_eq!(
            step(&mut t, t0, ok(FAST)),
            Some((HealthState::Unauthenticated, HealthState::Healthy))
        );
    }

    #[test]
    fn an_unauthenticated_backend_that_stops_answering_becomes_unhealthy() {
        let mut t = tracker(2, 1);
        let t0 = Instant::now();
        t.record(t0, unauthorized());
        assert_eq!(step(&mut t, t0, timeout()), None);
        assert_eq!(
            step(&mut t, t0, timeout()),
            Some((HealthState::Unauthenticated, HealthState::Unhealthy))
        );
        // And one that answers 401 again while unhealthy is reachable again.
        assert_eq!(
            step(&mut t, t0, unauthorized()),
            Some((HealthState::Unhealthy, HealthState::Unauthenticated))
        );
    }

    #[test]
    fn every_record_updates_the_bookkeeping_even_without_a_transition() {
        let mut t = tracker(3, 1);
        let t0 = Instant::now();
        let t1 = t0 + Duration::from_secs(30);
        t.record(t0, ok(FAST));
        t.record(t1, timeout());
        assert_eq!(t.last_check(), Some(t1));
        assert_eq!(t.last_success(), Some(t0));
        assert_eq!(t.last_transition(), Some(t0));
        assert_eq!(t.last_error().unwrap().at, t1);
        assert_eq!(t.consecutive_successes(), 0);
    }

    #[test]
    fn a_threshold_of_one_reacts_to_the_first_failure_even_from_unknown() {
        let mut t = tracker(1, 1);
        assert_eq!(
            step(&mut t, Instant::now(), timeout()),
            Some((HealthState::Unknown, HealthState::Unhealthy))
        );
    }

    #[test]
    fn an_invalid_config_is_refused() {
        let err = HealthTracker::new(&HealthConfig {
            unhealthy_threshold: 0,
            ..HealthConfig::default()
        })
        .unwrap_err();
        assert_eq!(err.key(), "unhealthyThreshold");
    }
}
