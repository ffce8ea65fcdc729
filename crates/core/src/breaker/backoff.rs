//! How long each opening lasts: `timeout`, doubled per re-opening from half-open, capped
//! at `maxTimeout`, forgotten after a full `maxTimeout` spent closed, spread by jitter.

use std::time::{Duration, Instant};

use crate::jitter::Jitter;

#[derive(Clone, Debug)]
pub(super) struct OpenBackoff {
    base: Duration,
    max: Duration,
    jitter_ratio: f64,
    jitter: Jitter,
    /// Doublings applied to `base` for the next opening.
    level: u32,
}

impl OpenBackoff {
    pub(super) fn new(base: Duration, max: Duration, jitter_ratio: f64, seed: u64) -> Self {
        OpenBackoff {
            base,
            max,
            jitter_ratio,
            jitter: Jitter::new(seed),
            level: 0,
        }
    }

    /// The duration of an opening from closed. A breaker that stayed closed for a full
    /// `max` since it last closed has earned the base timeout again.
    pub(super) fn opening_from_closed(
        &mut self,
        now: Instant,
        closed_since: Option<Instant>,
    ) -> Duration {
        if closed_since.is_some_and(|since| now.saturating_duration_since(since) >= self.max) {
            self.level = 0;
        }
        self.current()
    }

    /// The duration of a re-opening after a failed half-open trial: twice the last one.
    pub(super) fn reopening_from_half_open(&mut self) -> Duration {
        if self.unjittered() < self.max {
            self.level += 1;
        }
        self.current()
    }

    fn unjittered(&self) -> Duration {
        1u32.checked_shl(self.level)
            .and_then(|factor| self.base.checked_mul(factor))
            .map_or(self.max, |d| d.min(self.max))
    }

    fn current(&mut self) -> Duration {
        self.jitter
            .spread(self.unjittered(), self.jitter_ratio)
            .min(self.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_secs(60);

    #[test]
    fn doubles_per_reopening_up_to_the_cap() {
        let mut b = OpenBackoff::new(Duration::from_secs(60), 5 * MIN, 0.0, 0);
        let t0 = Instant::now();
        assert_eq!(b.opening_from_closed(t0, None), Duration::from_secs(60));
        assert_eq!(b.reopening_from_half_open(), Duration::from_secs(120));
        assert_eq!(b.reopening_from_half_open(), Duration::from_secs(240));
        assert_eq!(b.reopening_from_half_open(), Duration::from_secs(300));
        assert_eq!(b.reopening_from_half_open(), Duration::from_secs(300));
        assert_eq!(b.level, 3, "the level stops growing at the cap");
    }

    #[test]
    fn a_short_closed_spell_keeps_the_level_a_full_max_timeout_resets_it() {
        let mut b = OpenBackoff::new(Duration::from_secs(60), 5 * MIN, 0.0, 0);
        let t0 = Instant::now();
        b.opening_from_closed(t0, None);
        b.reopening_from_half_open();
        assert_eq!(
            b.opening_from_closed(t0 + 5 * MIN - Duration::from_millis(1), Some(t0)),
            Duration::from_secs(120)
        );
        assert_eq!(
            b.opening_from_closed(t0 + 5 * MIN, Some(t0)),
            Duration::from_secs(60)
        );
    }

    #[test]
    fn huge_durations_saturate_at_the_cap() {
        let mut b = OpenBackoff::new(Duration::MAX / 2, Duration::MAX, 0.0, 0);
        b.opening_from_closed(Instant::now(), None);
        for _ in 0..100 {
            assert!(b.reopening_from_half_open() <= Duration::MAX);
        }
        assert_eq!(b.reopening_from_half_open(), Duration::MAX);
    }

    #[test]
    fn jitter_spreads_but_never_passes_the_cap() {
        let mut b = OpenBackoff::new(Duration::from_secs(60), 5 * MIN, 0.5, 9);
        let t0 = Instant::now();
        let first: Vec<_> = (0..200).map(|_| b.opening_from_closed(t0, None)).collect();
        assert!(first.iter().all(|d| *d >= Duration::from_secs(30)));
        assert!(first.iter().all(|d| *d <= Duration::from_secs(90)));
        assert!(first.iter().any(|d| *d != first[0]));
        for _ in 0..10 {
            assert!(b.reopening_from_half_open() <= 5 * MIN);
        }
    }
}
