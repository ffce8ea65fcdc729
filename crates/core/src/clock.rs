//! Where the thread-safe [`SharedBreaker`](crate::SharedBreaker) gets the time when it needs it.
//!
//! The state machines take `now` as an argument. The shared gate cannot, because its
//! closed fast path must not pay for a clock read it does not need; so it asks a
//! [`Clock`] only on the paths that look at time. The driver supplies the clock.

use std::time::Instant;

/// A source of monotonic time, supplied by the driver.
///
/// Any `Fn() -> Instant` is a clock:
///
/// ```
/// use hale_core::Clock;
/// use std::time::Instant;
///
/// let system = || Instant::now();
/// let t = system.now();
/// assert!(system.now() >= t);
/// ```
pub trait Clock {
    /// The current instant.
    fn now(&self) -> Instant;
}

impl<F: Fn() -> Instant> Clock for F {
    fn now(&self) -> Instant {
        self()
    }
}
