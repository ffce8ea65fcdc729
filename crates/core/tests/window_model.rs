//! Model-based test of the rate windows (issue 29): arbitrary outcomes, durations and
//! clock steps against a reference that keeps every call and recomputes the window from
//! scratch each time, for call windows and time windows alike.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use hale_core::{OutcomeWindow, RateRules, Trip, WindowSize};
use proptest::prelude::*;

#[path = "support/rules.rs"]
mod support;

#[derive(Clone, Debug)]
struct Call {
    /// Milliseconds the clock moves first.
    advance_ms: u64,
    failed: bool,
    took_ms: u64,
}

fn calls() -> impl Strategy<Value = Vec<Call>> {
    prop::collection::vec(
        (
            prop_oneof![Just(0u64), 0u64..50, 0u64..3_000],
            any::<bool>(),
            0u64..3_000,
        )
            .prop_map(|(advance_ms, failed, took_ms)| Call {
                advance_ms,
                failed,
                took_ms,
            }),
        0..300,
    )
}

fn rules() -> impl Strategy<Value = RateRules> {
    support::rate_rules(40, 20, 20)
}

/// The verdict straight from the definition: the calls in the window, their rates, the
/// thresholds (failures first).
fn reference(rules: &RateRules, seen: &[(u64, bool, u64)], now_ms: u64) -> Option<Trip> {
    let in_window: Vec<&(u64, bool, u64)> = match rules.window {
        WindowSize::Calls(n) => seen.iter().rev().take(n as usize).collect(),
        WindowSize::Seconds(n) => seen
            .iter()
            .filter(|(at, _, _)| now_ms / 1000 - at / 1000 < u64::from(n))
            .collect(),
    };
    let calls = in_window.len() as u32;
    if calls == 0 || calls < rules.minimum_calls {
        return None;
    }
    let failures = in_window.iter().filter(|c| c.1).count() as u32;
    let slow = in_window
        .iter()
        .filter(|c| {
            rules
                .slow_call_duration
                .is_some_and(|d| Duration::from_millis(c.2) >= d)
        })
        .count() as u32;
    let percent = |n: u32| n * 100 / calls;
    if f64::from(failures) >= rules.failure_rate * f64::from(calls) {
        return Some(Trip::FailureRate {
            percent: percent(failures),
            calls,
        });
    }
    if rules.slow_call_duration.is_some()
        && f64::from(slow) >= rules.slow_call_rate * f64::from(calls)
    {
        return Some(Trip::SlowCallRate {
            percent: percent(slow),
            calls,
        });
    }
    None
}

proptest! {
    #[test]
    fn the_window_agrees_with_the_definition_after_every_call(rules in rules(), calls in calls()) {
        let origin = Instant::now();
        let mut window = OutcomeWindow::new(&rules, origin).unwrap();
        let mut seen = Vec::new();
        let mut now_ms = 0u64;
        for call in calls {
            now_ms += call.advance_ms;
            let now = origin + Duration::from_millis(now_ms);
            window.record(now, call.failed, Duration::from_millis(call.took_ms));
            seen.push((now_ms, call.failed, call.took_ms));
            prop_assert_eq!(window.judge(now), reference(&rules, &seen, now_ms), "after {} calls at {} ms", seen.len(), now_ms);
            // And a while later, with nothing recorded in between (a time window ages).
            let later = now_ms + 1_500;
            prop_assert_eq!(
                window.judge(origin + Duration::from_millis(later)),
                reference(&rules, &seen, later)
            );
        }
        window.clear();
        prop_assert_eq!(window.counts(origin + Duration::from_millis(now_ms)).calls, 0);
    }
}
