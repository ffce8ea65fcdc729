//! Model-based test of the health tracker (spec §3.3): arbitrary check results at
//! arbitrary instants (equal, earlier, far later) against a reference model written
//! straight from spec §3.1.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns unwrap too

use std::time::{Duration, Instant};

use hale_core::{CheckOutcome, FailureCategory, HealthConfig, HealthState, HealthTracker};
use proptest::prelude::*;
use proptest_state_machine::{ReferenceStateMachine, StateMachineTest, prop_state_machine};

#[derive(Clone, Debug)]
struct Model {
    unhealthy_threshold: u32,
    healthy_threshold: u32,
    degraded_latency: Duration,

    state: HealthState,
    failures: u32,
    successes: u32,
    now: Duration,
    last_check: Option<Duration>,
    last_success: Option<Duration>,
    last_error: Option<(FailureCategory, Duration)>,
    last_transition: Option<Duration>,
    last_latency: Option<Duration>,
    expect: Option<(HealthState, HealthState)>,
}

#[derive(Clone, Debug)]
enum Check {
    Success { latency: Duration },
    Unauthenticated,
    Failure(FailureCategory),
}

#[derive(Clone, Debug)]
struct Step {
    /// How far the clock moves before the check (zero for equal instants).
    advance: Duration,
    /// How far before "now" the check is stamped (out-of-order delivery).
    skew: Duration,
    check: Check,
}

struct HealthModel;

impl ReferenceStateMachine for HealthModel {
    type State = Model;
    type Transition = Step;

    fn init_state() -> BoxedStrategy<Model> {
        (1u32..6, 1u32..4, 1u64..10_000)
            .prop_map(|(unhealthy, healthy, degraded_ms)| Model {
                unhealthy_threshold: unhealthy,
                healthy_threshold: healthy,
                degraded_latency: Duration::from_millis(degraded_ms),
                state: HealthState::Unknown,
                failures: 0,
                successes: 0,
                now: Duration::ZERO,
                last_check: None,
                last_success: None,
                last_error: None,
                last_transition: None,
                last_latency: None,
                expect: None,
            })
            .boxed()
    }

    fn transitions(state: &Model) -> BoxedStrategy<Step> {
        let limit = state.degraded_latency;
        let latency = prop_oneof![
            (0..=limit.as_millis() as u64).prop_map(Duration::from_millis),
            Just(limit),
            Just(limit + Duration::from_nanos(1)),
            (0u64..u64::MAX).prop_map(Duration::from_nanos),
            Just(Duration::MAX),
        ];
        let category = proptest::sample::select(FailureCategory::ALL.to_vec());
        let check = prop_oneof![
            5 => latency.prop_map(|latency| Check::Success { latency }),
            1 => Just(Check::Unauthenticated),
            5 => category.prop_map(Check::Failure),
        ];
        let advance = prop_oneof![
            Just(Duration::ZERO),
            (0u64..60_000).prop_map(Duration::from_millis),
            (0u64..10 * 365 * 24 * 3600).prop_map(Duration::from_secs),
        ];
        let skew = prop_oneof![
            4 => Just(Duration::ZERO),
            1 => (0u64..120_000).prop_map(Duration::from_millis),
        ];
        (advance, skew, check)
            .prop_map(|(advance, skew, check)| Step {
                advance,
                skew,
                check,
            })
            .boxed()
    }

    fn apply(mut m: Model, step: &Step) -> Model {
        m.now = m.now.saturating_add(step.advance);
        let at = m.now.saturating_sub(step.skew);
        m.last_check = Some(at);
        let next = match step.check {
            Check::Success { latency } => {
                m.failures = 0;
                m.successes = m.successes.saturating_add(1);
                m.last_success = Some(at);
                m.last_latency = Some(latency);
                let by_latency = if latency > m.degraded_latency {
                    HealthState::Degraded
                } else {
                    HealthState::Healthy
                };
                if m.state == HealthState::Unhealthy && m.successes < m.healthy_threshold {
                    HealthState::Unhealthy
                } else {
                    by_latency
                }
            }
            Check::Unauthenticated => {
                m.failures = 0;
                m.successes = 0;
                HealthState::Unauthenticated
            }
            Check::Failure(category) => {
                m.successes = 0;
                m.failures = m.failures.saturating_add(1);
                m.last_error = Some((category, at));
                if m.failures >= m.unhealthy_threshold {
                    HealthState::Unhealthy
                } else {
                    m.state
                }
            }
        };
        m.expect = (next != m.state).then_some((m.state, next));
        if next != m.state {
            m.last_transition = Some(at);
        }
        m.state = next;
        m
    }
}

struct Sut {
    tracker: HealthTracker,
    base: Instant,
}

struct TrackerMatchesModel;

impl StateMachineTest for TrackerMatchesModel {
    type SystemUnderTest = Sut;
    type Reference = HealthModel;

    fn init_test(m: &Model) -> Sut {
        let config = HealthConfig {
            unhealthy_threshold: m.unhealthy_threshold,
            healthy_threshold: m.healthy_threshold,
            degraded_latency: m.degraded_latency,
            ..HealthConfig::default()
        };
        Sut {
            tracker: HealthTracker::new(&config).expect("generated configs are valid"),
            base: Instant::now(),
        }
    }

    fn apply(mut sut: Sut, m: &Model, step: Step) -> Sut {
        let at = sut.base + m.now.saturating_sub(step.skew);
        let outcome = match step.check {
            Check::Success { latency } => CheckOutcome::success(latency),
            Check::Unauthenticated => CheckOutcome::Unauthenticated {
                message: "401".into(),
            },
            Check::Failure(category) => CheckOutcome::failure(category, "boom"),
        };
        let got = sut.tracker.record(at, outcome).map(|t| (t.from, t.to));
        assert_eq!(got, m.expect, "transition for {step:?}");
        sut
    }

    fn check_invariants(sut: &Sut, m: &Model) {
        let t = &sut.tracker;
        let at = |d: Option<Duration>| d.map(|d| sut.base + d);
        assert_eq!(t.state(), m.state, "state");
        assert_eq!(t.consecutive_failures(), m.failures, "consecutive failures");
        assert_eq!(
            t.consecutive_successes(),
            m.successes,
            "consecutive successes"
        );
        assert_eq!(t.last_check(), at(m.last_check), "last check");
        assert_eq!(t.last_success(), at(m.last_success), "last success");
        assert_eq!(
            t.last_transition(),
            at(m.last_transition),
            "last transition"
        );
        assert_eq!(t.last_latency(), m.last_latency, "last latency");
        assert_eq!(
            t.last_error().map(|e| (e.failure.category, e.at)),
            m.last_error.map(|(c, d)| (c, sut.base + d)),
            "last error"
        );
        // The headline guarantees, stated directly.
        if m.failures >= m.unhealthy_threshold {
            assert_eq!(
                t.state(),
                HealthState::Unhealthy,
                "at or past the threshold"
            );
        }
        match m.expect {
            Some((_, HealthState::Unhealthy)) => assert_eq!(
                t.consecutive_failures(),
                m.unhealthy_threshold,
                "unhealthy exactly at the threshold"
            ),
            Some((HealthState::Unhealthy, HealthState::Healthy | HealthState::Degraded)) => {
                assert_eq!(
                    t.consecutive_successes(),
                    m.healthy_threshold,
                    "recovered after exactly healthyThreshold successes"
                )
            }
            _ => {}
        }
    }
}

prop_state_machine! {
    #![proptest_config(ProptestConfig {
        // The case count comes from PROPTEST_CASES (256 when unset).
        max_shrink_iters: 20_000,
        .. ProptestConfig::default()
    })]

    #[test]
    fn tracker_matches_the_reference_model(sequential 1..80 => TrackerMatchesModel);
}
