use std::fmt;
use std::mem::ManuallyDrop;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use super::tally::{Seen, Tally};
use super::{BreakerConfig, BreakerSnapshot, CircuitBreaker, Permit, Rejected, Transition};
use crate::clock::Clock;
use crate::config::ConfigError;
use crate::outcome::CallOutcome;
use crate::window::{RateRules, WindowCounts};

/// Set in the hint while a call can be admitted without the lock (closed).
const ADMIT_FREE: u64 = 0b01;
/// Set in the hint while recording a success would change nothing (closed, no failures,
/// no rate window to count it in).
const SUCCESS_FREE: u64 = 0b10;
const FLAG_BITS: u32 = 2;

/// A [`CircuitBreaker`] shared by every task that calls one backend.
///
/// The machine sits behind a mutex, and an atomic *hint* mirrors what the common case
/// needs: "closed, so admit" (and the generation, so a stale permit is told apart). A
/// closed breaker's quick successes are counted on the calling thread's own cache line
/// (see `tally.rs`: a plain load and store, no lock, no shared write) and folded into
/// the machine — its consecutive count and its rate window — whenever the lock is next
/// taken. A healthy backend's calls therefore take no lock and read no clock; only
/// failures, slow calls, and every call while open or half-open go through the lock and
/// ask the injected [`Clock`] for the time. A time window (`slidingWindow: 60s`) wants
/// [`tick`](Self::tick) once a second so counted calls land in the right second.
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
    /// The rate rules, read without the lock: a slow success must be judged under it.
    rates: Option<RateRules>,
    tally: Tally,
    machine: Mutex<Locked>,
    clock: C,
}

/// What the lock guards: the machine, and how much of the tally it has seen.
#[derive(Debug)]
struct Locked {
    machine: CircuitBreaker,
    seen: Seen,
}

impl<C> fmt::Debug for SharedBreaker<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedBreaker")
            .field("machine", &self.lock().machine)
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
            rates: config.rates,
            tally: Tally::default(),
            machine: Mutex::new(Locked {
                machine,
                seen: Seen::default(),
            }),
            clock,
        };
        shared.publish(&shared.lock().machine);
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
        let admitted = self.with(|m, now| m.try_acquire(now));
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

    /// Whether a call that took `took` counts as slow (`slowCallDurationThreshold`).
    #[inline]
    pub fn is_slow(&self, took: Duration) -> bool {
        self.rates.is_some_and(|r| r.is_slow(took))
    }

    /// See [`CircuitBreaker::poll_timeout`].
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.lock().machine.poll_timeout()
    }

    /// Folds the successes counted without the lock into the machine now. A time window
    /// needs this about once a second (see [`needs_ticks`](Self::needs_ticks)), or a
    /// quiet spell's calls would be counted in the second of the next failure; a call
    /// window needs it never.
    pub fn tick(&self) {
        self.with(|_, _| ());
    }

    /// Its rate rules (`None`: consecutive failures only).
    pub fn rates(&self) -> Option<RateRules> {
        self.rates
    }

    /// Whether the rate window counts seconds, so [`tick`](Self::tick) matters.
    pub fn needs_ticks(&self) -> bool {
        self.rates.is_some_and(|r| r.is_timed())
    }

    /// What the rate window holds now, every counted call folded in (`None` without rate
    /// rules).
    pub fn window(&self) -> Option<WindowCounts> {
        self.with(|m, now| m.window_counts(now))
    }

    /// See [`CircuitBreaker::handle_timeout`].
    pub fn handle_timeout(&self) -> Option<Transition> {
        self.with(|m, now| m.handle_timeout(now))
    }

    /// See [`CircuitBreaker::reset`].
    pub fn reset(&self, why: &'static str) -> Option<Transition> {
        self.with(|m, now| m.reset(now, why))
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

    /// A consistent view of the whole breaker, every counted call folded in (it takes
    /// the lock and reads the clock: for status pages and refusals; the request path
    /// asks [`state`](Self::state)).
    pub fn snapshot(&self) -> BreakerSnapshot {
        self.with(|m, _| m.snapshot())
    }

    /// The current state, from the hint alone while closed (no lock).
    #[inline]
    pub fn state(&self) -> super::BreakerState {
        if self.hint.load(Ordering::Acquire) & ADMIT_FREE != 0 {
            return super::BreakerState::Closed;
        }
        self.lock().machine.state()
    }

    #[inline]
    fn record(&self, permit: Permit, outcome: CallOutcome, took: Duration) -> Option<Transition> {
        if outcome == CallOutcome::Success && !self.is_slow(took) {
            let hint = self.hint.load(Ordering::Acquire);
            // A success on a clean closed breaker without a window is a no-op whatever
            // its generation: stale permits are ignored anyway.
            if hint & SUCCESS_FREE != 0 {
                return None;
            }
            // Closed, and the permit is of this generation: counted on this thread's
            // line, folded in by the next lock holder (a success never changes state).
            if hint & ADMIT_FREE != 0 && hint >> FLAG_BITS == permit.generation {
                self.tally.bump();
                return None;
            }
        }
        self.record_locked(permit, outcome, took)
    }

    #[cold]
    #[inline(never)]
    fn record_locked(
        &self,
        permit: Permit,
        outcome: CallOutcome,
        took: Duration,
    ) -> Option<Transition> {
        self.with(|m, now| m.record_timed(now, permit, outcome, took))
    }

    #[cold]
    fn cancel(&self, permit: Permit) {
        self.with(|m, _| m.cancel(permit));
    }

    /// Runs `f` on the machine under the lock, after folding in the successes counted
    /// without it, and publishes the result.
    fn with<T>(&self, f: impl FnOnce(&mut CircuitBreaker, Instant) -> T) -> T {
        let mut guard = self.lock();
        let now = self.clock.now();
        let Locked { machine, seen } = &mut *guard;
        machine.record_successes(now, self.tally.fold(seen));
        let out = f(machine, now);
        self.publish(machine);
        out
    }

    /// Mirrors the machine into the hint. Called with the lock held, after every change,
    /// so the hint never runs ahead of the machine.
    fn publish(&self, machine: &CircuitBreaker) {
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
    fn lock(&self) -> MutexGuard<'_, Locked> {
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
        self.record_timed(outcome, Duration::ZERO)
    }

    /// Reports the outcome of a call that took `took` (judged slow or not by
    /// `slowCallDurationThreshold`), returning the transition it caused, if any.
    #[inline]
    pub fn record_timed(self, outcome: CallOutcome, took: Duration) -> Option<Transition> {
        // Reported: the drop-time cancellation must not run.
        let mut this = ManuallyDrop::new(self);
        drop(this.transition.take());
        let permit = Permit {
            generation: this.generation,
            slot: this.slot,
        };
        this.breaker.record(permit, outcome, took)
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
