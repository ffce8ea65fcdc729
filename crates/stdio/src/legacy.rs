//! The legacy HTTP+SSE transport (MCP 2024-11-05) on the same front: `GET /sse` opens a
//! session's event stream, whose first event names where to POST
//! (`/messages?sessionId=…`); each POSTed message is taken with 202 and its answer, with
//! the process's notifications, arrives on the stream. Underneath, each legacy session
//! is a client of the streamable front (with a session of its own when processes are
//! per session), so both transports share one process the same way.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use serde_json::Value;
use tokio::sync::mpsc;

use crate::http::{
    Body, Front, accepted, event, new_session_id, pump, read_message, stream_response, text,
};

/// Where legacy clients POST.
pub(crate) const MESSAGES: &str = "/messages";

/// The legacy sessions open now.
#[derive(Default)]
pub(crate) struct Legacy {
    sessions: Mutex<HashMap<String, Arc<Session>>>,
}

struct Session {
    events: mpsc::Sender<Bytes>,
    /// Its session at the streamable front, once initialized (per-session processes).
    inner: Mutex<Option<String>>,
}

impl Legacy {
    /// `GET /sse`: a new session and its event stream.
    pub(crate) fn open(self: &Arc<Self>, front: &Arc<Front>) -> Response<Body> {
        let id = new_session_id();
        let (events, rx) = mpsc::channel::<Bytes>(256);
        let endpoint = Bytes::from(format!(
            "event: endpoint\ndata: {MESSAGES}?sessionId={id}\n\n"
        ));
        let _ = events.try_send(endpoint);
        let session = Arc::new(Session {
            events: events.clone(),
            inner: Mutex::new(None),
        });
        self.sessions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id.clone(), session.clone());
        // A shared process's notifications reach the stream from the start.
        if let Some(heard) = front.subscribe(None).filter(|_| front.is_shared()) {
            tokio::spawn(pump(heard, events.clone()));
        }
        // The client went away: the session (and a process of its own) ends.
        let (legacy, front) = (self.clone(), front.clone());
        tokio::spawn(async move {
            events.closed().await;
            legacy
                .sessions
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&id);
            let inner = session
                .inner
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take();
            if inner.is_some() {
                front.end_session(inner.as_deref()).await;
            }
        });
        stream_response(rx, None)
    }

    /// `POST /messages?sessionId=…`: 202, the answer on the session's stream.
    pub(crate) async fn post(&self, front: &Arc<Front>, req: Request<Incoming>) -> Response<Body> {
        let id = req
            .uri()
            .query()
            .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("sessionId=")))
            .map(str::to_string);
        let session = id.and_then(|id| {
            self.sessions
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .get(&id)
                .cloned()
        });
        let Some(session) = session else {
            return text(
                StatusCode::NOT_FOUND,
                "session not found: open GET /sse first",
            );
        };
        let message = match read_message(req).await {
            Ok(m) => m,
            Err(refused) => return *refused,
        };
        let inner = session
            .inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let answer = front.message(inner.as_deref(), message.clone()).await;
        let status = answer.status();
        if status == StatusCode::ACCEPTED {
            return accepted();
        }
        if !status.is_success() {
            return answer;
        }
        // The handshake of a per-session process: remember its session, hear it.
        if let Some(sid) = answer
            .headers()
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
        {
            if let Some(heard) = front.subscribe(Some(&sid)) {
                tokio::spawn(pump(heard, session.events.clone()));
            }
            *session.inner.lock().unwrap_or_else(PoisonError::into_inner) = Some(sid);
        }
        let events = session.events.clone();
        let json = answer
            .headers()
            .get(http::header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
        tokio::spawn(async move {
            let mut body = answer.into_body();
            let mut pending = String::new();
            // Event by event, as they come: a request of the process's during the call
            // must reach the client before the call can finish.
            while let Some(Ok(frame)) = body.frame().await {
                let Some(data) = frame.data_ref() else {
                    continue;
                };
                pending.push_str(&String::from_utf8_lossy(data));
                if json {
                    continue;
                }
                while let Some(end) = pending.find("\n\n") {
                    let block: String = pending.drain(..end + 2).collect();
                    for m in block.lines().filter_map(|l| l.strip_prefix("data: ")) {
                        if let Ok(m) = serde_json::from_str::<Value>(m)
                            && events.send(event(&m)).await.is_err()
                        {
                            return;
                        }
                    }
                }
            }
            if json && let Ok(m) = serde_json::from_str::<Value>(&pending) {
                let _ = events.send(event(&m)).await;
            }
        });
        accepted()
    }
}
