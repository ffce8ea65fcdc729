//! Arbitrary rate rules for the model tests (the window's and the breaker's).

use std::time::Duration;

use hale_core::{RateRules, WindowSize};
use proptest::prelude::*;

/// Rules with windows of up to `calls` calls or `seconds` seconds and `minimumCalls`
/// below `minimum`; thresholds anywhere in 1–100 %, a slow threshold or none.
pub(crate) fn rate_rules(
    calls: u32,
    seconds: u32,
    minimum: u32,
) -> impl Strategy<Value = RateRules> {
    (
        prop_oneof![
            (1u32..calls).prop_map(WindowSize::Calls),
            (1u32..seconds).prop_map(WindowSize::Seconds)
        ],
        1u32..minimum,
        1u32..=100,
        prop::option::of(1u64..2_000),
        1u32..=100,
    )
        .prop_map(
            |(window, minimum_calls, failure, slow_ms, slow_rate)| RateRules {
                window,
                minimum_calls,
                failure_rate: f64::from(failure) / 100.0,
                slow_call_duration: slow_ms.map(Duration::from_millis),
                slow_call_rate: f64::from(slow_rate) / 100.0,
            },
        )
}
