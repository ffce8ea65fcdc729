//! The loopback streamable-HTTP front of a stdio server: what hale's clients (and the
//! transparent proxy) speak to. Shared: one process, no session ids (a stateless server
//! to its clients), the handshake answered from the process's own. Per session: each
//! `initialize` starts a process of its own under a fresh `Mcp-Session-Id`, ended by
//! DELETE.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, Limited, StreamBody};
use hyper::body::{Frame, Incoming};
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc, watch};

use crate::StdioCommand;
use crate::peer::Peer;
use crate::process::Limits;
use crate::supervisor::Current;

pub(crate) type Body = BoxBody<Bytes, Infallible>;

/// The largest request body read.
const MAX_BODY: usize = 16 * 1024 * 1024;

/// How long a request waits for a shared process's first start.
const START_WAIT: Duration = Duration::from_secs(10);

/// How requests reach processes.
pub(crate) enum Front {
    Shared {
        current: watch::Receiver<Current>,
        notifications: broadcast::Sender<Value>,
    },
    PerSession {
        command: StdioCommand,
        limits: Limits,
        handshake_timeout: Duration,
        max: usize,
        sessions: Mutex<HashMap<String, Session>>,
    },
}

pub(crate) struct Session {
    peer: Arc<Peer>,
    notifications: broadcast::Sender<Value>,
}

impl Front {
    pub(crate) async fn serve(&self, req: Request<Incoming>) -> Response<Body> {
        match *req.method() {
            Method::POST => self.post(req).await,
            Method::GET => self.listen(&req),
            Method::DELETE => self.delete(&req).await,
            _ => text(StatusCode::METHOD_NOT_ALLOWED, "use POST, GET or DELETE"),
        }
    }

    async fn post(&self, req: Request<Incoming>) -> Response<Body> {
        let session = session_id(&req);
        match read_message(req).await {
            Ok(message) => self.message(session.as_deref(), message).await,
            Err(refused) => *refused,
        }
    }

    /// One message from a client of `session` (none: shared, or not initialized yet):
    /// answered as JSON (`initialize`), an event stream (a request) or 202.
    pub(crate) async fn message(&self, session: Option<&str>, message: Value) -> Response<Body> {
        if !message.is_object() {
            return rpc_error(
                &Value::Null,
                -32600,
                "one JSON-RPC message per request (batches are not supported)",
            );
        }
        self.started().await;
        let id = message.get("id").cloned();
        let method = message
            .get("method")
            .and_then(Value::as_str)
            .map(str::to_string);
        match (method.as_deref(), id) {
            (Some("initialize"), Some(id)) => self.initialize(&id, &message).await,
            (Some(_), Some(id)) => match self.peer(session) {
                Ok(peer) => call(peer, message, id),
                Err(r) => *r,
            },
            // The client's half of the handshake: the process had its own.
            (Some("notifications/initialized"), None) => accepted(),
            // A notification, or the client's answer to the process's request.
            _ => match self.peer(session) {
                Ok(peer) => {
                    peer.send(&message).await;
                    accepted()
                }
                Err(r) => *r,
            },
        }
    }

    async fn initialize(&self, id: &Value, message: &Value) -> Response<Body> {
        match self {
            Front::Shared { current, .. } => match &*current.borrow() {
                Current::Up(peer) => json_answer(
                    &json!({"jsonrpc": "2.0", "id": id, "result": peer.init()}),
                    None,
                ),
                Current::Starting => down("it is starting"),
                Current::Down(why) => down(why),
            },
            Front::PerSession {
                command,
                limits,
                handshake_timeout,
                max,
                sessions,
            } => {
                let open = sessions
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .len();
                if open >= *max {
                    return text(
                        StatusCode::SERVICE_UNAVAILABLE,
                        &format!(
                            "stdio server `{command}`: {open} processes already run, one per session (the limit): try again when a session ends"
                        ),
                    );
                }
                let params = message
                    .get("params")
                    .cloned()
                    .unwrap_or_else(Peer::own_params);
                let (notifications, _) = broadcast::channel(256);
                let peer = match Peer::start(
                    command,
                    *limits,
                    params,
                    notifications.clone(),
                    *handshake_timeout,
                )
                .await
                {
                    Ok(p) => p,
                    Err(why) => return down(&why),
                };
                let sid = new_session_id();
                tracing::debug!(%command, pid = peer.pid(), session = %sid, "stdio server started for a session");
                let answer = json!({"jsonrpc": "2.0", "id": id, "result": peer.init()});
                sessions
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(
                        sid.clone(),
                        Session {
                            peer: peer.clone(),
                            notifications,
                        },
                    );
                // A session whose process ends is forgotten: its client gets 404 and
                // opens a new one.
                let reaped = peer.clone();
                let grace = limits.grace;
                tokio::spawn(async move {
                    let why = reaped.ended().await;
                    tracing::debug!(pid = reaped.pid(), reason = %why, "a session's stdio server ended");
                    reaped.terminate(grace).await;
                });
                json_answer(&answer, Some(&sid))
            }
        }
    }

    /// Waits (at most [`START_WAIT`]) while the shared process starts for the first time,
    /// so the first request (often a health check made as the process is spawned) is
    /// answered by the server rather than refused as "starting".
    async fn started(&self) {
        if let Front::Shared { current, .. } = self {
            let mut current = current.clone();
            let starting = |c: &Current| !matches!(c, Current::Starting);
            let _ = tokio::time::timeout(START_WAIT, current.wait_for(starting)).await;
        }
    }

    /// The process a request goes to, or the answer that says why there is none.
    fn peer(&self, session: Option<&str>) -> Result<Arc<Peer>, Box<Response<Body>>> {
        match self {
            Front::Shared { current, .. } => match &*current.borrow() {
                Current::Up(peer) if !peer.has_ended() => Ok(peer.clone()),
                Current::Up(_) => Err(Box::new(down("it ended; starting it again"))),
                Current::Starting => Err(Box::new(down("it is starting"))),
                Current::Down(why) => Err(Box::new(down(why))),
            },
            Front::PerSession { sessions, .. } => {
                let Some(sid) = session else {
                    return Err(Box::new(text(
                        StatusCode::BAD_REQUEST,
                        "Mcp-Session-Id is required: initialize first",
                    )));
                };
                let mut sessions = sessions.lock().unwrap_or_else(PoisonError::into_inner);
                match sessions.get(sid) {
                    Some(s) if !s.peer.has_ended() => Ok(s.peer.clone()),
                    Some(_) => {
                        sessions.remove(sid);
                        Err(Box::new(text(
                            StatusCode::NOT_FOUND,
                            "session not found: its process ended",
                        )))
                    }
                    None => Err(Box::new(text(StatusCode::NOT_FOUND, "session not found"))),
                }
            }
        }
    }

    /// GET: the process's notifications as an event stream.
    fn listen(&self, req: &Request<Incoming>) -> Response<Body> {
        let Some(heard) = self.subscribe(session_id(req).as_deref()) else {
            return text(StatusCode::NOT_FOUND, "session not found");
        };
        let (tx, rx) = mpsc::channel::<Bytes>(64);
        tokio::spawn(pump(heard, tx));
        stream_response(rx, None)
    }

    /// Whether one process serves every client.
    pub(crate) fn is_shared(&self) -> bool {
        matches!(self, Front::Shared { .. })
    }

    /// The notifications of `session`'s process (shared: the one process's).
    pub(crate) fn subscribe(&self, session: Option<&str>) -> Option<broadcast::Receiver<Value>> {
        match self {
            Front::Shared { notifications, .. } => Some(notifications.subscribe()),
            Front::PerSession { sessions, .. } => {
                let sessions = sessions.lock().unwrap_or_else(PoisonError::into_inner);
                session.and_then(|sid| sessions.get(sid).map(|s| s.notifications.subscribe()))
            }
        }
    }

    async fn delete(&self, req: &Request<Incoming>) -> Response<Body> {
        self.end_session(session_id(req).as_deref()).await
    }

    /// Ends `session` and its process (per session); 405 for a shared process.
    pub(crate) async fn end_session(&self, session: Option<&str>) -> Response<Body> {
        let Front::PerSession {
            sessions, limits, ..
        } = self
        else {
            return text(
                StatusCode::METHOD_NOT_ALLOWED,
                "this server has no sessions",
            );
        };
        let removed = session.and_then(|sid| {
            sessions
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(sid)
        });
        match removed {
            Some(s) => {
                s.peer.terminate(limits.grace).await;
                text(StatusCode::OK, "session ended")
            }
            None => text(StatusCode::NOT_FOUND, "session not found"),
        }
    }

    /// Ends every process (at shutdown).
    pub(crate) async fn end_all(&self, grace: Duration) {
        if let Front::PerSession { sessions, .. } = self {
            let all: Vec<_> = sessions
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .drain()
                .map(|(_, s)| s.peer)
                .collect();
            futures_util::future::join_all(all.iter().map(|p| p.terminate(grace))).await;
        }
    }

    /// Processes running now.
    pub(crate) fn processes(&self) -> usize {
        match self {
            Front::Shared { current, .. } => {
                usize::from(matches!(&*current.borrow(), Current::Up(p) if !p.has_ended()))
            }
            Front::PerSession { sessions, .. } => sessions
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .values()
                .filter(|s| !s.peer.has_ended())
                .count(),
        }
    }
}

/// A request answered as an event stream: progress and the process's requests during the
/// call first, then the answer. A client that goes away cancels the call.
fn call(peer: Arc<Peer>, message: Value, id: Value) -> Response<Body> {
    let (tx, rx) = mpsc::channel::<Bytes>(64);
    tokio::spawn(async move {
        let (interim_tx, mut interim) = mpsc::unbounded_channel::<Value>();
        let call = peer.call(message, Some(interim_tx));
        tokio::pin!(call);
        let answer = loop {
            tokio::select! {
                answer = &mut call => break answer,
                Some(note) = interim.recv() => {
                    if tx.send(event(&note)).await.is_err() {
                        return; // gone: dropping the call cancels it
                    }
                }
                () = tx.closed() => return,
            }
        };
        // Whatever came just before the answer goes first.
        while let Ok(note) = interim.try_recv() {
            let _ = tx.send(event(&note)).await;
        }
        let answer = answer.unwrap_or_else(|e| {
            json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32603, "message": e.to_string()}})
        });
        let _ = tx.send(event(&answer)).await;
    });
    stream_response(rx, None)
}

/// A request's body as one JSON value (at most 16 MiB), or the answer refusing it.
pub(crate) async fn read_message(req: Request<Incoming>) -> Result<Value, Box<Response<Body>>> {
    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            return Err(Box::new(text(
                StatusCode::PAYLOAD_TOO_LARGE,
                "the body could not be read (at most 16 MiB)",
            )));
        }
    };
    serde_json::from_slice(&body)
        .map_err(|_| Box::new(rpc_error(&Value::Null, -32700, "the body is not JSON")))
}

/// Copies a process's notifications onto an event stream until either ends.
pub(crate) async fn pump(mut heard: broadcast::Receiver<Value>, events: mpsc::Sender<Bytes>) {
    loop {
        tokio::select! {
            note = heard.recv() => match note {
                Ok(note) => {
                    if events.send(event(&note)).await.is_err() {
                        return;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => return,
            },
            () = events.closed() => return,
        }
    }
}

pub(crate) fn event(message: &Value) -> Bytes {
    Bytes::from(format!("event: message\ndata: {message}\n\n"))
}

pub(crate) fn stream_response(rx: mpsc::Receiver<Bytes>, session: Option<&str>) -> Response<Body> {
    let frames = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<_, Infallible>(Frame::data(b)), rx))
    });
    let mut r = Response::new(StreamBody::new(frames).boxed());
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Some(sid) = session.and_then(|s| HeaderValue::from_str(s).ok()) {
        r.headers_mut().insert("mcp-session-id", sid);
    }
    r
}

fn json_answer(message: &Value, session: Option<&str>) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(message.to_string())).boxed());
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Some(sid) = session.and_then(|s| HeaderValue::from_str(s).ok()) {
        r.headers_mut().insert("mcp-session-id", sid);
    }
    r
}

fn rpc_error(id: &Value, code: i64, message: &str) -> Response<Body> {
    let mut r = json_answer(
        &json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}}),
        None,
    );
    *r.status_mut() = StatusCode::BAD_REQUEST;
    r
}

pub(crate) fn accepted() -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::new()).boxed());
    *r.status_mut() = StatusCode::ACCEPTED;
    r
}

pub(crate) fn text(status: StatusCode, message: &str) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(message.to_string())).boxed());
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// 503: the process cannot take requests now, and why (what clients and `/status` show).
fn down(why: &str) -> Response<Body> {
    text(
        StatusCode::SERVICE_UNAVAILABLE,
        &format!("the stdio server is not running: {why}"),
    )
}

fn session_id(req: &Request<Incoming>) -> Option<String> {
    req.headers()
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

pub(crate) fn new_session_id() -> String {
    let mut bytes = [0u8; 16];
    let _ = getrandom::fill(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
