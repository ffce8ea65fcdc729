//! What one check or call produced, as the caller classified it.
//!
//! The core never decides whether something failed: the transport layer (hale-mcp) does,
//! and hands the verdict in. These types are that hand-over.

use std::fmt;
use std::time::Duration;

/// Why a check or call failed. The names are the ones operators see in `/status`,
/// logs and the `category` label of error metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FailureCategory {
    /// No answer within the deadline.
    Timeout,
    /// Nothing listens at the address.
    ConnectionRefused,
    /// The connection was cut while the request was in flight.
    ConnectionReset,
    /// The server answered with a 5xx status.
    HttpStatus,
    /// The answer was not JSON-RPC, or was malformed.
    Protocol,
    /// The server no longer knows our session, and re-initializing did not help.
    SessionLost,
    /// The TLS handshake failed: a certificate not trusted, expired or for another name,
    /// or a client certificate the server requires or refuses.
    Tls,
    /// Anything else.
    Other,
}

impl FailureCategory {
    /// Every category, in a stable order (for metrics that pre-register each label).
    pub const ALL: [FailureCategory; 8] = [
        FailureCategory::Timeout,
        FailureCategory::ConnectionRefused,
        FailureCategory::ConnectionReset,
        FailureCategory::HttpStatus,
        FailureCategory::Protocol,
        FailureCategory::SessionLost,
        FailureCategory::Tls,
        FailureCategory::Other,
    ];

    /// The snake_case name used in JSON, logs and metric labels.
    pub const fn as_str(self) -> &'static str {
        match self {
            FailureCategory::Timeout => "timeout",
            FailureCategory::ConnectionRefused => "connection_refused",
            FailureCategory::ConnectionReset => "connection_reset",
            FailureCategory::HttpStatus => "http_status",
            FailureCategory::Protocol => "protocol",
            FailureCategory::SessionLost => "session_lost",
            FailureCategory::Tls => "tls",
            FailureCategory::Other => "other",
        }
    }
}

impl fmt::Display for FailureCategory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A classified failure: its category and a message for humans.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// What kind of failure it was.
    pub category: FailureCategory,
    /// What happened, in words (the transport's error message).
    pub message: String,
}

impl Failure {
    /// A failure of `category` described by `message`.
    pub fn new(category: FailureCategory, message: impl Into<String>) -> Self {
        Failure {
            category,
            message: message.into(),
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.category, self.message)
    }
}

/// The result of one health check (a probe), as the health tracker consumes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CheckOutcome {
    /// The server gave a JSON-RPC answer within the timeout.
    Success {
        /// How long the answer took.
        latency: Duration,
    },
    /// The server answered 401 or 403: it is up, but refuses us without credentials.
    /// This is not a failure and does not count towards any threshold.
    Unauthenticated {
        /// The status and whatever the server said.
        message: String,
    },
    /// The check failed.
    Failure(Failure),
}

impl CheckOutcome {
    /// A success that took `latency`.
    pub const fn success(latency: Duration) -> Self {
        CheckOutcome::Success { latency }
    }

    /// A failure of `category` described by `message`.
    pub fn failure(category: FailureCategory, message: impl Into<String>) -> Self {
        CheckOutcome::Failure(Failure::new(category, message))
    }

    /// The circuit-breaker view of this outcome: only real failures count against a
    /// backend; an unauthenticated answer proves it is alive.
    pub const fn call_outcome(&self) -> CallOutcome {
        match self {
            CheckOutcome::Failure(_) => CallOutcome::Failure,
            CheckOutcome::Success { .. } | CheckOutcome::Unauthenticated { .. } => {
                CallOutcome::Success
            }
        }
    }
}

/// The result of one admitted call, as the circuit breaker consumes it.
///
/// Transport errors, timeouts and HTTP 5xx are failures. JSON-RPC errors from a live
/// server, tool results with `isError: true` and 4xx answers are successes: the backend
/// is working, the request was not.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CallOutcome {
    /// The backend did its job.
    Success,
    /// The backend failed.
    Failure,
}
