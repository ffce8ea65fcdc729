//! The two ways to reach an MCP server: streamable HTTP and legacy HTTP+SSE.

mod sse;
mod streamable;

use serde_json::Value;
use tokio::sync::broadcast;

pub(crate) use sse::LegacySse;
pub(crate) use streamable::StreamableHttp;

use crate::McpError;
use crate::jsonrpc::{self, Message, Notification};
use crate::server_requests::CallHooks;

/// Which transport a backend speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TransportKind {
    /// Streamable HTTP (MCP 2025-03-26 and later): one endpoint, POST per message.
    StreamableHttp,
    /// Legacy HTTP+SSE (MCP 2024-11-05): a GET event stream plus POSTs to its `endpoint`.
    Sse,
}

impl TransportKind {
    /// The name used in configuration and status output.
    pub const fn as_str(self) -> &'static str {
        match self {
            TransportKind::StreamableHttp => "streamable-http",
            TransportKind::Sse => "sse",
        }
    }
}

impl std::fmt::Display for TransportKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for TransportKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "streamable-http" => Ok(TransportKind::StreamableHttp),
            "sse" => Ok(TransportKind::Sse),
            other => Err(format!(
                "unknown transport {other:?}: expected streamable-http or sse"
            )),
        }
    }
}

/// One live connection to a server, over either transport.
#[derive(Debug)]
pub(crate) enum Transport {
    Streamable(StreamableHttp),
    /// Boxed: it holds the endpoint URI and the HTTP client inline.
    Sse(Box<LegacySse>),
}

impl Transport {
    /// Sends a request and waits for its answer (no deadline: the caller sets one).
    pub(crate) async fn request(
        &self,
        id: u64,
        method: &str,
        params: Option<Value>,
        hooks: Option<&CallHooks>,
    ) -> Result<Value, McpError> {
        let message = jsonrpc::request(id, method, params);
        match self {
            // Legacy SSE carries every message on one stream: a server request there
            // cannot be told apart by the request it belongs to, so it is declined.
            Transport::Streamable(t) => t.request(id, method, &message, hooks).await,
            Transport::Sse(t) => t.request(id, method, &message).await,
        }
    }

    /// Sends a notification.
    pub(crate) async fn notify(&self, method: &str) -> Result<(), McpError> {
        let message = jsonrpc::notification(method);
        match self {
            Transport::Streamable(t) => t.post_no_answer(method, &message).await,
            Transport::Sse(t) => t.post_no_answer(method, &message).await,
        }
    }

    /// Remembers what initialize negotiated, and starts listening for server messages
    /// on the session's GET stream when `listen`.
    pub(crate) fn initialized(&self, protocol_version: &str, listen: bool) {
        match self {
            Transport::Streamable(t) => t.initialized(protocol_version, listen),
            Transport::Sse(_) => {}
        }
    }

    /// Waits, at most `within`, until the session's GET stream is open (or refused):
    /// what the server asks right after the handshake then reaches the client.
    pub(crate) async fn stream_ready(&self, within: std::time::Duration) {
        if let Transport::Streamable(t) = self {
            t.stream_ready(within).await;
        }
    }

    /// Starts listening on the session's GET stream (streamable HTTP; legacy SSE always
    /// listens).
    pub(crate) fn listen(&self) {
        if let Transport::Streamable(t) = self {
            t.listen_now();
        }
    }

    /// 2026-07-28: the resource URIs to hear updates about on the listen stream
    /// (streamable HTTP only), which is started if it is not running.
    pub(crate) fn watch_resources(&self, uris: std::collections::BTreeSet<String>) {
        if let Transport::Streamable(t) = self {
            t.watch_resources(uris);
            t.listen_now();
        }
    }

    /// Speaks 2026-07-28 with `meta` on every request (streamable HTTP only).
    pub(crate) fn modern(&self, meta: Option<Value>) -> bool {
        match self {
            Transport::Streamable(t) => {
                t.modern(meta);
                true
            }
            Transport::Sse(_) => false,
        }
    }

    /// Takes over a session opened elsewhere (streamable HTTP; false for SSE, whose
    /// session is its stream).
    pub(crate) fn adopt(&self, id: &str) -> bool {
        match self {
            Transport::Streamable(t) => {
                t.adopt(id);
                true
            }
            Transport::Sse(_) => false,
        }
    }

    /// The session id the server gave (streamable HTTP).
    pub(crate) fn session_id(&self) -> Option<String> {
        match self {
            Transport::Streamable(t) => t.session_id(),
            Transport::Sse(_) => None,
        }
    }

    /// Whether the server gave this client a session (streamable HTTP: an
    /// `Mcp-Session-Id`; legacy SSE: always).
    pub(crate) fn has_session(&self) -> bool {
        match self {
            Transport::Streamable(t) => t.has_session(),
            Transport::Sse(_) => true,
        }
    }

    /// What tells the server, later and from anywhere, that a request of this session
    /// was given up (a handle: it holds the session's connection details, not the
    /// transport).
    pub(crate) fn canceller(&self) -> Canceller {
        match self {
            Transport::Streamable(t) => Canceller::Streamable(t.cancel_handle()),
            Transport::Sse(t) => Canceller::Sse(t.cancel_handle()),
        }
    }

    /// Ends the session (DELETE for streamable HTTP, closing the stream for SSE).
    pub(crate) async fn close(&self) {
        match self {
            Transport::Streamable(t) => t.close().await,
            Transport::Sse(t) => t.close(),
        }
    }
}

/// Tells a server that a request it was sent is given up (`notifications/cancelled`
/// with the request's id on the same session), as MCP's cancellation asks: the caller
/// (a gateway's client) cancelled, or stopped waiting. On a 2026-07-28 connection the
/// closed response stream is the cancellation, so nothing more is sent.
#[derive(Clone, Debug)]
pub(crate) enum Canceller {
    Streamable(streamable::CancelHandle),
    Sse(sse::CancelHandle),
}

impl Canceller {
    /// Sends the cancellation of request `id` in the background (best effort: the
    /// request's own answer, if it comes, is dropped).
    pub(crate) fn cancel(self, id: u64) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let message = serde_json::json!({"jsonrpc": "2.0", "method": "notifications/cancelled",
            "params": {"requestId": id, "reason": "the client cancelled the request"}});
        runtime.spawn(async move {
            match self {
                Canceller::Streamable(h) => h.send(&message).await,
                Canceller::Sse(h) => h.send(&message).await,
            }
        });
    }
}

/// What the transport does with a message the server sent on its own.
pub(crate) enum Unsolicited {
    /// Nothing more to do (a notification was delivered).
    Handled,
    /// The server asked something; send back this answer.
    Reply(Value),
}

/// Delivers notifications and answers server requests that no request of ours is
/// waiting to relay: hale is a gateway, not an end client, so it answers `ping` and
/// declines sampling, elicitation and roots (see `server_requests` for the relay).
pub(crate) fn unsolicited(
    message: Message,
    notifications: &broadcast::Sender<Notification>,
) -> Unsolicited {
    match message {
        Message::Notification(n) => {
            // No receivers is fine: nobody is listening yet.
            let _ = notifications.send(n);
            Unsolicited::Handled
        }
        Message::Request { id, method, .. } if method == "ping" => {
            Unsolicited::Reply(jsonrpc::result(&id, serde_json::json!({})))
        }
        Message::Request { id, method, .. } => Unsolicited::Reply(jsonrpc::error(
            &id,
            -32601,
            &format!("{method} is not supported by this client"),
        )),
        Message::Response { .. } => Unsolicited::Handled,
    }
}

/// Whether a JSON-RPC id is the number we sent.
pub(crate) fn id_matches(id: &Value, expected: u64) -> bool {
    id.as_u64() == Some(expected) || id.as_str().and_then(|s| s.parse().ok()) == Some(expected)
}

/// W3C trace context a request carries in `params._meta` (`traceparent`, `tracestate`,
/// `baggage`), copied into the HTTP request's headers: a proxy or mesh between here and
/// the server that reads only headers continues the same trace.
pub(crate) fn with_trace_headers(
    mut builder: http::request::Builder,
    message: &Value,
) -> http::request::Builder {
    let Some(meta) = message
        .get("params")
        .and_then(|p| p.get("_meta"))
        .and_then(Value::as_object)
    else {
        return builder;
    };
    for key in ["traceparent", "tracestate", "baggage"] {
        if let Some(value) = meta.get(key).and_then(Value::as_str)
            && let Ok(value) = http::HeaderValue::from_str(value)
        {
            builder = builder.header(key, value);
        }
    }
    builder
}
