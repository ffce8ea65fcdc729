//! Health tracking: what the periodic checks of one backend add up to.
//!
//! One [`HealthTracker`] per backend turns a stream of [`CheckOutcome`](crate::CheckOutcome)s
//! into a [`HealthState`] with hysteresis on both edges, and returns a
//! [`HealthTransition`] whenever that state changes.

mod config;
mod state;
mod tracker;

pub use config::HealthConfig;
pub use state::HealthState;
pub use tracker::{HealthReason, HealthTracker, HealthTransition, LastError};
