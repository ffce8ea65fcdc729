//! Differential test against failsafe, the breaker crate users will compare us with
//! (spec §2): under a consecutive-failures policy, for any sequence of successes and
//! failures, hale's breaker (plain and shared) and failsafe open at the same call and
//! refuse the same calls afterwards.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns unwrap too

use std::time::{Duration, Instant};

use failsafe::backoff;
use failsafe::failure_policy::consecutive_failures;
use hale_core::{BreakerConfig, BreakerState, CallOutcome, CircuitBreaker, SharedBreaker};
use proptest::prelude::*;

const OPEN_FOR: Duration = Duration::from_secs(3600);

/// For each call: whether it was admitted, and the breaker state after it.
fn run_failsafe(threshold: u32, calls: &[bool]) -> Vec<(bool, bool)> {
    let breaker = failsafe::Config::new()
        .failure_policy(consecutive_failures(threshold, backoff::constant(OPEN_FOR)))
        .build();
    calls
        .iter()
        .map(|&ok| {
            let admitted = breaker.is_call_permitted();
            if admitted {
                if ok {
                    breaker.on_success();
                } else {
                    breaker.on_error();
                }
            }
            // failsafe has no state getter; its Debug output is the only window.
            let open = format!("{breaker:?}").contains("\"open\"");
            (admitted, open)
        })
        .collect()
}

fn run_hale(threshold: u32, calls: &[bool]) -> Vec<(bool, bool)> {
    let config = BreakerConfig {
        failure_threshold: threshold,
        timeout: OPEN_FOR,
        max_timeout: OPEN_FOR,
        rates: None, // failsafe judges consecutive failures only
        ..BreakerConfig::default()
    };
    let mut breaker = CircuitBreaker::new(&config, 0).unwrap();
    let now = Instant::now();
    calls
        .iter()
        .map(|&ok| {
            let admitted = match breaker.try_acquire(now) {
                Ok(a) => {
                    let outcome = if ok {
                        CallOutcome::Success
                    } else {
                        CallOutcome::Failure
                    };
                    breaker.record(now, a.permit, outcome);
                    true
                }
                Err(_) => false,
            };
            (admitted, breaker.state() == BreakerState::Open)
        })
        .collect()
}

fn run_hale_shared(threshold: u32, calls: &[bool]) -> Vec<(bool, bool)> {
    let config = BreakerConfig {
        failure_threshold: threshold,
        timeout: OPEN_FOR,
        max_timeout: OPEN_FOR,
        rates: None, // failsafe judges consecutive failures only
        ..BreakerConfig::default()
    };
    let breaker = SharedBreaker::new(&config, 0, Instant::now).unwrap();
    calls
        .iter()
        .map(|&ok| {
            let admitted = match breaker.try_acquire() {
                Ok(permit) => {
                    let outcome = if ok {
                        CallOutcome::Success
                    } else {
                        CallOutcome::Failure
                    };
                    permit.record(outcome);
                    true
                }
                Err(_) => false,
            };
            (admitted, breaker.snapshot().state == BreakerState::Open)
        })
        .collect()
}

proptest! {
    #[test]
    fn hale_and_failsafe_open_at_the_same_call(
        threshold in 1u32..8,
        // Failure-heavy, so that most sequences do reach the threshold.
        calls in proptest::collection::vec(prop::bool::weighted(0.3), 0..60),
    ) {
        let theirs = run_failsafe(threshold, &calls);
        prop_assert_eq!(&run_hale(threshold, &calls), &theirs);
        prop_assert_eq!(&run_hale_shared(threshold, &calls), &theirs);
    }
}

#[test]
fn the_comparison_does_see_failsafe_open() {
    // Guard against a differential test that passes because neither side ever opens.
    let calls = [false, true, false, false, false, true];
    let theirs = run_failsafe(3, &calls);
    assert_eq!(
        theirs,
        vec![
            (true, false),
            (true, false),
            (true, false),
            (true, false),
            (true, true),
            (false, true),
        ]
    );
    assert_eq!(run_hale(3, &calls), theirs);
}
