//! Saying a repeated problem once per interval instead of once per occurrence.

use std::time::{Duration, Instant};

/// Lets one log line through per `interval` and counts the ones held back.
///
/// ```
/// use hale_core::RateLimitedLog;
/// use std::time::{Duration, Instant};
///
/// let mut log = RateLimitedLog::new(Duration::from_secs(10));
/// let t = Instant::now();
/// assert_eq!(log.due(t), Some(0));
/// assert_eq!(log.due(t + Duration::from_secs(1)), None);
/// assert_eq!(log.due(t + Duration::from_secs(2)), None);
/// assert_eq!(log.due(t + Duration::from_secs(10)), Some(2), "two held back since");
/// ```
#[derive(Clone, Debug)]
pub struct RateLimitedLog {
    interval: Duration,
    last: Option<Instant>,
    suppressed: u64,
}

impl RateLimitedLog {
    /// At most one line per `interval`.
    pub fn new(interval: Duration) -> Self {
        RateLimitedLog {
            interval,
            last: None,
            suppressed: 0,
        }
    }

    /// `Some(held back since the last line)` when a line is due at `now`, else `None`
    /// (and the occurrence is counted).
    pub fn due(&mut self, now: Instant) -> Option<u64> {
        match self.last {
            Some(last) if now.saturating_duration_since(last) < self.interval => {
                self.suppressed += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.suppressed))
            }
        }
    }
}
