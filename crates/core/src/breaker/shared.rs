use std::fmt;
use std::mem::ManuallyDrop;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use super::{BreakerConfig, BreakerSnapshot, CircuitBreaker, Permit, Rejected, Transition};
use crate::clock::Clock;
use crate::config::ConfigError;
use crate::outcome::CallOutcome;

/// Set in the hint while a call can be admitted without the lock (closed).
const ADMIT_FREE: u64 = 0b01;
/// Set in the hint while recording a success would change nothing (closed, no failures).
const SUCCESS_FREE: u64 = 0b10;
const FLAG_BITS: u32 = 2;

/// A [`CircuitBreaker`] shared by every task that calls one backend.
///
/// The machine sits behind a mutex, and an atomic *hint* mirrors the two facts the common
/// case needs: "closed, so admit" and "no failures counted, so a success changes nothing".
/// A healthy backend's calls therefore cost two atomic loads, take no lock and read no
/// clock; only failures, and every call while open or half-open, go through the lock and
/// ask the injected [`Clock`] for the time.
///
/// ```
/// use hale_core::{BreakerConfig, CallOutcome, SharedBreaker};
/// use std::time::Instant;
///
/// let breaker = SharedBreaker::new(&BreakerConfig::default(), 0, Instant::now)?;
/// let permit = breaker.try_acquire().expect("a new breaker is closed");
/// // ... make the call ...
/// assert!(permit.record(CallOutcome::Success).is_none());
/// # Ok::<(), hale_core::ConfigError>(())
/// ```
pub struct SharedBreaker<C> {
    hint: AtomicU64,
    machine: Mutex<CircuitBreaker>,
    clock: C,
}

impl<C> fmt::Debug for SharedBreaker<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedBreaker")
            .field("machine", &*self.lock())
            .finish_non_exhaustive()
    }
}

impl<C: Clock> SharedBreaker<C> {
    /// A closed breaker, or the first rule `config` breaks. `seed` drives the jitter;
    /// `clock` is asked for the time only off the closed fast path.
    pub fn new(config: &BreakerConfig, seed: u64, clock: C) -> Result<Self, ConfigError> {
        let machine = CircuitBreaker::new(config, seed)?;
        let shared = SharedBreaker {
            hint: AtomicU64::new(0),
            machine: Mutex::new(machine),
            clock,
        };
        shared.publish(&shared.lock());
        Ok(shared)
    }

    /// Asks to make one call. The permit reports the outcome, or frees its slot when
    /// dropped unreported.
    #[inline]
    pub fn try_acquire(&self) -> Result<SharedPermit<'_, C>, Rejected> {
        let hint = self.hint.load(Ordering::Acquire);
        if hint & ADMIT_FREE != 0 {
            return Ok(SharedPermit {
                breaker: self,
                generation: hint >> FLAG_BITS,
                slot: false,
                transition: None,
            });
        }
        self.try_acquire_locked()
    }

    #[cold]
    #[inline(never)]
    fn try_acquire_locked(&self) -> Result<SharedPermit<'_, C>, Rejected> {
        let mut machine = self.lock();
        let admitted = machine.try_acquire(self.clock.now());
        self.publish(&machine);
        let admitted = admitted?;
        Ok(SharedPermit {
            breaker: self,
            generation: admitted.permit.generation,
            slot: admitted.permit.slot,
            transition: admitted.transition.map(Box::new),
        })
    }

    /// Feeds an outcome that did not go through admission (a health probe).
    pub fn observe(&self, outcome: CallOutcome) -> Option<Transition> {
        if outcome == CallOutcome::Success && self.hint.load(Ordering::Acquire) & SUCCESS_FREE != 0
        {
            return None;
        }
        self.with(|m, now| m.observe(now, outcome))
    }

    /// See [`CircuitBreaker::poll_timeout`].
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.lock().poll_timeout()
    }

    /// See [`CircuitBreaker::handle_timeout`].
    pub fn handle_timeout(&self) -> Option<Transition> {
        self.with(|m, now| m.handle_timeout(now))
    }

    /// See [`CircuitBreaker::force_open`].
    pub fn force_open(&self) -> Option<Transition> {
        self.with(|m, now| m.force_open(now))
    }

    /// See [`CircuitBreaker::force_closed`].
    pub fn force_closed(&self) -> Option<Transition> {
        self.with(|m, now| m.force_closed(now))
    }

    /// See [`CircuitBreaker::disable`].
    pub fn disable(&self) {
        self.with(|m, _| m.disable());
    }

    /// See [`CircuitBreaker::clear_override`].
    pub fn clear_override(&self) -> Option<Transition> {
        self.with(|m, now| m.clear_override(now))
    }

    /// A consistent view of the whole breaker.
    pub fn snapshot(&self) -> BreakerSnapshot {
        self.lock().snapshot()
    }

    #[inline]
    fn record(&self, permit: Permit, outcome: CallOutcome) -> Option<Transition> {
        // A success on a clean closed breaker is a no-op whatever its generation: stale
        // permits are ignored anyway.
        if outcome == CallOutcome::Success && self.hint.load(Ordering::Acquire) & SUCCESS_FREE != 0
        {
            return None;
        }
        self.record_locked(permit, outcome)
    }

    #[cold]
    #[inline(never)]
    fn record_locked(&self, permit: Permit, outcome: CallOutcome) -> Option<Transition> {
        self.with(|m, now| m.record(now, permit, outcome))
    }

    #[cold]
    fn cancel(&self, permit: Permit) {
        let mut machine = self.lock();
        machine.cancel(permit);
        self.publish(&machine);
    }

    fn with<T>(&self, f: impl FnOnce(&mut CircuitBreaker, Instant) -> T) -> T {
        let mut machine = self.lock();
        let out = f(&mut machine, self.clock.now());
        self.publish(&machine);
        out
    }

    /// Mirrors the machine into the hint. Called with the lock held, after every change,
    /// so the hint never runs ahead of the machine.
    fn publish(&self, machine: &MutexGuard<'_, CircuitBreaker>) {
        let mut hint = machine.generation() << FLAG_BITS;
        if machine.admits_freely() {
            hint |= ADMIT_FREE;
        }
        if machine.success_is_noop() {
            hint |= SUCCESS_FREE;
        }
        self.hint.store(hint, Ordering::Release);
    }
}

impl<C> SharedBreaker<C> {
    fn lock(&self) -> MutexGuard<'_, CircuitBreaker> {
        // The machine never panics while locked, and its state is valid between any two
        // calls, so a poisoned lock (a panic elsewhere in the holder) is safe to reuse.
        self.machine.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The right to make one call through a [`SharedBreaker`].
///
/// Report the outcome with [`record`](Self::record). Dropping it unreported (a cancelled
/// request) frees its half-open slot without counting either way.
#[must_use = "report the call's outcome with record(); dropping it counts as cancelled"]
pub struct SharedPermit<'a, C: Clock> {
    breaker: &'a SharedBreaker<C>,
    generation: u64,
    slot: bool,
    /// Boxed: it is rare, and an inline `Transition` would make every fast-path permit
    /// several times larger.
    transition: Option<Box<Transition>>,
}

impl<C: Clock> fmt::Debug for SharedPermit<'_, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedPermit")
            .field("generation", &self.generation)
            .field("slot", &self.slot)
            .field("transition", &self.transition)
            .finish_non_exhaustive()
    }
}

impl<C: Clock> SharedPermit<'_, C> {
    /// The transition that admitting this call caused (open → half-open), if any.
    pub fn transition(&self) -> Option<&Transition> {
        self.transition.as_deref()
    }

    /// Reports the call's outcome, returning the transition it caused, if any.
    #[inline]
    pub fn record(self, outcome: CallOutcome) -> Option<Transition> {
        // Reported: the drop-time cancellation must not run.
        let mut this = ManuallyDrop::new(self);
        drop(this.transition.take());
        let permit = Permit {
            generation: this.generation,
            slot: this.slot,
        };
        this.breaker.record(permit, outcome)
    }
}

impl<C: Clock> Drop for SharedPermit<'_, C> {
    #[inline]
    fn drop(&mut self) {
        if self.slot {
            self.breaker.cancel(Permit {
                generation: self.generation,
                slot: true,
            });
        }
    }
}
