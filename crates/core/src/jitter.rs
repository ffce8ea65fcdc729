//! Deterministic jitter from a seed the caller injects.
//!
//! The core never reaches for a random source of its own: a driver passes a seed (from the
//! OS, a backend's name, or a test's constant) and gets the same sequence every time.

use std::time::Duration;

/// A small seeded generator (SplitMix64) that spreads durations by a ratio.
///
/// ```
/// use hale_core::Jitter;
/// use std::time::Duration;
///
/// let mut a = Jitter::new(7);
/// let mut b = Jitter::new(7);
/// let d = Duration::from_secs(10);
/// let spread = a.spread(d, 0.1);
/// assert_eq!(spread, b.spread(d, 0.1));
/// assert!(spread >= Duration::from_secs(9) && spread <= Duration::from_secs(11));
/// ```
#[derive(Clone, Debug)]
pub struct Jitter {
    state: u64,
}

impl Jitter {
    /// A generator whose sequence is fixed by `seed`.
    pub const fn new(seed: u64) -> Self {
        Jitter { state: seed }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A uniform number in `[0, 1)`.
    pub fn next_unit(&mut self) -> f64 {
        // 53 random bits fill an f64 mantissa exactly.
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// `base` scaled by a uniform factor in `[1 - ratio, 1 + ratio]`.
    ///
    /// `ratio` is clamped to `[0, 1]`; a zero ratio returns `base` untouched and draws
    /// nothing. The result saturates instead of overflowing.
    pub fn spread(&mut self, base: Duration, ratio: f64) -> Duration {
        let ratio = if ratio.is_nan() {
            0.0
        } else {
            ratio.clamp(0.0, 1.0)
        };
        if ratio == 0.0 {
            return base;
        }
        let factor = 1.0 - ratio + 2.0 * ratio * self.next_unit();
        Duration::try_from_secs_f64(base.as_secs_f64() * factor).unwrap_or(Duration::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_sequence_different_seed_different_sequence() {
        let draw = |seed| {
            let mut j = Jitter::new(seed);
            (0..8).map(|_| j.next_u64()).collect::<Vec<_>>()
        };
        assert_eq!(draw(1), draw(1));
        assert_ne!(draw(1), draw(2));
    }

    #[test]
    fn spread_stays_within_the_ratio_and_uses_both_sides() {
        let mut j = Jitter::new(42);
        let base = Duration::from_secs(60);
        let draws: Vec<_> = (0..1000).map(|_| j.spread(base, 0.2)).collect();
        assert!(draws.iter().all(|d| *d >= Duration::from_secs(48)));
        assert!(draws.iter().all(|d| *d <= Duration::from_secs(72)));
        assert!(draws.iter().any(|d| *d < Duration::from_secs(54)));
        assert!(draws.iter().any(|d| *d > Duration::from_secs(66)));
    }

    #[test]
    fn spread_of_extremes_saturates_and_odd_ratios_are_tamed() {
        let mut j = Jitter::new(3);
        assert!(j.spread(Duration::MAX, 1.0) <= Duration::MAX);
        assert_eq!(
            j.spread(Duration::from_secs(5), 0.0),
            Duration::from_secs(5)
        );
        assert_eq!(
            j.spread(Duration::from_secs(5), f64::NAN),
            Duration::from_secs(5)
        );
        assert!(j.spread(Duration::from_secs(5), 7.0) <= Duration::from_secs(10));
    }
}
