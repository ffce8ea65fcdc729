//! Model-based test of the circuit breaker (spec §3.3).
//!
//! proptest-state-machine generates arbitrary sequences of acquires, outcomes,
//! cancellations, probe observations, timeouts, overrides and clock steps (zero steps,
//! huge steps and instants earlier than ones already seen) and runs them against both a
//! small reference model written straight from the spec and the real [`CircuitBreaker`].
//! After every step the two must agree on the answer and on the whole visible state.
//! Calls carry durations and the breaker may judge rate rules too (issue 29): the model
//! keeps every call of the current closed spell and recomputes the failure and slow-call
//! rates over the window from scratch, so each opening must happen at exactly the call
//! the definition says.
//!
//! Run deeper with `cargo xtask proptest` (PROPTEST_CASES, default 100000).

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns unwrap too

use std::time::{Duration, Instant};

use hale_core::{
    BreakerConfig, BreakerState, CallOutcome, CircuitBreaker, Override, Permit, RateRules,
    WindowCounts, WindowSize,
};
use proptest::prelude::*;

#[path = "support/rules.rs"]
mod support;
use proptest_state_machine::{ReferenceStateMachine, StateMachineTest, prop_state_machine};

/// The model clock stays within a century of the base instant, so the harness can always
/// build an `Instant` for it; durations in the configuration may still be anything.
const HORIZON: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

#[derive(Clone, Copy, Debug, PartialEq)]
enum MState {
    Closed { failures: u32 },
    Open { since: Duration, open_for: Duration },
    HalfOpen { in_flight: u32, successes: u32 },
}

impl MState {
    fn kind(self) -> BreakerState {
        match self {
            MState::Closed { .. } => BreakerState::Closed,
            MState::Open { .. } => BreakerState::Open,
            MState::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
enum Expect {
    Nothing,
    Admitted(Option<(BreakerState, BreakerState)>),
    Rejected {
        state: BreakerState,
        retry_after: Option<Duration>,
        forced: bool,
    },
    Change(Option<(BreakerState, BreakerState)>),
}

#[derive(Clone, Debug)]
struct Model {
    failure_threshold: u32,
    success_threshold: u32,
    half_open_max: u32,
    timeout: Duration,
    max_timeout: Duration,

    now: Duration,
    state: MState,
    generation: u64,
    level: u32,
    closed_since: Option<Duration>,
    override_: Option<Override>,
    rates: Option<RateRules>,
    /// The first instant a call was counted at (a time window's seconds start there).
    origin: Option<Duration>,
    /// The latest second a call was counted in (a late call counts there too).
    latest_second: u64,
    /// Calls counted since the breaker last changed state: (second, failed, slow).
    calls: Vec<(u64, bool, bool)>,
    /// Outstanding permits: (generation, holds a half-open slot).
    permits: Vec<(u64, bool)>,
    expect: Expect,
}

#[derive(Clone, Debug)]
enum Step {
    Advance(Duration),
    Acquire {
        skew: Duration,
    },
    Record {
        index: usize,
        outcome: CallOutcome,
        took: Duration,
        skew: Duration,
    },
    /// Quick successes counted in bulk (what the shared gate folds in).
    Successes {
        n: u64,
        skew: Duration,
    },
    Cancel {
        index: usize,
    },
    Observe {
        outcome: CallOutcome,
        skew: Duration,
    },
    HandleTimeout {
        skew: Duration,
    },
    ForceOpen,
    ForceClosed,
    Disable,
    ClearOverride,
    /// The driver starts it over closed.
    Reset,
}

impl Model {
    fn at(&self, skew: Duration) -> Duration {
        self.now.saturating_sub(skew)
    }

    /// The open timeout the spec asks for: `timeout × 2^level`, capped at `maxTimeout`.
    fn open_for(&self) -> Duration {
        let mut d = self.timeout;
        for _ in 0..self.level {
            d = d.saturating_mul(2);
        }
        d.min(self.max_timeout)
    }

    fn move_to(&mut self, to: MState) -> Option<(BreakerState, BreakerState)> {
        let from = self.state.kind();
        self.state = to;
        if from == to.kind() {
            return None;
        }
        self.generation += 1;
        self.calls.clear();
        Some((from, to.kind()))
    }

    /// Counts a call ending at `at` in the window; returns whether the window now trips.
    fn count(&mut self, at: Duration, failed: bool, slow: bool) -> bool {
        let Some(rules) = self.rates else {
            return false;
        };
        let origin = *self.origin.get_or_insert(at);
        let second = at.saturating_sub(origin).as_secs().max(self.latest_second);
        self.latest_second = second;
        self.calls.push((second, failed, slow));
        let c = self.window();
        if !(failed || slow) || c.calls < rules.minimum_calls {
            return false;
        }
        f64::from(c.failures) >= rules.failure_rate * f64::from(c.calls)
            || (rules.slow_call_duration.is_some()
                && f64::from(c.slow) >= rules.slow_call_rate * f64::from(c.calls))
    }

    /// The window by definition: the last N calls, or those of the last T seconds.
    fn window(&self) -> WindowCounts {
        let Some(rules) = self.rates else {
            return WindowCounts::default();
        };
        let inside: Vec<_> = match rules.window {
            WindowSize::Calls(n) => self.calls.iter().rev().take(n as usize).collect(),
            WindowSize::Seconds(n) => self
                .calls
                .iter()
                .filter(|(s, _, _)| self.latest_second - s < u64::from(n))
                .collect(),
        };
        WindowCounts {
            calls: inside.len() as u32,
            failures: inside.iter().filter(|c| c.1).count() as u32,
            slow: inside.iter().filter(|c| c.2).count() as u32,
        }
    }

    fn is_slow(&self, took: Duration) -> bool {
        self.rates
            .and_then(|r| r.slow_call_duration)
            .is_some_and(|d| took >= d)
    }

    fn handle_timeout(&mut self, at: Duration) -> Option<(BreakerState, BreakerState)> {
        match self.state {
            MState::Open { since, open_for }
                if self.override_ != Some(Override::ForcedOpen)
                    && at.saturating_sub(since) >= open_for =>
            {
                self.move_to(MState::HalfOpen {
                    in_flight: 0,
                    successes: 0,
                })
            }
            _ => None,
        }
    }

    /// `took`: `None` for a probe, which the rate window does not count.
    fn apply_outcome(
        &mut self,
        at: Duration,
        outcome: CallOutcome,
        took: Option<Duration>,
    ) -> Option<(BreakerState, BreakerState)> {
        if matches!(
            self.override_,
            Some(Override::ForcedOpen | Override::ForcedClosed)
        ) {
            return None;
        }
        let slow = took.is_some_and(|t| self.is_slow(t));
        let outcome = match (self.state, outcome) {
            // A slow trial is a failed trial.
            (MState::HalfOpen { .. }, CallOutcome::Success) if slow => CallOutcome::Failure,
            _ => outcome,
        };
        match (self.state, outcome) {
            (MState::Closed { failures }, outcome) => {
                let failed = outcome == CallOutcome::Failure;
                let failures = if failed {
                    failures.saturating_add(1)
                } else {
                    0
                };
                self.state = MState::Closed { failures };
                let tripped = took.is_some() && self.count(at, failed, slow);
                if failures < self.failure_threshold && !tripped {
                    return None;
                }
                if self
                    .closed_since
                    .is_some_and(|c| at.saturating_sub(c) >= self.max_timeout)
                {
                    self.level = 0;
                }
                let open_for = self.open_for();
                self.move_to(MState::Open {
                    since: at,
                    open_for,
                })
            }
            (MState::HalfOpen { .. }, CallOutcome::Failure) => {
                if self.open_for() < self.max_timeout {
                    self.level += 1;
                }
                let open_for = self.open_for();
                self.move_to(MState::Open {
                    since: at,
                    open_for,
                })
            }
            (
                MState::HalfOpen {
                    in_flight,
                    successes,
                },
                CallOutcome::Success,
            ) => {
                if successes + 1 >= self.success_threshold {
                    self.closed_since = Some(at);
                    self.move_to(MState::Closed { failures: 0 })
                } else {
                    self.state = MState::HalfOpen {
                        in_flight,
                        successes: successes + 1,
                    };
                    None
                }
            }
            (MState::Open { .. }, _) => None,
        }
    }

    fn release(&mut self, generation: u64, slot: bool) {
        if let (true, true, MState::HalfOpen { in_flight, .. }) =
            (generation == self.generation, slot, &mut self.state)
        {
            *in_flight -= 1;
        }
    }
}

fn skew() -> impl Strategy<Value = Duration> {
    prop_oneof![
        6 => Just(Duration::ZERO),
        1 => (0u64..5_000).prop_map(Duration::from_millis),
        1 => Just(HORIZON),
    ]
}

fn outcome() -> impl Strategy<Value = CallOutcome> {
    prop_oneof![Just(CallOutcome::Success), Just(CallOutcome::Failure)]
}

fn took() -> impl Strategy<Value = Duration> {
    prop_oneof![
        3 => Just(Duration::ZERO),
        2 => (0u64..3_000).prop_map(Duration::from_millis),
    ]
}

/// No rate rules a third of the time; otherwise small windows and thresholds, so trips
/// happen within a short sequence.
fn rates() -> impl Strategy<Value = Option<RateRules>> {
    let rules = support::rate_rules(12, 6, 8);
    prop_oneof![1 => Just(None), 2 => rules.prop_map(Some)]
}

fn timeout() -> impl Strategy<Value = Duration> {
    prop_oneof![
        8 => (1u64..2_000).prop_map(Duration::from_millis),
        1 => (1u64..u64::MAX).prop_map(Duration::from_secs),
        1 => Just(Duration::MAX),
    ]
}

struct BreakerModel;

impl ReferenceStateMachine for BreakerModel {
    type State = Model;
    type Transition = Step;

    fn init_state() -> BoxedStrategy<Model> {
        (1u32..6, 1u32..4, 1u32..4, timeout(), timeout(), rates())
            .prop_map(
                |(failure_threshold, success_threshold, half_open_max, timeout, extra, rates)| {
                    Model {
                        failure_threshold,
                        success_threshold,
                        half_open_max,
                        timeout,
                        max_timeout: timeout.saturating_add(extra),
                        now: Duration::ZERO,
                        state: MState::Closed { failures: 0 },
                        generation: 0,
                        level: 0,
                        closed_since: None,
                        override_: None,
                        rates,
                        origin: None,
                        latest_second: 0,
                        calls: Vec::new(),
                        permits: Vec::new(),
                        expect: Expect::Nothing,
                    }
                },
            )
            .boxed()
    }

    fn transitions(state: &Model) -> BoxedStrategy<Step> {
        let n = state.permits.len();
        // Boundaries are where off-by-one bugs live: sometimes step to exactly the open
        // deadline or the end of a full maxTimeout closed, or one nanosecond short of it.
        let mut edges = Vec::new();
        if let MState::Open { since, open_for } = state.state {
            edges.push(since.saturating_add(open_for));
        }
        if let Some(closed) = state.closed_since {
            edges.push(closed.saturating_add(state.max_timeout));
        }
        let edges: Vec<Duration> = edges
            .into_iter()
            .filter(|e| *e > state.now && *e <= HORIZON)
            .flat_map(|e| [e - state.now, e - state.now - Duration::from_nanos(1)])
            .collect();
        let to_edge = if edges.is_empty() {
            Just(Duration::ZERO).boxed()
        } else {
            proptest::sample::select(edges).boxed()
        };
        let advance = prop_oneof![
            3 => Just(Duration::ZERO),
            6 => (0u64..3_000).prop_map(Duration::from_millis),
            1 => (0u64..HORIZON.as_secs() / 4).prop_map(Duration::from_secs),
            3 => to_edge,
        ];
        let common = prop_oneof![
            4 => advance.prop_map(Step::Advance),
            6 => skew().prop_map(|skew| Step::Acquire { skew }),
            3 => (outcome(), skew()).prop_map(|(outcome, skew)| Step::Observe { outcome, skew }),
            2 => (0u64..30, skew()).prop_map(|(n, skew)| Step::Successes { n, skew }),
            2 => skew().prop_map(|skew| Step::HandleTimeout { skew }),
            1 => prop_oneof![
                Just(Step::ForceOpen),
                Just(Step::ForceClosed),
                Just(Step::Disable),
                Just(Step::ClearOverride),
                Just(Step::ClearOverride),
                Just(Step::Reset),
            ],
        ];
        if n == 0 {
            return common.boxed();
        }
        prop_oneof![
            3 => common,
            4 => (0..n, outcome(), took(), skew()).prop_map(|(index, outcome, took, skew)| {
                Step::Record { index, outcome, took, skew }
            }),
            1 => (0..n).prop_map(|index| Step::Cancel { index }),
        ]
        .boxed()
    }

    fn preconditions(state: &Model, step: &Step) -> bool {
        match step {
            Step::Record { index, .. } | Step::Cancel { index } => *index < state.permits.len(),
            _ => true,
        }
    }

    fn apply(mut m: Model, step: &Step) -> Model {
        m.expect = match *step {
            Step::Advance(d) => {
                m.now = m.now.saturating_add(d).min(HORIZON);
                Expect::Nothing
            }
            Step::Acquire { skew } => {
                let at = m.at(skew);
                if m.override_ == Some(Override::ForcedOpen) {
                    Expect::Rejected {
                        state: BreakerState::Open,
                        retry_after: None,
                        forced: true,
                    }
                } else {
                    let change = m.handle_timeout(at);
                    let disabled = m.override_ == Some(Override::Disabled);
                    let slot = match &mut m.state {
                        MState::Closed { .. } => Some(false),
                        MState::Open { .. } if disabled => Some(false),
                        MState::Open { since, open_for } => {
                            let left = open_for.saturating_sub(at.saturating_sub(*since));
                            m.expect = Expect::Rejected {
                                state: BreakerState::Open,
                                retry_after: Some(left),
                                forced: false,
                            };
                            None
                        }
                        MState::HalfOpen { in_flight, .. } if *in_flight < m.half_open_max => {
                            *in_flight += 1;
                            Some(true)
                        }
                        MState::HalfOpen { .. } if disabled => Some(false),
                        MState::HalfOpen { .. } => {
                            m.expect = Expect::Rejected {
                                state: BreakerState::HalfOpen,
                                retry_after: None,
                                forced: false,
                            };
                            None
                        }
                    };
                    match slot {
                        Some(slot) => {
                            m.permits.push((m.generation, slot));
                            Expect::Admitted(change)
                        }
                        None => m.expect.clone(),
                    }
                }
            }
            Step::Record {
                index,
                outcome,
                took,
                skew,
            } => {
                let (generation, slot) = m.permits.remove(index);
                if generation != m.generation {
                    Expect::Change(None)
                } else {
                    m.release(generation, slot);
                    let at = m.at(skew);
                    Expect::Change(m.apply_outcome(at, outcome, Some(took)))
                }
            }
            Step::Successes { n, skew } => {
                let at = m.at(skew);
                let counts = n > 0
                    && matches!(m.state, MState::Closed { .. })
                    && !matches!(
                        m.override_,
                        Some(Override::ForcedOpen | Override::ForcedClosed)
                    );
                if counts {
                    m.state = MState::Closed { failures: 0 };
                    for _ in 0..n {
                        m.count(at, false, false);
                    }
                }
                Expect::Nothing
            }
            Step::Cancel { index } => {
                let (generation, slot) = m.permits.remove(index);
                m.release(generation, slot);
                Expect::Nothing
            }
            Step::Observe { outcome, skew } => {
                let at = m.at(skew);
                let probe_reopens = matches!(m.state, MState::Open { .. })
                    && outcome == CallOutcome::Success
                    && matches!(m.override_, None | Some(Override::Disabled));
                if probe_reopens {
                    Expect::Change(m.move_to(MState::HalfOpen {
                        in_flight: 0,
                        successes: 0,
                    }))
                } else {
                    Expect::Change(m.apply_outcome(at, outcome, None))
                }
            }
            Step::HandleTimeout { skew } => {
                let at = m.at(skew);
                Expect::Change(m.handle_timeout(at))
            }
            Step::ForceOpen => {
                m.override_ = Some(Override::ForcedOpen);
                let since = m.now;
                Expect::Change(m.move_to(MState::Open {
                    since,
                    open_for: Duration::MAX,
                }))
            }
            Step::ForceClosed => {
                m.override_ = Some(Override::ForcedClosed);
                Expect::Change(m.move_to(MState::Closed { failures: 0 }))
            }
            Step::Disable => {
                if m.override_.is_none() {
                    m.override_ = Some(Override::Disabled);
                }
                Expect::Nothing
            }
            Step::Reset => {
                if matches!(
                    m.override_,
                    Some(Override::ForcedOpen | Override::ForcedClosed)
                ) {
                    Expect::Change(None)
                } else {
                    m.calls.clear();
                    Expect::Change(m.move_to(MState::Closed { failures: 0 }))
                }
            }
            Step::ClearOverride => match m.override_.take() {
                Some(Override::ForcedOpen | Override::ForcedClosed) => {
                    let change = m.move_to(MState::Closed { failures: 0 });
                    if change.is_none() {
                        m.generation += 1;
                    }
                    Expect::Change(change)
                }
                _ => Expect::Nothing,
            },
        };
        m
    }
}

struct Sut {
    breaker: CircuitBreaker,
    base: Instant,
    permits: Vec<Permit>,
}

struct BreakerMatchesModel;

impl StateMachineTest for BreakerMatchesModel {
    type SystemUnderTest = Sut;
    type Reference = BreakerModel;

    fn init_test(m: &Model) -> Sut {
        let config = BreakerConfig {
            failure_threshold: m.failure_threshold,
            success_threshold: m.success_threshold,
            half_open_max_requests: m.half_open_max,
            timeout: m.timeout,
            max_timeout: m.max_timeout,
            jitter: 0.0,
            rates: m.rates,
        };
        Sut {
            breaker: CircuitBreaker::new(&config, 0).expect("generated configs are valid"),
            base: Instant::now(),
            permits: Vec::new(),
        }
    }

    fn apply(mut sut: Sut, m: &Model, step: Step) -> Sut {
        // `m` is the model *after* the step; recompute the instant the step used.
        let at = |skew: Duration| sut.base + m.now.saturating_sub(skew);
        let kinds = |t: Option<hale_core::Transition>| t.map(|t| (t.from, t.to));
        let got = match step {
            Step::Advance(_) => Expect::Nothing,
            Step::Disable => {
                sut.breaker.disable();
                Expect::Nothing
            }
            Step::Acquire { skew } => match sut.breaker.try_acquire(at(skew)) {
                Ok(admitted) => {
                    sut.permits.push(admitted.permit);
                    Expect::Admitted(kinds(admitted.transition))
                }
                Err(r) => Expect::Rejected {
                    state: r.state,
                    retry_after: r.retry_after,
                    forced: r.forced,
                },
            },
            Step::Record {
                index,
                outcome,
                took,
                skew,
            } => {
                let permit = sut.permits.remove(index);
                let now = at(skew);
                Expect::Change(kinds(sut.breaker.record_timed(now, permit, outcome, took)))
            }
            Step::Successes { n, skew } => {
                sut.breaker.record_successes(at(skew), n);
                Expect::Nothing
            }
            Step::Cancel { index } => {
                let permit = sut.permits.remove(index);
                sut.breaker.cancel(permit);
                Expect::Nothing
            }
            Step::Observe { outcome, skew } => {
                Expect::Change(kinds(sut.breaker.observe(at(skew), outcome)))
            }
            Step::HandleTimeout { skew } => {
                Expect::Change(kinds(sut.breaker.handle_timeout(at(skew))))
            }
            Step::ForceOpen => Expect::Change(kinds(sut.breaker.force_open(at(Duration::ZERO)))),
            Step::Reset => Expect::Change(kinds(sut.breaker.reset(at(Duration::ZERO), "test"))),
            Step::ForceClosed => {
                Expect::Change(kinds(sut.breaker.force_closed(at(Duration::ZERO))))
            }
            Step::ClearOverride => {
                let forced = matches!(
                    sut.breaker.override_(),
                    Some(Override::ForcedOpen | Override::ForcedClosed)
                );
                let change = kinds(sut.breaker.clear_override(at(Duration::ZERO)));
                if forced {
                    Expect::Change(change)
                } else {
                    assert_eq!(change, None, "clearing no force changes no state");
                    Expect::Nothing
                }
            }
        };
        assert_eq!(got, m.expect, "answer to {step:?}");
        sut
    }

    fn check_invariants(sut: &Sut, m: &Model) {
        let snap = sut.breaker.snapshot();
        assert_eq!(snap.state, m.state.kind(), "state");
        assert_eq!(snap.generation, m.generation, "generation");
        assert_eq!(snap.override_, m.override_, "override");
        let (failures, in_flight) = match m.state {
            MState::Closed { failures } => (failures, 0),
            MState::HalfOpen { in_flight, .. } => (0, in_flight),
            MState::Open { .. } => (0, 0),
        };
        assert_eq!(snap.consecutive_failures, failures, "consecutive failures");
        assert_eq!(
            snap.window,
            m.rates.map(|_| m.window()),
            "the rate window's counts"
        );
        assert_eq!(
            snap.half_open_in_flight, in_flight,
            "half-open trials in flight"
        );
        assert!(
            in_flight <= m.half_open_max,
            "half-open admitted {in_flight} > {}",
            m.half_open_max
        );
        assert!(failures < m.failure_threshold, "closed past the threshold");
        let due = match m.state {
            MState::Open { since, open_for } if m.override_ != Some(Override::ForcedOpen) => {
                (sut.base + since).checked_add(open_for)
            }
            _ => None,
        };
        assert_eq!(sut.breaker.poll_timeout(), due, "poll_timeout");
        assert_eq!(sut.permits.len(), m.permits.len());
    }
}

prop_state_machine! {
    #![proptest_config(ProptestConfig {
        // The case count comes from PROPTEST_CASES (256 when unset); `cargo xtask
        // proptest` runs it deep.
        max_shrink_iters: 20_000,
        .. ProptestConfig::default()
    })]

    #[test]
    fn breaker_matches_the_reference_model(sequential 1..80 => BreakerMatchesModel);
}
