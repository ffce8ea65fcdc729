//! Rate windows (issue 29, first part): what a consecutive-failure count cannot see — a
//! backend or tool failing 40 % of its calls in a pattern that never fails twice in a
//! row, or answering every call slowly — judged over the last N calls or the last T
//! seconds, as Resilience4j's sliding windows judge them.
//!
//! Sans-IO like the breaker: outcomes come in with the instant they happened at and how
//! long they took; a verdict comes out. Recording is O(1) (a ring of N calls, or a ring
//! of one-second buckets); judging is O(1) for a call window and O(T) for a time window,
//! and needs doing only when a failure or a slow call arrives (a success can only lower
//! the rates).
//!
//! ```
//! use hale_core::{OutcomeWindow, RateRules, Trip, WindowSize};
//! use std::time::{Duration, Instant};
//!
//! let rules = RateRules { failure_rate: 0.3, minimum_calls: 10, ..RateRules::default() };
//! let mut window = OutcomeWindow::new(&rules, Instant::now())?;
//! let t = Instant::now();
//! // 40 % failing, never twice in a row: a consecutive count of 5 never trips.
//! for i in 0..10 {
//!     window.record(t, [1, 3, 6, 8].contains(&i), Duration::from_millis(5));
//! }
//! assert_eq!(window.judge(t), Some(Trip::FailureRate { percent: 40, calls: 10 }));
//! # Ok::<(), hale_core::ConfigError>(())
//! ```

use std::collections::VecDeque;
use std::fmt;
use std::time::{Duration, Instant};

use crate::config::{ConfigError, at_least_one};

/// How far back a window looks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WindowSize {
    /// The last this many calls (`slidingWindow: 100`).
    Calls(u32),
    /// The calls of the last this many whole seconds (`slidingWindow: 60s`).
    Seconds(u32),
}

/// The rate rules of one breaker (Resilience4j's names, under ToolHive's
/// `circuitBreaker`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RateRules {
    /// `slidingWindow` (default 100 calls).
    pub window: WindowSize,
    /// `minimumCalls`: no verdict on fewer calls in the window (default 10).
    pub minimum_calls: u32,
    /// `failureRateThreshold` as a ratio in `(0, 1]`: this share of failures or more
    /// trips (default 0.5).
    pub failure_rate: f64,
    /// `slowCallDurationThreshold`: a call this long or longer is slow, failed or not
    /// (default `None`: no call is slow).
    pub slow_call_duration: Option<Duration>,
    /// `slowCallRateThreshold` as a ratio (default 1.0: every call in the window slow).
    pub slow_call_rate: f64,
}

impl Default for RateRules {
    fn default() -> Self {
        RateRules {
            window: WindowSize::Calls(100),
            minimum_calls: 10,
            failure_rate: 0.5,
            slow_call_duration: None,
            slow_call_rate: 1.0,
        }
    }
}

impl RateRules {
    /// Whether a call that took `took` counts as slow (`slowCallDurationThreshold`).
    #[inline]
    pub fn is_slow(&self, took: Duration) -> bool {
        self.slow_call_duration.is_some_and(|t| took >= t)
    }

    /// Whether the window counts seconds (`slidingWindow: 60s`) rather than calls: calls
    /// counted elsewhere must then be folded in about every second to land in the right
    /// bucket.
    pub fn is_timed(&self) -> bool {
        matches!(self.window, WindowSize::Seconds(_))
    }

    /// Checks every rule, returning the first broken one.
    pub fn validate(&self) -> Result<(), ConfigError> {
        match self.window {
            WindowSize::Calls(n) | WindowSize::Seconds(n) => {
                at_least_one("circuitBreaker.slidingWindow", n)?;
            }
        }
        at_least_one("circuitBreaker.minimumCalls", self.minimum_calls)?;
        for (key, rate) in [
            ("circuitBreaker.failureRateThreshold", self.failure_rate),
            ("circuitBreaker.slowCallRateThreshold", self.slow_call_rate),
        ] {
            if !(rate > 0.0 && rate <= 1.0) {
                return Err(ConfigError::RateOutOfRange { key, value: rate });
            }
        }
        if self.slow_call_duration == Some(Duration::ZERO) {
            return Err(ConfigError::ZeroDuration {
                key: "circuitBreaker.slowCallDurationThreshold",
            });
        }
        Ok(())
    }
}

/// Why a window trips its breaker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trip {
    /// `percent` of the window's `calls` failed.
    FailureRate {
        /// Whole percent, rounded down.
        percent: u32,
        /// Calls in the window.
        calls: u32,
    },
    /// `percent` of the window's `calls` were slow.
    SlowCallRate {
        /// Whole percent, rounded down.
        percent: u32,
        /// Calls in the window.
        calls: u32,
    },
}

impl fmt::Display for Trip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Trip::FailureRate { percent, calls } => {
                write!(f, "{percent} % of the last {calls} calls failed")
            }
            Trip::SlowCallRate { percent, calls } => {
                write!(f, "{percent} % of the last {calls} calls were slow")
            }
        }
    }
}

/// What a window holds now.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WindowCounts {
    /// Calls in the window.
    pub calls: u32,
    /// Of which failed.
    pub failures: u32,
    /// Of which slow (failed or not).
    pub slow: u32,
}

/// One second's calls.
#[derive(Clone, Copy, Debug, Default)]
struct Bucket {
    second: u64,
    counts: WindowCounts,
}

#[derive(Clone, Debug)]
enum Ring {
    /// Each call's flags (bit 0: failed, bit 1: slow), oldest first, and their sums.
    Calls {
        size: usize,
        flags: VecDeque<u8>,
        sums: WindowCounts,
    },
    /// One bucket per second, indexed by the second modulo their number.
    Seconds { buckets: Vec<Bucket> },
}

/// A sliding window of call outcomes.
#[derive(Clone, Debug)]
pub struct OutcomeWindow {
    rules: RateRules,
    origin: Instant,
    /// The latest instant a call was counted at.
    latest: Instant,
    ring: Ring,
}

impl OutcomeWindow {
    /// An empty window, or the first rule `rules` breaks. `origin`: any instant at or
    /// before the first call (seconds are counted from it).
    pub fn new(rules: &RateRules, origin: Instant) -> Result<Self, ConfigError> {
        rules.validate()?;
        let ring = match rules.window {
            WindowSize::Calls(n) => Ring::Calls {
                size: n as usize,
                flags: VecDeque::with_capacity((n as usize).min(4096)),
                sums: WindowCounts::default(),
            },
            WindowSize::Seconds(n) => Ring::Seconds {
                buckets: vec![
                    Bucket {
                        second: u64::MAX,
                        counts: WindowCounts::default()
                    };
                    n as usize
                ],
            },
        };
        Ok(OutcomeWindow {
            rules: *rules,
            origin,
            latest: origin,
            ring,
        })
    }

    /// The second `now` falls in, counted from the origin; never earlier than the latest
    /// call's (outcomes from concurrent calls arrive a little out of order: a late one is
    /// counted with the latest, not in a bucket since reused).
    fn second(&self, now: Instant) -> u64 {
        now.max(self.latest)
            .saturating_duration_since(self.origin)
            .as_secs()
    }

    /// Adds a call that ended at `now`, `failed` or not, after `took`.
    pub fn record(&mut self, now: Instant, failed: bool, took: Duration) {
        self.record_flags(now, failed, self.rules.is_slow(took));
    }

    /// Adds a call that ended at `now`, `failed` or not, `slow` or not.
    pub fn record_flags(&mut self, now: Instant, failed: bool, slow: bool) {
        self.add(now, u8::from(failed) | (u8::from(slow) << 1), 1);
    }

    /// Adds `n` calls that succeeded quickly, all ending at `now`: what the breaker's
    /// lock-free path counted since it last looked. Costs O(min(n, window)).
    pub fn record_successes(&mut self, now: Instant, n: u64) {
        if n > 0 {
            self.add(now, 0, n);
        }
    }

    /// Adds `n` calls ending at `now` with `flag` (bit 0: failed, bit 1: slow).
    fn add(&mut self, now: Instant, flag: u8, n: u64) {
        self.latest = self.latest.max(now);
        let second = self.second(now);
        let (failed, slow) = (u32::from(flag & 1), u32::from(flag >> 1));
        match &mut self.ring {
            Ring::Calls { size, flags, sums } => {
                for _ in 0..n.min(*size as u64) {
                    if flags.len() == *size
                        && let Some(old) = flags.pop_front()
                    {
                        sums.calls -= 1;
                        sums.failures -= u32::from(old & 1);
                        sums.slow -= u32::from(old >> 1);
                    }
                    flags.push_back(flag);
                    sums.calls += 1;
                    sums.failures += failed;
                    sums.slow += slow;
                }
            }
            Ring::Seconds { buckets } => {
                let len = buckets.len() as u64;
                let b = &mut buckets[(second % len) as usize];
                if b.second != second {
                    *b = Bucket {
                        second,
                        counts: WindowCounts::default(),
                    };
                }
                let n = n.min(u64::from(u32::MAX)) as u32;
                b.counts.calls = b.counts.calls.saturating_add(n);
                b.counts.failures = b.counts.failures.saturating_add(n * failed);
                b.counts.slow = b.counts.slow.saturating_add(n * slow);
            }
        }
    }

    /// What the window held when its latest call was counted (a status page's view: it
    /// reads no clock).
    pub fn latest_counts(&self) -> WindowCounts {
        self.counts(self.latest)
    }

    /// What the window holds at `now`.
    pub fn counts(&self, now: Instant) -> WindowCounts {
        match &self.ring {
            Ring::Calls { sums, .. } => *sums,
            Ring::Seconds { buckets } => {
                let second = self.second(now);
                let n = buckets.len() as u64;
                let mut total = WindowCounts::default();
                for b in buckets {
                    // The last n whole seconds, this one included.
                    if b.second <= second && second - b.second < n {
                        total.calls += b.counts.calls;
                        total.failures += b.counts.failures;
                        total.slow += b.counts.slow;
                    }
                }
                total
            }
        }
    }

    /// The verdict at `now`: a trip if the window holds at least `minimumCalls` and a
    /// rate reached its threshold (failures first), else `None`.
    pub fn judge(&self, now: Instant) -> Option<Trip> {
        let c = self.counts(now);
        if c.calls < self.rules.minimum_calls || c.calls == 0 {
            return None;
        }
        let percent = |n: u32| ((u64::from(n) * 100) / u64::from(c.calls)) as u32;
        if f64::from(c.failures) >= self.rules.failure_rate * f64::from(c.calls) {
            return Some(Trip::FailureRate {
                percent: percent(c.failures),
                calls: c.calls,
            });
        }
        if self.rules.slow_call_duration.is_some()
            && f64::from(c.slow) >= self.rules.slow_call_rate * f64::from(c.calls)
        {
            return Some(Trip::SlowCallRate {
                percent: percent(c.slow),
                calls: c.calls,
            });
        }
        None
    }

    /// Forgets every call (the breaker closed again: a new window starts).
    pub fn clear(&mut self) {
        match &mut self.ring {
            Ring::Calls { flags, sums, .. } => {
                flags.clear();
                *sums = WindowCounts::default();
            }
            Ring::Seconds { buckets } => {
                for b in buckets {
                    b.second = u64::MAX;
                    b.counts = WindowCounts::default();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn nothing_is_judged_below_the_minimum_and_a_rate_at_the_threshold_trips() {
        let rules = RateRules {
            minimum_calls: 4,
            ..RateRules::default()
        };
        let t = Instant::now();
        let mut w = OutcomeWindow::new(&rules, t).unwrap_or_else(|e| panic!("{e}"));
        for failed in [true, true, false] {
            w.record(t, failed, ms(1));
        }
        assert_eq!(w.judge(t), None, "3 calls: below minimumCalls");
        w.record(t, false, ms(1));
        assert_eq!(
            w.judge(t),
            Some(Trip::FailureRate {
                percent: 50,
                calls: 4
            })
        );
    }

    #[test]
    fn a_slow_call_counts_whether_it_failed_or_not() {
        let rules = RateRules {
            minimum_calls: 2,
            slow_call_duration: Some(ms(1000)),
            slow_call_rate: 1.0,
            failure_rate: 1.0,
            ..RateRules::default()
        };
        let t = Instant::now();
        let mut w = OutcomeWindow::new(&rules, t).unwrap_or_else(|e| panic!("{e}"));
        w.record(t, false, ms(3000));
        w.record(t, false, ms(1000));
        assert_eq!(
            w.judge(t),
            Some(Trip::SlowCallRate {
                percent: 100,
                calls: 2
            })
        );
        w.record(t, false, ms(999));
        assert_eq!(w.judge(t), None);
    }

    #[test]
    fn a_time_window_forgets_what_is_older_than_its_seconds() {
        let rules = RateRules {
            window: WindowSize::Seconds(10),
            minimum_calls: 1,
            ..RateRules::default()
        };
        let t = Instant::now();
        let mut w = OutcomeWindow::new(&rules, t).unwrap_or_else(|e| panic!("{e}"));
        w.record(t, true, ms(1));
        assert!(w.judge(t + Duration::from_secs(9)).is_some());
        assert_eq!(w.judge(t + Duration::from_secs(10)), None, "aged out");
        assert_eq!(w.counts(t + Duration::from_secs(10)).calls, 0);
    }

    #[test]
    fn bad_rules_name_their_key() {
        let bad = |r: RateRules| {
            OutcomeWindow::new(&r, Instant::now())
                .err()
                .map(|e| e.key())
        };
        assert_eq!(
            bad(RateRules {
                window: WindowSize::Calls(0),
                ..RateRules::default()
            }),
            Some("circuitBreaker.slidingWindow")
        );
        assert_eq!(
            bad(RateRules {
                failure_rate: 0.0,
                ..RateRules::default()
            }),
            Some("circuitBreaker.failureRateThreshold")
        );
        assert_eq!(
            bad(RateRules {
                slow_call_duration: Some(Duration::ZERO),
                ..RateRules::default()
            }),
            Some("circuitBreaker.slowCallDurationThreshold")
        );
    }
}
