//! What can go wrong talking to a backend, and what it means for health and breakers.

use std::collections::BTreeSet;
use std::time::Duration;

use hale_core::{CallOutcome, CheckOutcome, Failure, FailureCategory};

/// An error from one exchange with an MCP server. Every message names the server URL.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum McpError {
    /// Nothing listens at the address.
    #[error("{url}: connection refused")]
    ConnectionRefused {
        /// The server URL.
        url: String,
    },
    /// The connection could not be made for another reason (DNS, unreachable network).
    #[error("{url}: could not connect: {detail}")]
    Connect {
        /// The server URL.
        url: String,
        /// What the operating system said.
        detail: String,
    },
    /// The connection broke while a request was in flight.
    #[error("{url}: connection reset during {method}: {detail}")]
    ConnectionReset {
        /// The server URL.
        url: String,
        /// The JSON-RPC method in flight.
        method: String,
        /// What broke.
        detail: String,
    },
    /// No answer within the deadline.
    #[error("{url}: no answer to {method} within {after:?}")]
    Timeout {
        /// The server URL.
        url: String,
        /// The JSON-RPC method.
        method: String,
        /// The deadline.
        after: Duration,
    },
    /// The server answered with an HTTP error status and no JSON-RPC message.
    #[error("{url}: {method} got HTTP {status}: {body}")]
    HttpStatus {
        /// The server URL.
        url: String,
        /// The JSON-RPC method.
        method: String,
        /// The HTTP status.
        status: u16,
        /// The start of the response body.
        body: String,
    },
    /// The server refused us for lack of credentials (401/403).
    #[error("{url}: {method} refused with HTTP {status}: credentials are required")]
    Unauthorized {
        /// The server URL.
        url: String,
        /// The JSON-RPC method.
        method: String,
        /// 401 or 403.
        status: u16,
    },
    /// The answer was not a JSON-RPC message, or not the one we asked for.
    #[error("{url}: {method}: not a valid JSON-RPC answer: {detail}")]
    Protocol {
        /// The server URL.
        url: String,
        /// The JSON-RPC method.
        method: String,
        /// What was wrong with it.
        detail: String,
    },
    /// The server no longer knows our session, and a fresh one did not help.
    #[error("{url}: the server lost our session ({detail})")]
    SessionLost {
        /// The server URL.
        url: String,
        /// How the server said so.
        detail: String,
    },
    /// The server answered with a JSON-RPC error: it is alive, the request failed.
    #[error("{url}: {method} failed with JSON-RPC error {code}: {message}")]
    Rpc {
        /// The server URL.
        url: String,
        /// The JSON-RPC method.
        method: String,
        /// The JSON-RPC error code.
        code: i64,
        /// The error message.
        message: String,
        /// The error's `data`, if any.
        data: Option<serde_json::Value>,
    },
    /// The server asked us to slow down (HTTP 429): alive, not failing; its
    /// `Retry-After` (in seconds) if it gave one.
    #[error("{url}: {method} refused with HTTP 429 (too many requests){}", retry_after.map(|d| format!(", retry after {}s", d.as_secs())).unwrap_or_default())]
    RateLimited {
        /// The server URL.
        url: String,
        /// The JSON-RPC method.
        method: String,
        /// How long the server asked us to wait.
        retry_after: Option<Duration>,
    },
    /// The TLS handshake with the server failed; `reason` says what to change.
    #[error("{url}: {reason}")]
    Tls {
        /// The server URL.
        url: String,
        /// What failed and what to do about it.
        reason: String,
    },
    /// The URL cannot be used.
    #[error("{url}: {reason}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// Why it cannot be used.
        reason: String,
    },
    /// The client was closed.
    #[error("{url}: the client is closed")]
    Closed {
        /// The server URL.
        url: String,
    },
}

impl McpError {
    /// The failure category, or `None` when the server is alive and answering (a JSON-RPC
    /// error, a 401/403, a 429).
    pub fn category(&self) -> Option<FailureCategory> {
        Some(match self {
            McpError::Rpc { .. } | McpError::Unauthorized { .. } | McpError::RateLimited { .. } => {
                return None;
            }
            McpError::ConnectionRefused { .. } => FailureCategory::ConnectionRefused,
            McpError::ConnectionReset { .. } => FailureCategory::ConnectionReset,
            McpError::Timeout { .. } => FailureCategory::Timeout,
            McpError::HttpStatus { status, .. } if *status >= 500 => FailureCategory::HttpStatus,
            McpError::HttpStatus { .. } | McpError::Protocol { .. } => FailureCategory::Protocol,
            McpError::SessionLost { .. } => FailureCategory::SessionLost,
            McpError::Tls { .. } => FailureCategory::Tls,
            McpError::Connect { .. } | McpError::InvalidUrl { .. } | McpError::Closed { .. } => {
                FailureCategory::Other
            }
        })
    }

    /// What this error means for a circuit breaker: a backend that failed (a transport
    /// failure, a timeout, a 5xx, a malformed answer), or answered with an error of its
    /// own that `codes` counts; a caller's mistake is a backend that worked.
    pub fn call_outcome(&self, codes: &FailureCodes) -> CallOutcome {
        match self {
            McpError::Rpc { code, .. } if codes.counts(*code) => CallOutcome::Failure,
            _ if self.category().is_some() => CallOutcome::Failure,
            _ => CallOutcome::Success,
        }
    }

    /// What this error means as the result of a health check that took `latency`.
    pub fn check_outcome(&self, latency: Duration) -> CheckOutcome {
        match (self, self.category()) {
            (McpError::Unauthorized { .. }, _) => CheckOutcome::Unauthenticated {
                message: self.to_string(),
            },
            (_, Some(category)) => CheckOutcome::Failure(Failure::new(category, self.to_string())),
            // A JSON-RPC error is an answer: the server is up.
            (_, None) => CheckOutcome::success(latency),
        }
    }

    /// The JSON-RPC error `e` that `url` answered to `method`.
    pub(crate) fn rpc(url: &str, method: &str, e: crate::jsonrpc::RpcError) -> Self {
        McpError::Rpc {
            url: url.into(),
            method: method.into(),
            code: e.code,
            message: e.message,
            data: e.data,
        }
    }

    /// Whether the server said our session is gone (so a new one may help).
    pub(crate) fn is_session_lost(&self) -> bool {
        // -32022 (unsupported protocol version) to a request on an established connection:
        // the server changed era (upgraded in place). Connecting again learns the new one.
        matches!(self, McpError::SessionLost { .. })
            || matches!(self, McpError::Rpc { code: -32022, .. })
    }

    /// Whether the server refused the handshake: it answers, but not in the handshake era.
    pub fn is_refused_handshake(&self) -> bool {
        matches!(self, McpError::Protocol { method, detail, .. }
            if method == "initialize" && detail.starts_with("the server refused the handshake"))
    }
}

/// Which JSON-RPC error codes in a backend's answers count as failures for its breakers.
///
/// By default the server's own failures do: `-32603` (internal error) and the
/// implementation-defined `-32000`…`-32099`, except the codes there that describe the
/// caller's request rather than the server's health (`-32002` resource not found,
/// `-32020`…`-32022` header mismatch, missing capability and unsupported version,
/// `-32042` URL elicitation required). A caller's mistakes (`-32700`, `-32600`,
/// `-32601`, `-32602`: malformed, unknown method, unknown tool or bad arguments) never
/// count. `failureCodes: {add: [...], remove: [...]}` adjusts this per backend.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FailureCodes {
    /// Codes counted on top of the default.
    pub add: BTreeSet<i64>,
    /// Codes never counted.
    pub remove: BTreeSet<i64>,
}

impl FailureCodes {
    /// Whether an answer with JSON-RPC error `code` counts as a failure of the backend.
    pub fn counts(&self, code: i64) -> bool {
        if self.remove.contains(&code) {
            return false;
        }
        self.add.contains(&code) || Self::by_default(code)
    }

    fn by_default(code: i64) -> bool {
        code == -32603
            || ((-32099..=-32000).contains(&code)
                && !matches!(code, -32002 | -32020 | -32021 | -32022 | -32042))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_server_fails_a_caller_errs() {
        let d = FailureCodes::default();
        for code in [-32603, -32000, -32001, -32099] {
            assert!(d.counts(code), "{code} counts");
        }
        for code in [
            -32700, -32600, -32601, -32602, -32002, -32042, -32022, 1, -31001,
        ] {
            assert!(!d.counts(code), "{code} does not count");
        }
        let mine = FailureCodes {
            add: [-32602].into(),
            remove: [-32603].into(),
        };
        assert!(mine.counts(-32602) && !mine.counts(-32603) && mine.counts(-32000));
    }
}
