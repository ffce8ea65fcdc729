//! Legacy SSE sessions the proxy carries, so that it can answer a client itself where a
//! legacy client listens: on its SSE stream, not in the POST's HTTP answer.
//!
//! A legacy client POSTs each message to the endpoint its SSE stream announced and reads
//! the answer from the stream. When the proxy must answer such a POST itself (the server
//! was given up, the connection broke), it accepts the POST with 202 as the server would
//! and puts the JSON-RPC error on that client's stream. Streams register the endpoint
//! they announced (as the client will POST it) and deregister when they end.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use tokio::sync::mpsc;

/// Events waiting for one stream; past this the proxy's own answers are dropped (the
/// stream is not being read anyway).
const QUEUE: usize = 64;

#[derive(Default)]
pub(crate) struct LegacyStreams {
    streams: Mutex<HashMap<String, mpsc::Sender<Bytes>>>,
}

impl LegacyStreams {
    /// Registers the stream whose clients POST to `endpoint` (a path and query).
    pub(crate) fn register(self: &Arc<Self>, endpoint: String) -> Registration {
        let (tx, rx) = mpsc::channel(QUEUE);
        self.lock().insert(endpoint.clone(), tx);
        Registration {
            streams: self.clone(),
            endpoint,
            events: rx,
        }
    }

    /// Puts `event` (a complete SSE event) on the stream of `endpoint`; false when no
    /// open stream announced it.
    pub(crate) fn inject(&self, endpoint: &str, event: Bytes) -> bool {
        let sender = self.lock().get(endpoint).cloned();
        sender.is_some_and(|tx| tx.try_send(event).is_ok())
    }

    /// Whether an open stream announced `endpoint`.
    pub(crate) fn contains(&self, endpoint: &str) -> bool {
        self.lock().contains_key(endpoint)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, mpsc::Sender<Bytes>>> {
        self.streams.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// One stream's place in the registry, removed when the stream ends.
pub(crate) struct Registration {
    streams: Arc<LegacyStreams>,
    endpoint: String,
    pub(crate) events: mpsc::Receiver<Bytes>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.streams.lock().remove(&self.endpoint);
    }
}

/// Resolves an announced endpoint (`/message?x`, `messages/?x`) against the path of the
/// SSE stream that announced it, into the path and query the client will POST to.
pub(crate) fn resolve(stream_path: &str, announced: &str) -> String {
    if announced.starts_with('/') {
        return announced.to_string();
    }
    let dir = match stream_path.rfind('/') {
        Some(i) => &stream_path[..=i],
        None => "/",
    };
    format!("{dir}{announced}")
}

/// An SSE `message` event carrying one JSON-RPC message.
pub(crate) fn message_event(json: &[u8]) -> Bytes {
    let mut event = Vec::with_capacity(json.len() + 24);
    event.extend_from_slice(b"event: message\ndata: ");
    event.extend_from_slice(json);
    event.extend_from_slice(b"\n\n");
    Bytes::from(event)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_resolve_as_a_client_resolves_them() {
        assert_eq!(
            resolve("/sse", "/message?sessionId=1"),
            "/message?sessionId=1"
        );
        assert_eq!(
            resolve("/sse", "messages/?session_id=1"),
            "/messages/?session_id=1"
        );
        assert_eq!(resolve("/a/sse", "m?s=1"), "/a/m?s=1");
    }

    #[tokio::test]
    async fn an_injected_event_reaches_its_stream_until_the_stream_ends() {
        let streams = Arc::new(LegacyStreams::default());
        let mut reg = streams.register("/message?sessionId=1".into());
        assert!(streams.inject("/message?sessionId=1", message_event(b"{}")));
        assert!(!streams.inject("/message?sessionId=2", message_event(b"{}")));
        assert_eq!(
            reg.events.recv().await.unwrap(),
            Bytes::from_static(b"event: message\ndata: {}\n\n")
        );
        drop(reg);
        assert!(!streams.contains("/message?sessionId=1"));
    }
}
