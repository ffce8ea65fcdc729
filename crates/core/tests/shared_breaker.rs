//! The shared gate on the request path: many threads admit and record at once.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns unwrap too

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use hale_core::{BreakerConfig, BreakerState, CallOutcome, Clock, SharedBreaker};

/// A clock the test moves by hand, and that counts how often it is read.
#[derive(Clone)]
struct TestClock {
    base: Instant,
    offset_ms: Arc<AtomicU64>,
    reads: Arc<AtomicUsize>,
}

impl TestClock {
    fn new() -> Self {
        TestClock {
            base: Instant::now(),
            offset_ms: Arc::default(),
            reads: Arc::default(),
        }
    }
    fn advance(&self, d: Duration) {
        self.offset_ms
            .fetch_add(d.as_millis() as u64, Ordering::SeqCst);
    }
    fn reads(&self) -> usize {
        self.reads.load(Ordering::SeqCst)
    }
}

impl Clock for TestClock {
    fn now(&self) -> Instant {
        self.reads.fetch_add(1, Ordering::SeqCst);
        self.base + Duration::from_millis(self.offset_ms.load(Ordering::SeqCst))
    }
}

fn breaker(config: BreakerConfig) -> (Arc<SharedBreaker<TestClock>>, TestClock) {
    let clock = TestClock::new();
    let b = SharedBreaker::new(&config, 0, clock.clone()).unwrap();
    (Arc::new(b), clock)
}

#[test]
fn the_closed_fast_path_never_reads_the_clock() {
    let (b, clock) = breaker(BreakerConfig::default());
    let reads_at_start = clock.reads();
    for _ in 0..10_000 {
        let permit = b.try_acquire().unwrap();
        assert_eq!(permit.record(CallOutcome::Success), None);
    }
    // Dropping a closed permit unreported is free as well.
    drop(b.try_acquire().unwrap());
    assert_eq!(clock.reads(), reads_at_start);
    // A failure needs the time (it may open the breaker), and takes the slow path.
    b.try_acquire().unwrap().record(CallOutcome::Failure);
    assert!(clock.reads() > reads_at_start);
}

#[test]
fn concurrent_failures_open_it_once_and_exactly_one_caller_sees_the_transition() {
    let (b, _clock) = breaker(BreakerConfig {
        failure_threshold: 50,
        ..BreakerConfig::default()
    });
    let threads = 4;
    let barrier = Arc::new(Barrier::new(threads));
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let (b, barrier) = (b.clone(), barrier.clone());
            thread::spawn(move || {
                barrier.wait();
                let mut opened = 0;
                for _ in 0..100 {
                    if let Ok(permit) = b.try_acquire()
                        && let Some(t) = permit.record(CallOutcome::Failure)
                    {
                        assert_eq!((t.from, t.to), (BreakerState::Closed, BreakerState::Open));
                        opened += 1;
                    }
                }
                opened
            })
        })
        .collect();
    let opened: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
    assert_eq!(opened, 1);
    assert_eq!(b.snapshot().state, BreakerState::Open);
    assert!(b.try_acquire().is_err());
}

#[test]
fn concurrent_callers_in_half_open_get_exactly_the_trial_slots() {
    let (b, clock) = breaker(BreakerConfig {
        failure_threshold: 1,
        half_open_max_requests: 3,
        ..BreakerConfig::default()
    });
    b.try_acquire().unwrap().record(CallOutcome::Failure);
    clock.advance(Duration::from_secs(60));

    let threads = 8;
    let barrier = Arc::new(Barrier::new(threads));
    let admitted = Arc::new(AtomicUsize::new(0));
    let release = Arc::new(Barrier::new(threads));
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let (b, barrier, admitted, release) = (
                b.clone(),
                barrier.clone(),
                admitted.clone(),
                release.clone(),
            );
            thread::spawn(move || {
                barrier.wait();
                let permit = b.try_acquire();
                if permit.is_ok() {
                    admitted.fetch_add(1, Ordering::SeqCst);
                }
                // Hold every permit until all threads have tried.
                release.wait();
                drop(permit);
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(admitted.load(Ordering::SeqCst), 3);
    let snap = b.snapshot();
    assert_eq!(snap.state, BreakerState::HalfOpen);
    assert_eq!(
        snap.half_open_in_flight, 0,
        "dropped permits gave their slots back"
    );
}

#[test]
fn a_dropped_trial_permit_gives_its_slot_back() {
    let (b, clock) = breaker(BreakerConfig {
        failure_threshold: 1,
        ..BreakerConfig::default()
    });
    b.try_acquire().unwrap().record(CallOutcome::Failure);
    clock.advance(Duration::from_secs(60));
    let trial = b.try_acquire().unwrap();
    let t = trial.transition().unwrap();
    assert_eq!(t.to, BreakerState::HalfOpen);
    assert!(b.try_acquire().is_err());
    drop(trial); // the request was cancelled
    let retry = b.try_acquire().unwrap();
    let t = retry.record(CallOutcome::Success).unwrap();
    assert_eq!(t.to, BreakerState::Closed);
    // Closed again: the fast path is back.
    let reads = clock.reads();
    b.try_acquire().unwrap().record(CallOutcome::Success);
    assert_eq!(clock.reads(), reads);
}

#[test]
fn a_success_after_failures_resets_the_count_through_the_slow_path() {
    let (b, _clock) = breaker(BreakerConfig {
        failure_threshold: 3,
        ..BreakerConfig::default()
    });
    b.try_acquire().unwrap().record(CallOutcome::Failure);
    b.try_acquire().unwrap().record(CallOutcome::Failure);
    b.try_acquire().unwrap().record(CallOutcome::Success);
    assert_eq!(b.snapshot().consecutive_failures, 0);
    b.try_acquire().unwrap().record(CallOutcome::Failure);
    b.try_acquire().unwrap().record(CallOutcome::Failure);
    assert_eq!(b.snapshot().state, BreakerState::Closed);
}

#[test]
fn stale_fast_path_permits_are_ignored_after_a_trip() {
    let (b, _clock) = breaker(BreakerConfig {
        failure_threshold: 1,
        success_threshold: 1,
        ..BreakerConfig::default()
    });
    let old = b.try_acquire().unwrap();
    b.try_acquire().unwrap().record(CallOutcome::Failure);
    assert_eq!(b.snapshot().state, BreakerState::Open);
    assert_eq!(old.record(CallOutcome::Success), None);
    assert_eq!(b.snapshot().state, BreakerState::Open);
}

#[test]
fn overrides_and_probes_work_through_the_gate() {
    let (b, clock) = breaker(BreakerConfig {
        failure_threshold: 2,
        ..BreakerConfig::default()
    });
    assert!(b.force_open().is_some());
    assert!(b.try_acquire().unwrap_err().forced);
    assert!(b.clear_override().is_some());
    assert!(b.try_acquire().is_ok());

    b.observe(CallOutcome::Failure);
    let t = b.observe(CallOutcome::Failure).unwrap();
    assert_eq!(t.to, BreakerState::Open);
    assert_eq!(b.poll_timeout(), Some(clock.base + Duration::from_secs(60)));
    clock.advance(Duration::from_secs(60));
    assert_eq!(b.handle_timeout().unwrap().to, BreakerState::HalfOpen);

    b.disable();
    b.force_closed();
    assert!(b.try_acquire().is_ok());
}

/// Rates over the last 20 calls, judged from the first call on: only successes counted
/// on the lock-free path keep the first failures from tripping it.
fn rated() -> BreakerConfig {
    BreakerConfig {
        failure_threshold: 1000,
        rates: Some(hale_core::RateRules {
            window: hale_core::WindowSize::Calls(20),
            minimum_calls: 1,
            failure_rate: 0.5,
            ..Default::default()
        }),
        ..BreakerConfig::default()
    }
}

#[test]
fn successes_counted_without_the_lock_on_many_threads_are_all_in_the_rate() {
    let (b, clock) = breaker(rated());
    let start = Arc::new(Barrier::new(4));
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let (b, start) = (b.clone(), start.clone());
            thread::spawn(move || {
                start.wait();
                for _ in 0..1000 {
                    let p = b.try_acquire().unwrap();
                    assert!(p.record(CallOutcome::Success).is_none());
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(clock.reads(), 0, "4,000 quick successes read no clock");
    let window = b.window().unwrap();
    assert_eq!((window.calls, window.failures), (20, 0));
    // 20 calls, the last k failed: it opens when k reaches half of the window.
    for k in 1..=10 {
        let t = b.try_acquire().unwrap().record(CallOutcome::Failure);
        assert_eq!(t.is_some(), k == 10, "failure {k} of the last 20 calls");
    }
    assert_eq!(b.snapshot().state, BreakerState::Open);
}

#[test]
fn a_slow_success_is_judged_under_the_lock() {
    let mut config = rated();
    if let Some(r) = &mut config.rates {
        r.slow_call_duration = Some(Duration::from_secs(1));
        r.slow_call_rate = 0.5;
        r.minimum_calls = 4;
    }
    let (b, _) = breaker(config);
    for took in [0, 0, 2000] {
        let p = b.try_acquire().unwrap();
        assert!(
            p.record_timed(CallOutcome::Success, Duration::from_millis(took))
                .is_none()
        );
    }
    let t = b
        .try_acquire()
        .unwrap()
        .record_timed(CallOutcome::Success, Duration::from_millis(1000))
        .expect("2 of 4 calls slow: the slow-call rate trips");
    assert_eq!(
        t.cause.to_string(),
        "50 % of the last 4 calls were slow, open for 60s"
    );
}
