//! When to start a process again after it ended: a jittered exponential backoff that
//! starts over only once a run lasted long enough. No I/O, time passed in.

use std::time::Duration;

use hale_core::Jitter;

/// The restart rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RestartPolicy {
    /// The wait after the first failure.
    pub initial: Duration,
    /// The longest wait.
    pub max: Duration,
    /// A run at least this long resets the wait to `initial`.
    pub reset_after: Duration,
}

impl Default for RestartPolicy {
    fn default() -> Self {
        RestartPolicy {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(60),
            reset_after: Duration::from_secs(60),
        }
    }
}

/// Restarts so far, and the wait they call for.
///
/// ```
/// use std::time::Duration;
/// use hale_stdio::restart::{RestartPolicy, Restarts};
/// let mut r = Restarts::new(RestartPolicy::default(), 7);
/// let s = Duration::from_secs;
/// // Crashing at once: 1 s, 2 s, 4 s … (±20 %), never past a minute.
/// let first = r.ended(s(0));
/// assert!(first >= Duration::from_millis(800) && first <= Duration::from_millis(1200));
/// let second = r.ended(s(0));
/// assert!(second >= Duration::from_millis(1600) && second <= Duration::from_millis(2400));
/// for _ in 0..20 { assert!(r.ended(s(0)) <= Duration::from_secs(72)); }
/// // A run of a minute or more starts over.
/// assert!(r.ended(s(60)) <= Duration::from_millis(1200));
/// ```
#[derive(Clone, Debug)]
pub struct Restarts {
    policy: RestartPolicy,
    /// Failures in a row (runs shorter than `reset_after`).
    streak: u32,
    jitter: Jitter,
}

impl Restarts {
    /// No restarts yet; `seed` fixes the jitter.
    pub fn new(policy: RestartPolicy, seed: u64) -> Self {
        Restarts {
            policy,
            streak: 0,
            jitter: Jitter::new(seed),
        }
    }

    /// A run that lasted `uptime` ended: how long to wait before the next start.
    pub fn ended(&mut self, uptime: Duration) -> Duration {
        if uptime >= self.policy.reset_after {
            self.streak = 0;
        }
        let doubled = self
            .policy
            .initial
            .saturating_mul(1u32 << self.streak.min(20));
        self.streak = self.streak.saturating_add(1);
        self.jitter.spread(doubled.min(self.policy.max), 0.2)
    }

    /// Failures in a row so far.
    pub fn streak(&self) -> u32 {
        self.streak
    }
}
