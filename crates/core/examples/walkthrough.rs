//! A backend's bad afternoon, told by hale-core's two state machines.
//!
//! A scripted backend answers checks every 10 s and serves calls in between. It turns
//! slow, then dies for two minutes, then comes back. The driver below is everything a
//! real driver does (feed outcomes in, print transitions out) minus the sockets, and time
//! is simulated, so the whole afternoon runs in a blink.
//!
//! `cargo run -p hale-core --example walkthrough`

#![allow(clippy::print_stdout)] // an example talks on stdout

use std::time::{Duration, Instant};

use hale_core::{
    BreakerConfig, CheckOutcome, CircuitBreaker, FailureCategory, HealthConfig, HealthTracker,
};

/// What the backend does at a given second of the story.
fn backend(at_secs: u64) -> CheckOutcome {
    match at_secs {
        0..60 => CheckOutcome::success(Duration::from_millis(12)),
        60..90 => CheckOutcome::success(Duration::from_millis(7_500)),
        90..210 => CheckOutcome::failure(FailureCategory::ConnectionRefused, "connection refused"),
        _ => CheckOutcome::success(Duration::from_millis(15)),
    }
}

fn main() -> Result<(), hale_core::ConfigError> {
    let health_config = HealthConfig {
        check_interval: Duration::from_secs(10),
        check_timeout: Duration::from_secs(5),
        ..HealthConfig::default()
    };
    let breaker_config = BreakerConfig {
        timeout: Duration::from_secs(30),
        ..BreakerConfig::default()
    };
    let mut health = HealthTracker::new(&health_config)?;
    let mut breaker = CircuitBreaker::new(&breaker_config, 7)?;
    let start = Instant::now();
    let (mut admitted, mut refused) = (0u32, 0u32);

    println!("t=   0s  backend up; checks every 10s, a call every 2s");
    for second in (0..=300).step_by(2) {
        let now = start + Duration::from_secs(second);
        if let Some(t) = breaker.handle_timeout(now) {
            println!(
                "t={second:>4}s  circuit {} -> {}: {}",
                t.from, t.to, t.cause
            );
        }

        // A client call through the breaker.
        match breaker.try_acquire(now) {
            Ok(call) => {
                admitted += 1;
                let outcome = backend(second).call_outcome();
                if let Some(t) = breaker.record(now, call.permit, outcome) {
                    println!(
                        "t={second:>4}s  circuit {} -> {}: {}",
                        t.from, t.to, t.cause
                    );
                }
            }
            Err(_) => refused += 1,
        }

        // The periodic health check.
        if second % 10 == 0 {
            let outcome = backend(second);
            if let Some(t) = breaker.observe(now, outcome.call_outcome()) {
                println!(
                    "t={second:>4}s  circuit {} -> {}: {}",
                    t.from, t.to, t.cause
                );
            }
            if let Some(t) = health.record(now, outcome) {
                println!(
                    "t={second:>4}s  health  {} -> {}: {}",
                    t.from, t.to, t.reason
                );
            }
        }
    }
    println!(
        "done: {admitted} calls admitted, {refused} refused at once while the circuit was open; \
         health {}, circuit {}",
        health.state(),
        breaker.state()
    );
    Ok(())
}
