use std::fmt;
use std::time::{Duration, Instant};

use crate::window::{Trip, WindowCounts};

/// The three states of a circuit breaker.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum BreakerState {
    /// Calls flow; consecutive failures are counted.
    Closed,
    /// Calls are refused until the open timeout has passed.
    Open,
    /// A limited number of trial calls decide between closed and open.
    HalfOpen,
}

impl BreakerState {
    /// Every state, in a stable order (for one-hot metrics).
    pub const ALL: [BreakerState; 3] = [
        BreakerState::Closed,
        BreakerState::Open,
        BreakerState::HalfOpen,
    ];

    /// The name used in status JSON, logs and metric labels (ToolHive's strings).
    pub const fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half-open",
        }
    }
}

impl fmt::Display for BreakerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An operator's override of the breaker's own judgement.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Override {
    /// Refuse every call until the override is cleared.
    ForcedOpen,
    /// Admit every call and ignore outcomes until the override is cleared.
    ForcedClosed,
    /// Track outcomes and report states as usual, but never refuse a call.
    Disabled,
}

impl Override {
    /// A short name for status output.
    pub const fn as_str(self) -> &'static str {
        match self {
            Override::ForcedOpen => "forced-open",
            Override::ForcedClosed => "forced-closed",
            Override::Disabled => "disabled",
        }
    }
}

/// The right to make one call, and to report its outcome.
///
/// It carries the generation it was issued in: an outcome reported after the breaker has
/// changed state since is stale, and ignored. A permit is consumed by
/// [`record`](crate::CircuitBreaker::record) or [`cancel`](crate::CircuitBreaker::cancel).
#[derive(Debug, PartialEq, Eq)]
#[must_use = "a half-open permit holds a trial slot until it is recorded or cancelled"]
pub struct Permit {
    pub(super) generation: u64,
    /// Whether it holds one of the half-open trial slots.
    pub(super) slot: bool,
}

impl Permit {
    /// The generation the permit was issued in.
    pub fn generation(&self) -> u64 {
        self.generation
    }
}

/// An admitted call: its permit, and the transition admitting it caused (open → half-open
/// when the open timeout had passed).
#[derive(Debug, PartialEq, Eq)]
pub struct Admitted {
    /// Report the call's outcome with it.
    pub permit: Permit,
    /// The state change that admitting this call made, if any.
    pub transition: Option<Transition>,
}

/// A refused call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejected {
    /// The state that refused it (`Open`, or `HalfOpen` with every trial slot taken).
    pub state: BreakerState,
    /// How long until the breaker will admit a trial call, when that is known.
    pub retry_after: Option<Duration>,
    /// The refusal comes from [`Override::ForcedOpen`].
    pub forced: bool,
}

/// A change of breaker state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transition {
    /// The state before.
    pub from: BreakerState,
    /// The state after.
    pub to: BreakerState,
    /// Why.
    pub cause: Cause,
}

/// Why a breaker changed state; its `Display` is what goes after `reason=` in logs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cause {
    /// `failureThreshold` consecutive failures while closed.
    FailureThreshold {
        /// Failures counted.
        failures: u32,
        /// How long it stays open.
        open_for: Duration,
    },
    /// A rate window (`failureRateThreshold` or `slowCallRateThreshold`) tripped while
    /// closed.
    RateThreshold {
        /// Which rate, and how much of the window.
        trip: Trip,
        /// How long it stays open.
        open_for: Duration,
    },
    /// The open timeout passed.
    TimeoutElapsed,
    /// A health probe succeeded while open.
    ProbeSucceeded,
    /// A trial call failed while half-open.
    TrialFailed {
        /// How long it stays open this time.
        open_for: Duration,
    },
    /// A trial call succeeded, but slower than `slowCallDurationThreshold`: a crawling
    /// backend is not trusted again on one slow answer.
    TrialSlow {
        /// How long it stays open this time.
        open_for: Duration,
    },
    /// `successThreshold` trial calls in a row succeeded.
    TrialsSucceeded {
        /// Successes counted.
        successes: u32,
    },
    /// An operator forced it open.
    ForcedOpen,
    /// An operator forced it closed.
    ForcedClosed,
    /// An operator cleared a forced state; the breaker starts over closed.
    OverrideCleared,
    /// The driver started it over closed, for the reason given (a tool's breaker when
    /// its backend recovered: what it counted was the backend's trouble).
    Reset {
        /// Why, as the logs say it.
        why: &'static str,
    },
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Cause::FailureThreshold { failures, open_for } => {
                write!(f, "{failures} consecutive failures, open for {open_for:?}")
            }
            Cause::RateThreshold { trip, open_for } => write!(f, "{trip}, open for {open_for:?}"),
            Cause::TimeoutElapsed => f.write_str("open timeout elapsed, admitting trial calls"),
            Cause::ProbeSucceeded => {
                f.write_str("health probe succeeded while open, admitting trial calls")
            }
            Cause::TrialFailed { open_for } => {
                write!(f, "trial call failed, open for {open_for:?}")
            }
            Cause::TrialSlow { open_for } => {
                write!(f, "trial call was slow, open for {open_for:?}")
            }
            Cause::TrialsSucceeded { successes: 1 } => f.write_str("trial call succeeded"),
            Cause::TrialsSucceeded { successes } => {
                write!(f, "{successes} trial calls in a row succeeded")
            }
            Cause::ForcedOpen => f.write_str("forced open by operator"),
            Cause::ForcedClosed => f.write_str("forced closed by operator"),
            Cause::OverrideCleared => f.write_str("override cleared by operator"),
            Cause::Reset { why } => write!(f, "reset: {why}"),
        }
    }
}

/// Everything a status page needs to show about one breaker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BreakerSnapshot {
    /// The current state.
    pub state: BreakerState,
    /// When the breaker entered it (`None` if it never changed state).
    pub since: Option<Instant>,
    /// When an open breaker will admit a trial call (`None` unless open on a timer).
    pub retry_at: Option<Instant>,
    /// Consecutive failures counted while closed.
    pub consecutive_failures: u32,
    /// Trial calls in flight while half-open.
    pub half_open_in_flight: u32,
    /// Bumped by every state change; stale permits carry an older one.
    pub generation: u64,
    /// An operator override in force, if any.
    pub override_: Option<Override>,
    /// What the rate window holds (calls, failures, slow calls) while closed; `None`
    /// without rate rules. Calls counted on the lock-free path since the last failure
    /// may not be in it yet: [`SharedBreaker::snapshot`](crate::SharedBreaker::snapshot)
    /// folds them in first.
    pub window: Option<WindowCounts>,
}
