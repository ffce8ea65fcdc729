//! Every transition of the circuit breaker, walked through step by step with a hand-driven
//! clock. Each test is a story an operator would recognise.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns unwrap too

use std::time::{Duration, Instant};

use hale_core::{
    BreakerConfig, BreakerState, CallOutcome, Cause, CircuitBreaker, Override, Permit,
};

const SEC: Duration = Duration::from_secs(1);

struct Scene {
    breaker: CircuitBreaker,
    t0: Instant,
    now: Instant,
}

impl Scene {
    fn new(config: BreakerConfig) -> Self {
        let t0 = Instant::now();
        Scene {
            breaker: CircuitBreaker::new(&config, 1).unwrap(),
            t0,
            now: t0,
        }
    }

    fn default() -> Self {
        Scene::new(BreakerConfig::default())
    }

    fn wait(&mut self, d: Duration) {
        self.now += d;
    }

    fn acquire(&mut self) -> Permit {
        self.breaker
            .try_acquire(self.now)
            .expect("the breaker should admit this call")
            .permit
    }

    fn fail(&mut self) -> Option<(BreakerState, BreakerState)> {
        let p = self.acquire();
        self.breaker
            .record(self.now, p, CallOutcome::Failure)
            .map(|t| (t.from, t.to))
    }

    fn succeed(&mut self) -> Option<(BreakerState, BreakerState)> {
        let p = self.acquire();
        self.breaker
            .record(self.now, p, CallOutcome::Success)
            .map(|t| (t.from, t.to))
    }

    fn trip(&mut self) {
        while self.breaker.state() == BreakerState::Closed {
            self.fail();
        }
    }
}

#[test]
fn closed_admits_everything_and_counts_consecutive_failures() {
    let mut s = Scene::default();
    for _ in 0..4 {
        assert_eq!(s.fail(), None);
    }
    assert_eq!(s.breaker.consecutive_failures(), 4);
    assert_eq!(s.breaker.state(), BreakerState::Closed);
}

#[test]
fn a_success_resets_the_failure_count() {
    let mut s = Scene::default();
    for _ in 0..4 {
        s.fail();
    }
    assert_eq!(s.succeed(), None);
    assert_eq!(s.breaker.consecutive_failures(), 0);
    for _ in 0..4 {
        assert_eq!(s.fail(), None);
    }
    assert_eq!(s.breaker.state(), BreakerState::Closed);
}

#[test]
fn the_threshold_th_consecutive_failure_opens_it() {
    let mut s = Scene::default();
    for _ in 0..4 {
        s.fail();
    }
    let p = s.acquire();
    let t = s.breaker.record(s.now, p, CallOutcome::Failure).unwrap();
    assert_eq!((t.from, t.to), (BreakerState::Closed, BreakerState::Open));
    assert_eq!(
        t.cause,
        Cause::FailureThreshold {
            failures: 5,
            open_for: 60 * SEC
        }
    );
    assert_eq!(t.cause.to_string(), "5 consecutive failures, open for 60s");
    assert_eq!(s.breaker.snapshot().since, Some(s.now));
}

#[test]
fn open_refuses_with_the_time_left_until_the_timeout() {
    let mut s = Scene::default();
    s.trip();
    s.wait(15 * SEC);
    let refused = s.breaker.try_acquire(s.now).unwrap_err();
    assert_eq!(refused.state, BreakerState::Open);
    assert_eq!(refused.retry_after, Some(45 * SEC));
    assert!(!refused.forced);
    assert_eq!(s.breaker.snapshot().retry_at, Some(s.t0 + 60 * SEC));
    // Just before the timeout: still refused.
    s.now = s.t0 + 60 * SEC - Duration::from_nanos(1);
    assert!(s.breaker.try_acquire(s.now).is_err());
}

#[test]
fn open_moves_to_half_open_at_the_timeout_on_the_next_acquire() {
    let mut s = Scene::default();
    s.trip();
    s.wait(60 * SEC);
    // State reads stay pure: no acquire or timeout yet, so still open.
    assert_eq!(s.breaker.state(), BreakerState::Open);
    let admitted = s.breaker.try_acquire(s.now).unwrap();
    let t = admitted.transition.unwrap();
    assert_eq!((t.from, t.to), (BreakerState::Open, BreakerState::HalfOpen));
    assert_eq!(t.cause, Cause::TimeoutElapsed);
}

#[test]
fn open_moves_to_half_open_at_the_timeout_on_handle_timeout() {
    let mut s = Scene::default();
    s.trip();
    let due = s.breaker.poll_timeout().unwrap();
    assert_eq!(due, s.t0 + 60 * SEC);
    assert_eq!(s.breaker.handle_timeout(due - SEC), None);
    let t = s.breaker.handle_timeout(due).unwrap();
    assert_eq!(t.to, BreakerState::HalfOpen);
    assert_eq!(
        s.breaker.poll_timeout(),
        None,
        "half-open waits for calls, not time"
    );
    assert_eq!(s.breaker.handle_timeout(due + SEC), None);
}

#[test]
fn half_open_admits_only_the_trial_limit_at_once() {
    let mut s = Scene::new(BreakerConfig {
        half_open_max_requests: 2,
        success_threshold: 2,
        ..BreakerConfig::default()
    });
    s.trip();
    s.wait(60 * SEC);
    let a = s.acquire();
    let b = s.acquire();
    let third = s.breaker.try_acquire(s.now).unwrap_err();
    assert_eq!(third.state, BreakerState::HalfOpen);
    assert_eq!(third.retry_after, None);
    assert_eq!(s.breaker.snapshot().half_open_in_flight, 2);
    // Reporting one frees its slot for the next trial.
    assert_eq!(s.breaker.record(s.now, a, CallOutcome::Success), None);
    let c = s.acquire();
    // Two successes in a row close it; the third trial's result is then stale.
    let t = s.breaker.record(s.now, b, CallOutcome::Success).unwrap();
    assert_eq!(
        (t.from, t.to),
        (BreakerState::HalfOpen, BreakerState::Closed)
    );
    assert_eq!(t.cause, Cause::TrialsSucceeded { successes: 2 });
    assert_eq!(s.breaker.record(s.now, c, CallOutcome::Failure), None);
    assert_eq!(s.breaker.consecutive_failures(), 0);
}

#[test]
fn a_cancelled_trial_frees_its_slot_without_counting() {
    let mut s = Scene::default();
    s.trip();
    s.wait(60 * SEC);
    let trial = s.acquire();
    assert!(s.breaker.try_acquire(s.now).is_err());
    s.breaker.cancel(trial);
    assert_eq!(s.breaker.state(), BreakerState::HalfOpen);
    assert_eq!(
        s.succeed(),
        Some((BreakerState::HalfOpen, BreakerState::Closed))
    );
}

#[test]
fn a_failed_trial_reopens_with_double_the_timeout_up_to_the_cap() {
    let mut s = Scene::default();
    s.trip();
    let mut expected = [120, 240, 300, 300].map(|n| n * SEC).into_iter();
    let mut open_for = 60 * SEC;
    for _ in 0..4 {
        s.wait(open_for);
        let p = s.acquire();
        let t = s.breaker.record(s.now, p, CallOutcome::Failure).unwrap();
        assert_eq!((t.from, t.to), (BreakerState::HalfOpen, BreakerState::Open));
        open_for = expected.next().unwrap();
        assert_eq!(t.cause, Cause::TrialFailed { open_for });
        assert_eq!(s.breaker.poll_timeout(), Some(s.now + open_for));
    }
}

#[test]
fn the_doubling_is_forgotten_after_a_full_max_timeout_closed() {
    let mut s = Scene::default();
    s.trip();
    s.wait(60 * SEC);
    s.fail(); // trial fails: open for 120 s
    s.wait(120 * SEC);
    assert_eq!(
        s.succeed(),
        Some((BreakerState::HalfOpen, BreakerState::Closed))
    );

    // Re-tripped soon after closing: the backend is flapping, keep the long timeout.
    s.wait(10 * SEC);
    s.trip();
    assert_eq!(s.breaker.poll_timeout(), Some(s.now + 120 * SEC));
    s.wait(120 * SEC);
    s.succeed();

    // Closed for a whole maxTimeout (5 min): back to the base timeout.
    s.wait(300 * SEC);
    s.trip();
    assert_eq!(s.breaker.poll_timeout(), Some(s.now + 60 * SEC));
}

#[test]
fn a_late_result_from_an_older_generation_is_ignored() {
    let mut s = Scene::new(BreakerConfig {
        failure_threshold: 2,
        ..BreakerConfig::default()
    });
    let slow_call = s.acquire();
    let gen_before = s.breaker.generation();
    s.fail();
    s.fail(); // open
    assert_ne!(s.breaker.generation(), gen_before);
    s.wait(60 * SEC);
    let trial = s.acquire();
    // The slow call from before the trip finally succeeds: it must not close the breaker.
    assert_eq!(
        s.breaker.record(s.now, slow_call, CallOutcome::Success),
        None
    );
    assert_eq!(s.breaker.state(), BreakerState::HalfOpen);
    assert_eq!(
        s.breaker.snapshot().half_open_in_flight,
        1,
        "its slot was not the stale call's"
    );
    s.breaker.record(s.now, trial, CallOutcome::Failure);
    assert_eq!(s.breaker.state(), BreakerState::Open);
}

#[test]
fn observed_probe_results_count_like_calls() {
    let mut s = Scene::new(BreakerConfig {
        failure_threshold: 2,
        ..BreakerConfig::default()
    });
    assert_eq!(s.breaker.observe(s.now, CallOutcome::Failure), None);
    let t = s.breaker.observe(s.now, CallOutcome::Failure).unwrap();
    assert_eq!(t.to, BreakerState::Open);
    // While open, more failed probes change nothing.
    assert_eq!(s.breaker.observe(s.now, CallOutcome::Failure), None);
    s.wait(60 * SEC);
    s.breaker.handle_timeout(s.now);
    // Half-open: a good probe counts as a successful trial.
    let t = s.breaker.observe(s.now, CallOutcome::Success).unwrap();
    assert_eq!(t.to, BreakerState::Closed);
}

#[test]
fn a_successful_probe_while_open_admits_trials_early_but_does_not_close() {
    let mut s = Scene::default();
    s.trip();
    s.wait(60 * SEC);
    s.fail(); // the trial fails: open for 120 s
    s.wait(10 * SEC);
    let t = s.breaker.observe(s.now, CallOutcome::Success).unwrap();
    assert_eq!((t.from, t.to), (BreakerState::Open, BreakerState::HalfOpen));
    assert_eq!(t.cause, Cause::ProbeSucceeded);
    // Real calls still decide: a failed trial reopens, and the doubling goes on.
    let p = s.acquire();
    let t = s.breaker.record(s.now, p, CallOutcome::Failure).unwrap();
    assert_eq!(
        t.cause,
        Cause::TrialFailed {
            open_for: 240 * SEC
        }
    );
    // A forced-open breaker is not talked out of it by a probe.
    s.breaker.force_open(s.now);
    assert_eq!(s.breaker.observe(s.now, CallOutcome::Success), None);
    assert_eq!(s.breaker.state(), BreakerState::Open);
}

#[test]
fn forced_open_refuses_everything_until_cleared() {
    let mut s = Scene::default();
    let t = s.breaker.force_open(s.now).unwrap();
    assert_eq!(
        (t.from, t.to, t.cause),
        (BreakerState::Closed, BreakerState::Open, Cause::ForcedOpen)
    );
    s.wait(3600 * SEC);
    assert_eq!(s.breaker.handle_timeout(s.now), None);
    assert_eq!(s.breaker.poll_timeout(), None);
    let refused = s.breaker.try_acquire(s.now).unwrap_err();
    assert!(refused.forced);
    assert_eq!(refused.retry_after, None);
    assert_eq!(s.breaker.override_(), Some(Override::ForcedOpen));
    let t = s.breaker.clear_override(s.now).unwrap();
    assert_eq!(
        (t.to, t.cause),
        (BreakerState::Closed, Cause::OverrideCleared)
    );
    assert_eq!(s.breaker.override_(), None);
    assert_eq!(s.succeed(), None);
}

#[test]
fn forced_closed_admits_everything_and_ignores_failures() {
    let mut s = Scene::default();
    s.trip();
    let t = s.breaker.force_closed(s.now).unwrap();
    assert_eq!((t.from, t.to), (BreakerState::Open, BreakerState::Closed));
    for _ in 0..50 {
        assert_eq!(s.fail(), None);
    }
    assert_eq!(s.breaker.consecutive_failures(), 0);
    let under_override = s.acquire();
    // Clearing starts a fresh generation even though the state stays closed.
    assert_eq!(s.breaker.clear_override(s.now), None);
    assert_eq!(
        s.breaker
            .record(s.now, under_override, CallOutcome::Failure),
        None
    );
    assert_eq!(s.breaker.consecutive_failures(), 0);
}

#[test]
fn disabled_tracks_and_reports_but_never_refuses() {
    let mut s = Scene::default();
    s.breaker.disable();
    s.trip();
    assert_eq!(s.breaker.state(), BreakerState::Open);
    // Open, but calls still go through.
    assert_eq!(s.fail(), None);
    s.wait(60 * SEC);
    let trial = s.acquire();
    assert_eq!(s.breaker.state(), BreakerState::HalfOpen);
    let extra = s.acquire();
    s.breaker.cancel(extra);
    s.breaker.record(s.now, trial, CallOutcome::Success);
    assert_eq!(s.breaker.state(), BreakerState::Closed);
    // Enabling again keeps the tracked state.
    assert_eq!(s.breaker.clear_override(s.now), None);
    assert_eq!(s.breaker.override_(), None);
}

#[test]
fn an_instant_earlier_than_the_opening_counts_as_no_time_passed() {
    let mut s = Scene::default();
    s.wait(10 * SEC);
    s.trip();
    let before = s.now - 5 * SEC;
    let refused = s.breaker.try_acquire(before).unwrap_err();
    assert_eq!(refused.retry_after, Some(60 * SEC));
    assert_eq!(s.breaker.handle_timeout(before), None);
}

#[test]
fn a_timeout_beyond_representable_time_never_fires_and_never_panics() {
    let mut s = Scene::new(BreakerConfig {
        failure_threshold: 1,
        timeout: Duration::MAX,
        max_timeout: Duration::MAX,
        ..BreakerConfig::default()
    });
    s.trip();
    assert_eq!(s.breaker.poll_timeout(), None);
    s.wait(Duration::from_secs(100 * 365 * 24 * 3600));
    let refused = s.breaker.try_acquire(s.now).unwrap_err();
    assert!(refused.retry_after.unwrap() > Duration::from_secs(1 << 60));
}

#[test]
fn jittered_timeouts_differ_per_seed_but_repeat_per_seed() {
    let open_for = |seed| {
        let config = BreakerConfig {
            failure_threshold: 1,
            jitter: 0.5,
            ..BreakerConfig::default()
        };
        let mut b = CircuitBreaker::new(&config, seed).unwrap();
        let now = Instant::now();
        let p = b.try_acquire(now).unwrap().permit;
        b.record(now, p, CallOutcome::Failure);
        b.poll_timeout().unwrap() - now
    };
    assert_eq!(open_for(7), open_for(7));
    assert_ne!(open_for(7), open_for(8));
    for seed in 0..50 {
        let d = open_for(seed);
        assert!(d >= 30 * SEC && d <= 90 * SEC, "{d:?}");
    }
}
