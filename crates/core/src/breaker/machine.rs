use std::time::{Duration, Instant};

use super::backoff::OpenBackoff;
use super::{
    Admitted, BreakerConfig, BreakerSnapshot, BreakerState, Cause, Override, Permit, Rejected,
    Transition,
};
use crate::config::ConfigError;
use crate::outcome::CallOutcome;
use crate::window::{OutcomeWindow, WindowCounts};

/// A sans-IO circuit breaker for one backend.
///
/// Time comes in as `now`; state changes come out as [`Transition`] values. Nothing here
/// sleeps, spawns, logs or reads a clock: the driver calls
/// [`handle_timeout`](Self::handle_timeout) at [`poll_timeout`](Self::poll_timeout), or
/// simply lets the next [`try_acquire`](Self::try_acquire) notice that the timeout passed.
///
/// ```
/// use hale_core::{BreakerConfig, BreakerState, CallOutcome, CircuitBreaker};
/// use std::time::{Duration, Instant};
///
/// let config = BreakerConfig { failure_threshold: 2, ..Default::default() };
/// let mut breaker = CircuitBreaker::new(&config, 0)?;
/// let t0 = Instant::now();
///
/// for _ in 0..2 {
///     let call = breaker.try_acquire(t0).expect("closed admits");
///     breaker.record(t0, call.permit, CallOutcome::Failure);
/// }
/// assert_eq!(breaker.state(), BreakerState::Open);
/// let refused = breaker.try_acquire(t0 + Duration::from_secs(1)).unwrap_err();
/// assert_eq!(refused.retry_after, Some(Duration::from_secs(59)));
///
/// assert_eq!(breaker.poll_timeout(), Some(t0 + Duration::from_secs(60)));
/// let change = breaker.handle_timeout(t0 + Duration::from_secs(60)).unwrap();
/// assert_eq!(change.to, BreakerState::HalfOpen);
/// # Ok::<(), hale_core::ConfigError>(())
/// ```
#[derive(Clone, Debug)]
pub struct CircuitBreaker {
    failure_threshold: u32,
    success_threshold: u32,
    half_open_max: u32,
    rates: Option<crate::window::RateRules>,
    backoff: OpenBackoff,
    /// The rate rules' window while closed (`None` without rate rules).
    window: Option<OutcomeWindow>,

    state: State,
    generation: u64,
    override_: Option<Override>,
    since: Option<Instant>,
    /// When the breaker last closed after being open; `None` if it never opened.
    closed_since: Option<Instant>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Closed { failures: u32 },
    Open { since: Instant, open_for: Duration },
    HalfOpen { in_flight: u32, successes: u32 },
}

impl CircuitBreaker {
    /// A closed breaker, or the first rule `config` breaks. `seed` drives the jitter.
    /// A time window counts its seconds from the first outcome's instant.
    pub fn new(config: &BreakerConfig, seed: u64) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(CircuitBreaker {
            rates: config.rates,
            failure_threshold: config.failure_threshold,
            success_threshold: config.success_threshold,
            half_open_max: config.half_open_max_requests,
            backoff: OpenBackoff::new(config.timeout, config.max_timeout, config.jitter, seed),
            window: None,
            state: State::Closed { failures: 0 },
            generation: 0,
            override_: None,
            since: None,
            closed_since: None,
        })
    }

    /// Asks to make one call at `now`.
    ///
    /// Moves an open breaker whose timeout has passed to half-open first; the returned
    /// [`Admitted::transition`] says so.
    pub fn try_acquire(&mut self, now: Instant) -> Result<Admitted, Rejected> {
        if self.override_ == Some(Override::ForcedOpen) {
            return Err(Rejected {
                state: BreakerState::Open,
                retry_after: None,
                forced: true,
            });
        }
        let transition = self.handle_timeout(now);
        let disabled = self.override_ == Some(Override::Disabled);
        let slot = match &mut self.state {
            State::Closed { .. } => false,
            State::Open { since, open_for } if !disabled => {
                return Err(Rejected {
                    state: BreakerState::Open,
                    retry_after: Some(
                        open_for.saturating_sub(now.saturating_duration_since(*since)),
                    ),
                    forced: false,
                });
            }
            State::Open { .. } => false,
            State::HalfOpen { in_flight, .. } if *in_flight < self.half_open_max => {
                *in_flight += 1;
                true
            }
            State::HalfOpen { .. } if disabled => false,
            State::HalfOpen { .. } => {
                return Err(Rejected {
                    state: BreakerState::HalfOpen,
                    retry_after: None,
                    forced: false,
                });
            }
        };
        Ok(Admitted {
            permit: Permit {
                generation: self.generation,
                slot,
            },
            transition,
        })
    }

    /// Reports the outcome of an admitted call. Outcomes of permits issued before the
    /// last state change are stale and ignored, as is everything while forced.
    pub fn record(
        &mut self,
        now: Instant,
        permit: Permit,
        outcome: CallOutcome,
    ) -> Option<Transition> {
        self.record_timed(now, permit, outcome, Duration::ZERO)
    }

    /// [`record`](Self::record) for a call that took `took`: with a
    /// `slowCallDurationThreshold`, a call at least that long counts as slow in the rate
    /// window whether it failed or not, and a slow half-open trial reopens the breaker.
    pub fn record_timed(
        &mut self,
        now: Instant,
        permit: Permit,
        outcome: CallOutcome,
        took: Duration,
    ) -> Option<Transition> {
        if permit.generation != self.generation {
            return None;
        }
        self.release(&permit);
        self.apply(now, outcome, Some(took))
    }

    /// Counts `n` quick successful calls of the current generation that ended by `now`
    /// at once: what [`SharedBreaker`](crate::SharedBreaker) tallied without the lock.
    /// Only a closed breaker counts them (a success never changes its state); it restarts
    /// the consecutive count and adds them to the rate window.
    pub fn record_successes(&mut self, now: Instant, n: u64) {
        if n == 0
            || matches!(
                self.override_,
                Some(Override::ForcedOpen | Override::ForcedClosed)
            )
        {
            return;
        }
        if let State::Closed { failures } = &mut self.state {
            *failures = 0;
            if let Some(window) = self.window_at(now) {
                window.record_successes(now, n);
            }
        }
    }

    /// What the rate window holds at `now` (`None` without rate rules).
    pub fn window_counts(&self, now: Instant) -> Option<WindowCounts> {
        self.window_view(|w| w.counts(now))
    }

    /// Whether a call that took `took` is slow by the rules.
    pub fn is_slow(&self, took: Duration) -> bool {
        self.rates.is_some_and(|r| r.is_slow(took))
    }

    /// The window as `f` reads it; empty before the first call, `None` without rules.
    fn window_view(&self, f: impl Fn(&OutcomeWindow) -> WindowCounts) -> Option<WindowCounts> {
        self.rates
            .map(|_| self.window.as_ref().map_or_else(WindowCounts::default, f))
    }

    fn window_at(&mut self, now: Instant) -> Option<&mut OutcomeWindow> {
        let rules = self.rates.as_ref()?;
        if self.window.is_none() {
            // Validated with the configuration: cannot fail.
            self.window = OutcomeWindow::new(rules, now).ok();
        }
        self.window.as_mut()
    }

    /// Gives back a permit whose call never produced an outcome (cancelled, dropped),
    /// freeing its half-open trial slot without counting either way.
    pub fn cancel(&mut self, permit: Permit) {
        if permit.generation == self.generation {
            self.release(&permit);
        }
    }

    /// Feeds an outcome that was not admitted through this breaker, such as a health
    /// probe: closed and half-open count it as if a call had been made now. An open
    /// breaker ignores a failed probe, and takes a successful one as news that the backend
    /// is back: it goes half-open at once and lets real calls decide, instead of keeping
    /// the backend's traffic away for the rest of a (possibly doubled) timeout. This is
    /// Envoy's `successful_active_health_check_uneject_host`, made cautious.
    pub fn observe(&mut self, now: Instant, outcome: CallOutcome) -> Option<Transition> {
        match (self.state, outcome, self.override_) {
            (State::Open { .. }, CallOutcome::Success, None | Some(Override::Disabled)) => self
                .move_to(
                    now,
                    State::HalfOpen {
                        in_flight: 0,
                        successes: 0,
                    },
                    Cause::ProbeSucceeded,
                ),
            _ => self.apply(now, outcome, None),
        }
    }

    /// When the breaker next wants [`handle_timeout`](Self::handle_timeout): the end of
    /// the open timeout, or `None` when nothing is timed (or the time is beyond
    /// representation).
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            State::Open { since, open_for } if self.override_ != Some(Override::ForcedOpen) => {
                since.checked_add(open_for)
            }
            _ => None,
        }
    }

    /// Moves an open breaker to half-open once its timeout has passed at `now`.
    pub fn handle_timeout(&mut self, now: Instant) -> Option<Transition> {
        match self.state {
            State::Open { since, open_for } if self.override_ != Some(Override::ForcedOpen) => {
                self.open(now, since, open_for)
            }
            _ => None,
        }
    }

    /// Refuses every call until [`clear_override`](Self::clear_override).
    pub fn force_open(&mut self, now: Instant) -> Option<Transition> {
        self.override_ = Some(Override::ForcedOpen);
        self.move_to(
            now,
            State::Open {
                since: now,
                open_for: Duration::MAX,
            },
            Cause::ForcedOpen,
        )
    }

    /// Admits every call and ignores outcomes until [`clear_override`](Self::clear_override).
    pub fn force_closed(&mut self, now: Instant) -> Option<Transition> {
        self.override_ = Some(Override::ForcedClosed);
        self.move_to(now, State::Closed { failures: 0 }, Cause::ForcedClosed)
    }

    /// Keeps tracking and reporting, but never refuses a call.
    pub fn disable(&mut self) {
        if self.override_.is_none() {
            self.override_ = Some(Override::Disabled);
        }
    }

    /// Ends an override. A forced breaker starts over closed; a disabled one keeps the
    /// state it tracked and starts enforcing it.
    pub fn clear_override(&mut self, now: Instant) -> Option<Transition> {
        match self.override_.take() {
            Some(Override::ForcedOpen | Override::ForcedClosed) => {
                let change =
                    self.move_to(now, State::Closed { failures: 0 }, Cause::OverrideCleared);
                // Even forced-closed → closed starts a new generation: outcomes of calls
                // admitted under the override must not count afterwards.
                if change.is_none() {
                    self.generation += 1;
                }
                change
            }
            Some(Override::Disabled) | None => None,
        }
    }

    /// Starts over closed, forgetting its consecutive count and rate window (`why` goes
    /// in the transition's cause). An operator's forced state stays; a closed breaker
    /// stays closed (no transition) with nothing counted.
    pub fn reset(&mut self, now: Instant, why: &'static str) -> Option<Transition> {
        if matches!(
            self.override_,
            Some(Override::ForcedOpen | Override::ForcedClosed)
        ) {
            return None;
        }
        if let Some(w) = &mut self.window {
            w.clear();
        }
        self.move_to(now, State::Closed { failures: 0 }, Cause::Reset { why })
    }

    /// The current state. Pure: an open breaker whose timeout passed still reads open
    /// until `handle_timeout` or `try_acquire` runs.
    pub fn state(&self) -> BreakerState {
        match self.state {
            State::Closed { .. } => BreakerState::Closed,
            State::Open { .. } => BreakerState::Open,
            State::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }

    /// Consecutive failures counted while closed.
    pub fn consecutive_failures(&self) -> u32 {
        match self.state {
            State::Closed { failures } => failures,
            _ => 0,
        }
    }

    /// Bumped by every state change.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The override in force, if any.
    pub fn override_(&self) -> Option<Override> {
        self.override_
    }

    /// Everything about the breaker, for status pages.
    pub fn snapshot(&self) -> BreakerSnapshot {
        BreakerSnapshot {
            state: self.state(),
            since: self.since,
            retry_at: self.poll_timeout(),
            consecutive_failures: self.consecutive_failures(),
            half_open_in_flight: match self.state {
                State::HalfOpen { in_flight, .. } => in_flight,
                _ => 0,
            },
            generation: self.generation,
            override_: self.override_,
            // As of the window's latest call: a snapshot reads no clock.
            window: self.window_view(OutcomeWindow::latest_counts),
        }
    }

    /// Whether a call would be admitted without touching the state (closed, not forced
    /// open): what the shared gate's lock-free fast path relies on.
    pub(super) fn admits_freely(&self) -> bool {
        matches!(self.state, State::Closed { .. })
    }

    /// Whether recording a success would change nothing (closed with no failures
    /// counted, and no rate window to count it in).
    pub(super) fn success_is_noop(&self) -> bool {
        self.rates.is_none() && matches!(self.state, State::Closed { failures: 0 })
    }

    fn release(&mut self, permit: &Permit) {
        if let (true, State::HalfOpen { in_flight, .. }) = (permit.slot, &mut self.state) {
            *in_flight = in_flight.saturating_sub(1);
        }
    }

    /// `took`: how long a real call took; `None` for a probe, which the consecutive
    /// count sees but the rate window does not (passive health compares the two).
    fn apply(
        &mut self,
        now: Instant,
        outcome: CallOutcome,
        took: Option<Duration>,
    ) -> Option<Transition> {
        if matches!(
            self.override_,
            Some(Override::ForcedOpen | Override::ForcedClosed)
        ) {
            return None;
        }
        let slow = took.is_some_and(|t| self.is_slow(t));
        match (self.state, outcome) {
            (State::Closed { failures }, outcome) => {
                self.closed(now, failures, outcome, took.map(|_| slow))
            }
            (State::HalfOpen { successes, .. }, outcome) => {
                self.half_open(now, successes, outcome, slow)
            }
            (State::Open { .. }, _) => None,
        }
    }

    /// Closed is left after exactly `failureThreshold` consecutive failures, or when a
    /// failure or slow call brings a rate window to its threshold, for open; any success
    /// restarts the consecutive count. `slow`: `None` for a probe (not in the window).
    fn closed(
        &mut self,
        now: Instant,
        failures: u32,
        outcome: CallOutcome,
        slow: Option<bool>,
    ) -> Option<Transition> {
        let failed = outcome == CallOutcome::Failure;
        let failures = if failed {
            failures.saturating_add(1)
        } else {
            0
        };
        self.state = State::Closed { failures };
        let trip = match slow {
            Some(slow) => self.window_at(now).and_then(|w| {
                w.record_flags(now, failed, slow);
                (failed || slow).then(|| w.judge(now)).flatten()
            }),
            None => None,
        };
        if failures < self.failure_threshold && trip.is_none() {
            return None;
        }
        let open_for = self.backoff.opening_from_closed(now, self.closed_since);
        let cause = match trip {
            // The rule every operator knows is named first when both hold.
            Some(trip) if failures < self.failure_threshold => {
                Cause::RateThreshold { trip, open_for }
            }
            _ => Cause::FailureThreshold { failures, open_for },
        };
        self.move_to(
            now,
            State::Open {
                since: now,
                open_for,
            },
            cause,
        )
    }

    /// Half-open is left on the first failed (or slow) trial, for open with a doubled
    /// timeout, or after `successThreshold` consecutive successful trials, for closed.
    fn half_open(
        &mut self,
        now: Instant,
        successes: u32,
        outcome: CallOutcome,
        slow: bool,
    ) -> Option<Transition> {
        let failed = outcome == CallOutcome::Failure;
        if failed || slow {
            let open_for = self.backoff.reopening_from_half_open();
            let cause = if failed {
                Cause::TrialFailed { open_for }
            } else {
                Cause::TrialSlow { open_for }
            };
            return self.move_to(
                now,
                State::Open {
                    since: now,
                    open_for,
                },
                cause,
            );
        }
        if successes + 1 >= self.success_threshold {
            self.closed_since = Some(now);
            return self.move_to(
                now,
                State::Closed { failures: 0 },
                Cause::TrialsSucceeded {
                    successes: successes + 1,
                },
            );
        }
        if let State::HalfOpen { successes, .. } = &mut self.state {
            *successes += 1;
        }
        None
    }

    /// Open is left once `open_for` has passed since it opened, for half-open with no
    /// trial in flight. An instant earlier than the opening counts as no time passed.
    fn open(&mut self, now: Instant, since: Instant, open_for: Duration) -> Option<Transition> {
        if now.saturating_duration_since(since) < open_for {
            return None;
        }
        self.move_to(
            now,
            State::HalfOpen {
                in_flight: 0,
                successes: 0,
            },
            Cause::TimeoutElapsed,
        )
    }

    fn move_to(&mut self, now: Instant, to: State, cause: Cause) -> Option<Transition> {
        let from = self.state();
        self.state = to;
        let to = self.state();
        if from == to {
            return None;
        }
        self.generation += 1;
        self.since = Some(now);
        // Every state starts a fresh window: a closed breaker judges only calls made since
        // it (re)closed.
        if let Some(w) = &mut self.window {
            w.clear();
        }
        Some(Transition { from, to, cause })
    }
}
