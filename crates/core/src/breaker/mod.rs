//! Circuit breaking: stop sending calls to a backend that keeps failing, and test it
//! carefully before trusting it again.
//!
//! [`CircuitBreaker`] is the sans-IO state machine (`&mut self`, `now` passed in);
//! [`SharedBreaker`] wraps it for the request path, where many tasks admit and record at
//! once and the closed state is served from one atomic load.

mod backoff;
mod config;
mod machine;
mod shared;
mod state;
mod tally;

pub use config::BreakerConfig;
pub use machine::CircuitBreaker;
pub use shared::{SharedBreaker, SharedPermit};
pub use state::{
    Admitted, BreakerSnapshot, BreakerState, Cause, Override, Permit, Rejected, Transition,
};
