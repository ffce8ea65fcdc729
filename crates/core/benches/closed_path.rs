//! The breaker's closed fast path (admit + record success), hale against failsafe, single
//! threaded and with two threads on one breaker, with `Instant::now()` as the floor.
//! Spec §9 asks for hale to be at least 5× cheaper than failsafe in the same run.
//!
//! `cargo xtask bench core` (or `cargo bench -p hale-core --bench closed_path`).

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use failsafe::backoff;
use failsafe::failure_policy::{ConsecutiveFailures, consecutive_failures};
use hale_core::{BreakerConfig, CallOutcome, CircuitBreaker, SharedBreaker};

type Failsafe = failsafe::StateMachine<ConsecutiveFailures<backoff::Constant>, ()>;

fn failsafe_breaker() -> Failsafe {
    failsafe::Config::new()
        .failure_policy(consecutive_failures(
            5,
            backoff::constant(Duration::from_secs(60)),
        ))
        .build()
}

/// The default breaker: consecutive count and rate window (each quick success is
/// counted on the calling thread's line).
fn hale_shared() -> SharedBreaker<fn() -> Instant> {
    SharedBreaker::new(
        &BreakerConfig::default(),
        0,
        Instant::now as fn() -> Instant,
    )
    .expect("default config is valid")
}

/// Consecutive failures only (`rates: None`): the path before rate windows, where a
/// success on a clean breaker is a no-op.
fn hale_consecutive_only() -> SharedBreaker<fn() -> Instant> {
    let config = BreakerConfig {
        rates: None,
        ..BreakerConfig::default()
    };
    SharedBreaker::new(&config, 0, Instant::now as fn() -> Instant).expect("valid")
}

/// Runs `op` `iters` times on each of `threads` threads at once; returns the longest
/// thread's time, so the figure is the per-call cost while the others hammer the same
/// breaker.
fn contended<T: Send + Sync + 'static>(
    shared: Arc<T>,
    threads: usize,
    iters: u64,
    op: fn(&T),
) -> Duration {
    let barrier = Arc::new(Barrier::new(threads));
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let (shared, barrier) = (shared.clone(), barrier.clone());
            thread::spawn(move || {
                barrier.wait();
                let start = Instant::now();
                for _ in 0..iters {
                    op(&shared);
                }
                start.elapsed()
            })
        })
        .collect();
    handles
        .into_iter()
        .map(|h| h.join().expect("bench thread"))
        .max()
        .unwrap_or_default()
}

fn hale_call(b: &SharedBreaker<fn() -> Instant>) {
    // A real caller looks at the result only to log a transition, so that is what is
    // kept alive here: black-boxing the whole `Option<Transition>` would measure stack
    // copies of a value nobody reads.
    if let Ok(permit) = black_box(b).try_acquire() {
        black_box(permit.record(CallOutcome::Success).is_some());
    }
}

fn failsafe_call(b: &Failsafe) {
    // What failsafe's own `call` does around the closure, minus the closure.
    if black_box(b).is_call_permitted() {
        b.on_success();
    }
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("closed_path");
    g.warm_up_time(Duration::from_secs(1));
    g.measurement_time(Duration::from_secs(3));

    g.bench_function("instant_now", |b| b.iter(|| black_box(Instant::now())));
    // The hardware floor of the design: the fast path is two loads of one atomic.
    let hint = AtomicU64::new(5);
    g.bench_function("two_atomic_loads", |b| {
        b.iter(|| {
            let admit = black_box(&hint).load(Ordering::Acquire);
            let success = black_box(&hint).load(Ordering::Acquire);
            black_box(admit & success)
        })
    });

    let shared = hale_shared();
    g.bench_function("single/hale_shared", |b| b.iter(|| hale_call(&shared)));
    let shared = hale_consecutive_only();
    g.bench_function("single/hale_consecutive_only", |b| {
        b.iter(|| hale_call(&shared))
    });

    let mut machine = CircuitBreaker::new(&BreakerConfig::default(), 0).expect("valid");
    let now = Instant::now();
    g.bench_function("single/hale_machine", |b| {
        b.iter(|| {
            if let Ok(a) = machine.try_acquire(black_box(now)) {
                black_box(
                    machine
                        .record(now, a.permit, CallOutcome::Success)
                        .is_some(),
                );
            }
        })
    });

    let fs = failsafe_breaker();
    g.bench_function("single/failsafe", |b| b.iter(|| failsafe_call(&fs)));

    let shared = Arc::new(hale_shared());
    g.bench_function("two_threads/hale_shared", |b| {
        b.iter_custom(|iters| contended(shared.clone(), 2, iters, hale_call))
    });

    let shared = Arc::new(hale_consecutive_only());
    g.bench_function("two_threads/hale_consecutive_only", |b| {
        b.iter_custom(|iters| contended(shared.clone(), 2, iters, hale_call))
    });

    let fs = Arc::new(failsafe_breaker());
    g.bench_function("two_threads/failsafe", |b| {
        b.iter_custom(|iters| contended(fs.clone(), 2, iters, failsafe_call))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
