//! hale's own JSON-RPC error codes: what a client gets when hale, not the MCP server,
//! answers. They sit outside −32768…−32000, which JSON-RPC and MCP reserve (MCP
//! 2026-07-28 retires −32000…−32019 and keeps −32020…−32099 for itself), so a client can
//! tell hale's answers from a server's, and they are the same in both protocol eras.
//! docs/operations.md lists them.

/// The backend (or, for `hale proxy`, the server) is unavailable: unhealthy, its breaker
/// open, or given up. `data` says which and when to retry.
pub const BACKEND_UNAVAILABLE: i64 = -31001;
/// No routable backend offers this tool, prompt or resource.
pub const UNKNOWN_NAME: i64 = -31002;
/// hale is shutting down: the request was not sent anywhere.
pub const SHUTTING_DOWN: i64 = -31003;
/// A request that fans out to several backends failed on some of them (`fail` mode).
pub const PARTIAL_FAILURE: i64 = -31004;
/// The backend did not answer within the request timeout.
pub const TIMEOUT: i64 = -31005;
/// The exchange with the backend broke after the request was sent: it may have run.
pub const UPSTREAM_FAILED: i64 = -31006;
/// A limit was reached (backend sessions per backend); retry later.
pub const LIMIT_REACHED: i64 = -31007;
/// The request was refused before it went anywhere: its `Host` or `Origin` is not
/// allowed, or it is not authorized.
pub const REFUSED: i64 = -31008;
/// The session store (`sessionStorage: redis`) could not be reached in time: the session
/// is not lost; retry shortly.
pub const SESSION_STORE_UNAVAILABLE: i64 = -31009;
/// The client cancelled the request (`notifications/cancelled`): it was stopped, and the
/// backend told. MCP expects no answer to a cancelled request; this one reaches only a
/// client still reading the request's stream.
pub const CANCELLED: i64 = -31010;
