//! Pure, sans-IO state machines for keeping MCP traffic flowing when backends fail.
//!
//! Two machines, one per backend:
//!
//! - [`HealthTracker`] turns periodic check results into a [`HealthState`]
//!   (`unknown`, `healthy`, `degraded`, `unhealthy`, `unauthenticated`) with thresholds on
//!   both edges.
//! - [`CircuitBreaker`] turns call outcomes into admission decisions (`closed`, `open`,
//!   `half-open`), with growing open timeouts, limited half-open trials and generations.
//!   [`SharedBreaker`] puts it on the request path of many tasks at once.
//! - [`CheckLoop`] is the single-server proxy's check/retry/threshold loop (ToolHive's
//!   `TOOLHIVE_HEALTH_CHECK_*` semantics), which ends in a shutdown.
//! - [`HostPolicy`] decides whether a request's `Host` and `Origin` may reach a listener
//!   (DNS-rebinding protection for both products).
//!
//! Nothing in this crate does I/O, spawns, sleeps, logs or reads a clock. Time comes in
//! as `now: Instant`; state changes come out as values for the driver to log, count and
//! act on. [`CircuitBreaker::poll_timeout`] says when the breaker next wants
//! [`CircuitBreaker::handle_timeout`].
//!
//! ```
//! use hale_core::*;
//! use std::time::{Duration, Instant};
//!
//! let mut health = HealthTracker::new(&HealthConfig::default())?;
//! let mut breaker = CircuitBreaker::new(&BreakerConfig::default(), 42)?;
//! let start = Instant::now();
//!
//! // A check every 30 s; the backend dies after the first.
//! for (i, outcome) in [
//!     CheckOutcome::success(Duration::from_millis(4)),
//!     CheckOutcome::failure(FailureCategory::ConnectionRefused, "connection refused"),
//!     CheckOutcome::failure(FailureCategory::ConnectionRefused, "connection refused"),
//!     CheckOutcome::failure(FailureCategory::ConnectionRefused, "connection refused"),
//! ]
//! .into_iter()
//! .enumerate()
//! {
//!     let now = start + Duration::from_secs(30 * i as u64);
//!     breaker.observe(now, outcome.call_outcome());
//!     if let Some(change) = health.record(now, outcome) {
//!         println!("from={} to={} reason={}", change.from, change.to, change.reason);
//!     }
//! }
//! assert_eq!(health.state(), HealthState::Unhealthy);
//! assert!(!health.state().is_routable());
//! # Ok::<(), ConfigError>(())
//! ```

mod breaker;
mod check_loop;
mod clock;
mod config;
pub mod cors;
mod duration;
mod health;
mod jitter;
mod log_limit;
mod origin;
mod outcome;
mod window;

pub use breaker::{
    Admitted, BreakerConfig, BreakerSnapshot, BreakerState, Cause, CircuitBreaker, Override,
    Permit, Rejected, SharedBreaker, SharedPermit, Transition,
};
pub use check_loop::{Attempt, CheckLoop, CheckLoopConfig, LoopEvent};
pub use clock::Clock;
pub use config::ConfigError;
pub use duration::{DurationError, parse_go_duration};
pub use health::{
    HealthConfig, HealthReason, HealthState, HealthTracker, HealthTransition, LastError,
};
pub use jitter::Jitter;
pub use log_limit::RateLimitedLog;
pub use origin::{HostPolicy, Refusal};
pub use outcome::{CallOutcome, CheckOutcome, Failure, FailureCategory};
pub use window::{OutcomeWindow, RateRules, Trip, WindowCounts, WindowSize};
