//! Where client sessions live beyond this process (`sessionStorage`): nowhere (`memory`,
//! the default: a session ends with its replica) or Redis (any replica serves any request
//! of a session, and a restart ends none).
//!
//! What is stored per session is its [`Resumable`] state (era, capabilities, client
//! info, log level, owner, the backend session ids it opened), under
//! `{keyPrefix}session:{id}` with a sliding TTL of `sessionIdleTimeout`. Replicas also
//! tell each other, on `{keyPrefix}events`, about notifications for a session whose
//! stream another replica holds, and about sessions that ended.

mod redis;

use std::time::Instant;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::upstream::BackendSession;

pub(crate) use self::redis::RedisStore;

/// Everything needed to resume a client session elsewhere: small and serializable, so a
/// later step can hand it to another replica without a shared store.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Resumable {
    /// The protocol version agreed at initialize.
    pub protocol_version: String,
    /// The client's declared capabilities.
    pub capabilities: Value,
    /// The client's `clientInfo`.
    pub client_info: Value,
    /// The log level it set (applied to each backend session when opened).
    pub log_level: Option<Value>,
    /// Backend name → its backend session, for the backend sessions open now.
    pub backend_sessions: std::collections::BTreeMap<String, BackendSession>,
    /// Who opened the session (the token's `sub`): only they may use it.
    pub owner: Option<String>,
    /// Resources it subscribed to through shared clients (the URIs it knows).
    #[serde(default)]
    pub subscriptions: Vec<String>,
}

/// Why the store could not do what was asked (names the address, never the password).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the session store ({0})")]
pub(crate) struct StoreError(pub(crate) String);

/// What replicas tell each other.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub(crate) enum Event {
    /// A message for session `session`'s GET stream, wherever it is open.
    Notify {
        /// The client session.
        session: String,
        /// The JSON-RPC message.
        message: Value,
        /// The replica that sent it (it delivered nothing itself).
        from: String,
    },
    /// Session `session` ended (DELETE): replicas drop their copies.
    Ended {
        /// The client session.
        session: String,
        /// The replica that ended it.
        from: String,
    },
}

/// Counts and times one store operation.
pub(crate) fn record<T>(op: &'static str, started: Instant, result: &Result<T, StoreError>) {
    metrics::histogram!("toolhive_vmcp_session_store_duration_seconds", "op" => op)
        .record(started.elapsed().as_secs_f64());
    if let Err(e) = result {
        metrics::counter!("toolhive_vmcp_session_store_errors_total", "op" => op).increment(1);
        tracing::warn!(op, error = %e, "session store operation failed");
    }
}

/// Starts the store metrics (their series exist before the first operation).
pub(crate) fn register_metrics() {
    for op in ["load", "save", "touch", "delete", "publish"] {
        metrics::counter!("toolhive_vmcp_session_store_errors_total", "op" => op).increment(0);
    }
    metrics::counter!("toolhive_vmcp_client_sessions_resumed_total").increment(0);
}

/// The stored form of a session.
pub(crate) fn encode(state: &Resumable) -> String {
    serde_json::to_string(state).unwrap_or_default()
}

pub(crate) fn decode(text: &str) -> Result<Resumable, StoreError> {
    serde_json::from_str(text)
        .map_err(|e| StoreError(format!("a stored session could not be read: {e}")))
}
