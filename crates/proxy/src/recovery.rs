//! Session recovery: a server that restarts forgets its sessions, and every client
//! session through the proxy would end with it (ToolHive issue #4084's complaint). The
//! proxy remembers each session's `initialize` as the client sent it; when the server
//! answers a request of a session it issued with 404, or with a 400 that speaks of the
//! session, the proxy opens a new server session with that same `initialize` (and
//! `notifications/initialized`), maps the client's session id to the new one from then
//! on, and sends the request again. The client keeps its session id and sees one slower
//! answer. What the server kept in the old session (subscriptions, a log level, state of
//! its own) is gone, as it is for any restart: the client's handshake is all that is
//! replayed.
//!
//! Streamable HTTP only: a legacy SSE session is its stream, which ends with the server;
//! its client must open a new one.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use bytes::Bytes;
use serde_json::Value;

/// The header that carries the session.
pub(crate) const SESSION: &str = "mcp-session-id";

/// Sessions remembered at most; past it the least recently used are forgotten (their
/// clients are as they would be without recovery).
const MAX_KNOWN: usize = 10_000;

/// The sessions the proxy saw the server issue, by the id their client knows.
pub(crate) struct Sessions {
    known: Mutex<HashMap<String, Arc<Known>>>,
    epoch: Instant,
}

/// One client session the server issued.
pub(crate) struct Known {
    /// The client's `initialize` request, as it sent it.
    pub(crate) initialize: Bytes,
    /// The server session it goes to now: the client's own id until a recovery.
    server: Mutex<String>,
    /// One recovery at a time: requests that find the session lost together share it.
    pub(crate) recovering: tokio::sync::Mutex<()>,
    /// When it was last used (ms since the map's epoch).
    used: AtomicU64,
}

impl Known {
    /// The server session requests of this client session go to now.
    pub(crate) fn server(&self) -> String {
        self.server
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// From now on, requests go to server session `id`.
    pub(crate) fn moved_to(&self, id: String) {
        *self.server.lock().unwrap_or_else(PoisonError::into_inner) = id;
    }
}

impl Default for Sessions {
    fn default() -> Self {
        Sessions {
            known: Mutex::default(),
            epoch: Instant::now(),
        }
    }
}

impl Sessions {
    /// The server issued session `id` to a client whose `initialize` was `request`.
    pub(crate) fn learn(&self, id: &str, request: Bytes) {
        let now = self.now();
        let mut known = self.known.lock().unwrap_or_else(PoisonError::into_inner);
        if known.len() >= MAX_KNOWN {
            // Forget the least recently used tenth at once (one scan per many sessions).
            let mut ages: Vec<(u64, String)> = known
                .iter()
                .map(|(k, v)| (v.used.load(Ordering::Relaxed), k.clone()))
                .collect();
            ages.sort_unstable();
            for (_, k) in ages.into_iter().take(MAX_KNOWN / 10) {
                known.remove(&k);
            }
        }
        known.insert(
            id.to_string(),
            Arc::new(Known {
                initialize: request,
                server: Mutex::new(id.to_string()),
                recovering: tokio::sync::Mutex::new(()),
                used: AtomicU64::new(now),
            }),
        );
    }

    /// Client session `id`, if the proxy saw the server issue it.
    pub(crate) fn get(&self, id: &str) -> Option<Arc<Known>> {
        let known = self.known.lock().unwrap_or_else(PoisonError::into_inner);
        let k = known.get(id)?.clone();
        k.used.store(self.now(), Ordering::Relaxed);
        Some(k)
    }

    /// The client ended session `id` (DELETE).
    pub(crate) fn forget(&self, id: &str) {
        self.known
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(id);
    }

    /// How many sessions are remembered.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.known
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    fn now(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }
}

/// Whether `body` (a POST) is an `initialize` request.
pub(crate) fn is_initialize(body: &[u8]) -> bool {
    // Most requests are not: a substring test spares them the parse.
    memchr_initialize(body)
        && serde_json::from_slice::<Value>(body)
            .is_ok_and(|m| m.get("method").and_then(Value::as_str) == Some("initialize"))
}

fn memchr_initialize(body: &[u8]) -> bool {
    body.windows(b"\"initialize\"".len())
        .any(|w| w == b"\"initialize\"")
}

/// Whether the server's answer to a request of a session it issued says it no longer
/// knows the session: 404 (the spec's answer), or a 400 whose body speaks of the session
/// (what the TypeScript SDK's servers say: "Bad Request: No valid session ID provided").
pub(crate) fn says_session_lost(status: http::StatusCode, body: &[u8]) -> bool {
    match status.as_u16() {
        404 => true,
        400 => String::from_utf8_lossy(body)
            .to_ascii_lowercase()
            .contains("session"),
        _ => false,
    }
}

/// The `result.protocolVersion` of an `initialize` answer, sent as JSON or as an event
/// stream.
pub(crate) fn negotiated_version(body: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(body);
    let version = |message: &str| {
        serde_json::from_str::<Value>(message)
            .ok()?
            .pointer("/result/protocolVersion")?
            .as_str()
            .map(str::to_string)
    };
    version(text.trim()).or_else(|| {
        text.lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .find_map(|d| version(d.trim()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_initialize_request_is_one() {
        assert!(is_initialize(
            br#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}"#
        ));
        assert!(!is_initialize(
            br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"initialize"}}"#
        ));
        assert!(!is_initialize(b"not json \"initialize\""));
    }

    #[test]
    fn a_lost_session_is_a_404_or_a_400_that_says_so() {
        use http::StatusCode;
        assert!(says_session_lost(StatusCode::NOT_FOUND, b""));
        assert!(says_session_lost(
            StatusCode::BAD_REQUEST,
            br#"{"jsonrpc":"2.0","error":{"code":-32000,"message":"Bad Request: No valid session ID provided"},"id":null}"#
        ));
        assert!(!says_session_lost(
            StatusCode::BAD_REQUEST,
            br#"{"error":{"code":-32602,"message":"Invalid params"}}"#
        ));
        assert!(!says_session_lost(
            StatusCode::INTERNAL_SERVER_ERROR,
            b"session"
        ));
    }

    #[test]
    fn the_negotiated_version_is_read_from_json_or_an_event_stream() {
        let json = br#"{"jsonrpc":"2.0","id":1,"result":{"protocolVersion":"2025-06-18"}}"#;
        assert_eq!(negotiated_version(json).as_deref(), Some("2025-06-18"));
        let sse = b"event: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"protocolVersion\":\"2025-11-25\"}}\n\n";
        assert_eq!(negotiated_version(sse).as_deref(), Some("2025-11-25"));
    }

    #[test]
    fn the_least_recently_used_are_forgotten_past_the_bound() {
        let s = Sessions::default();
        for i in 0..MAX_KNOWN + 1 {
            s.learn(&format!("s{i}"), Bytes::new());
        }
        assert!(s.len() <= MAX_KNOWN);
        assert!(
            s.get(&format!("s{MAX_KNOWN}")).is_some(),
            "the newest is kept"
        );
    }
}
