//! Streamable HTTP: every message is its own POST to one endpoint; answers come back as a
//! JSON body or an SSE stream; the server may push notifications on a GET stream.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use http::{Method, Request, StatusCode, Uri, header};
use http_body_util::Full;
use hyper::body::Incoming;
use serde_json::Value;
use sse_stream::SseStream;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use super::{Unsolicited, id_matches, unsolicited};
use crate::McpError;
use crate::http::{self as h, HttpClient};
use crate::jsonrpc::{self, Message, Notification};
use crate::server_requests::{CallHooks, ServerRequest, ServerRequestHandler};

const SESSION: &str = "mcp-session-id";
const PROTOCOL_VERSION: &str = "mcp-protocol-version";
/// The session-less protocol revision.
pub(crate) const MODERN: &str = "2026-07-28";

/// A value for the `Mcp-Name` header: as it is when it is plain printable ASCII, else in
/// the `=?base64?…?=` form the 2026-07-28 transport defines.
fn header_value(text: &str) -> String {
    use base64::Engine;
    if text.bytes().all(|b| (0x20..0x7f).contains(&b)) && !text.starts_with("=?") {
        return text.to_string();
    }
    let encoded = base64::engine::general_purpose::STANDARD.encode(text);
    format!("=?base64?{encoded}?=")
}

#[derive(Debug)]
pub(crate) struct StreamableHttp {
    shared: Arc<Shared>,
    stop: CancellationToken,
    listening: std::sync::atomic::AtomicBool,
}

#[derive(Debug)]
struct Shared {
    url: String,
    uri: Uri,
    http: HttpClient,
    session: RwLock<Option<String>>,
    protocol_version: RwLock<Option<String>>,
    /// The largest answer body read whole for a `*/list` request.
    list_limit: std::sync::atomic::AtomicUsize,
    /// In the 2026-07-28 era: the `_meta` every request carries (no session).
    modern: RwLock<Option<Value>>,
    notifications: broadcast::Sender<Notification>,
    /// 2026-07-28: the resource URIs the listen stream asks updates for; a change
    /// reopens the stream with the new set.
    resources: RwLock<std::collections::BTreeSet<String>>,
    resources_changed: tokio::sync::Notify,
    /// Who answers the server's requests on the standalone (GET) stream: the handler of
    /// the one request of ours in flight that has one (a server may ask outside the
    /// request it needs the answer for, as server-everything asks for roots), else
    /// `standalone`; with neither they are declined.
    asking: std::sync::Mutex<Asking>,
    /// Whether the GET stream has been tried (opened, or refused): a session's first
    /// request waits for it, so the server can reach the client from the first.
    stream_tried: tokio::sync::watch::Sender<bool>,
}

/// The handlers for the server's requests that arrive outside any request of ours.
#[derive(Default)]
struct Asking {
    standalone: Option<ServerRequestHandler>,
    /// The handlers of our requests in flight, by request id.
    in_flight: Vec<(u64, ServerRequestHandler)>,
}

impl std::fmt::Debug for Asking {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Asking")
            .field("standalone", &self.standalone.is_some())
            .field("in_flight", &self.in_flight.len())
            .finish()
    }
}

/// Removes a request's handler from [`Asking::in_flight`] when it is answered or dropped.
struct InFlight<'a> {
    shared: &'a Shared,
    id: u64,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.shared
            .asking
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .in_flight
            .retain(|(id, _)| *id != self.id);
    }
}

/// A handle that can send a notification on this transport's session later.
#[derive(Clone, Debug)]
pub(crate) struct CancelHandle(Arc<Shared>);

impl CancelHandle {
    /// Posts `message` (a notification) unless the connection speaks 2026-07-28, where
    /// closing a request's stream already cancels it.
    pub(crate) async fn send(&self, message: &Value) {
        if read(&self.0.modern).is_some() {
            return;
        }
        let method = "notifications/cancelled";
        if let Err(e) = self.0.post(method, message).await {
            tracing::debug!(url = %self.0.url, error = %e, "the cancellation did not reach the server");
        }
    }
}

impl StreamableHttp {
    pub(crate) fn cancel_handle(&self) -> CancelHandle {
        CancelHandle(self.shared.clone())
    }

    pub(crate) fn new(
        url: &str,
        uri: Uri,
        http: HttpClient,
        notifications: broadcast::Sender<Notification>,
    ) -> Self {
        StreamableHttp {
            shared: Arc::new(Shared {
                url: url.to_string(),
                uri,
                http,
                session: RwLock::new(None),
                protocol_version: RwLock::new(None),
                list_limit: std::sync::atomic::AtomicUsize::new(h::MAX_BODY),
                modern: RwLock::new(None),
                notifications,
                resources: RwLock::new(std::collections::BTreeSet::new()),
                resources_changed: tokio::sync::Notify::new(),
                asking: std::sync::Mutex::default(),
                stream_tried: tokio::sync::watch::Sender::new(false),
            }),
            stop: CancellationToken::new(),
            listening: std::sync::atomic::AtomicBool::new(false),
        }
    }

    pub(crate) async fn request(
        &self,
        id: u64,
        method: &str,
        message: &Value,
        hooks: Option<&CallHooks>,
    ) -> Result<Value, McpError> {
        // In flight from before it is sent: the server may ask its question on the
        // standalone stream before the request's own answer has even begun.
        let _in_flight = hooks.and_then(|h| h.requests.clone()).map(|handler| {
            self.shared
                .asking
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .in_flight
                .push((id, handler));
            InFlight {
                shared: &self.shared,
                id,
            }
        });
        let modern = read(&self.shared.modern).clone();
        let response = match modern {
            Some(meta) => {
                // 2026-07-28: `_meta` in the body, mirrored in headers; no session.
                let mut message = message.clone();
                let params = &mut message["params"];
                if !params.is_object() {
                    *params = serde_json::json!({});
                }
                match params.get_mut("_meta") {
                    Some(Value::Object(m)) => {
                        // What the request already says of its caller (a gateway's
                        // client's capabilities and info) stands; ours fill the gaps.
                        // The protocol version is this connection's, whatever the
                        // caller spoke.
                        if let Value::Object(ours) = &meta {
                            for (k, v) in ours {
                                if k == crate::jsonrpc::ENVELOPE_KEYS[0] {
                                    m.insert(k.clone(), v.clone());
                                } else {
                                    m.entry(k.clone()).or_insert_with(|| v.clone());
                                }
                            }
                        }
                    }
                    _ => params["_meta"] = meta,
                }
                let name = match method {
                    "tools/call" | "prompts/get" => params.get("name").and_then(Value::as_str),
                    "resources/read" => params.get("uri").and_then(Value::as_str),
                    _ => None,
                }
                .map(header_value);
                self.shared
                    .post_modern(method, name.as_deref(), &message)
                    .await?
            }
            None => {
                self.shared
                    .post(method, &crate::jsonrpc::handshake_era(message))
                    .await?
            }
        };
        self.shared.read_answer(id, method, response, hooks).await
    }

    /// Speaks 2026-07-28 from now on, stamping `meta` on every request (`None`: the
    /// handshake era).
    /// 2026-07-28: asks the listen stream for updates about exactly `uris` from now on
    /// (the stream is reopened with them).
    pub(crate) fn watch_resources(&self, uris: std::collections::BTreeSet<String>) {
        *write(&self.shared.resources) = uris;
        self.shared.resources_changed.notify_one();
    }

    /// Waits, at most `within`, until the GET stream has been opened (or refused).
    pub(crate) async fn stream_ready(&self, within: Duration) {
        let mut tried = self.shared.stream_tried.subscribe();
        let _ = tokio::time::timeout(within, tried.wait_for(|t| *t)).await;
    }

    /// Answers the server's requests outside any request of ours with `handler`.
    pub(crate) fn answer_standalone(&self, handler: ServerRequestHandler) {
        self.shared
            .asking
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .standalone = Some(handler);
    }

    pub(crate) fn modern(&self, meta: Option<Value>) {
        let on = meta.is_some();
        *write(&self.shared.modern) = meta;
        *write(&self.shared.protocol_version) = on.then(|| MODERN.to_string());
    }

    pub(crate) async fn post_no_answer(
        &self,
        method: &str,
        message: &Value,
    ) -> Result<(), McpError> {
        let response = self.shared.post(method, message).await?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        if let Some(e) = h::rate_limited(&self.shared.url, method, status, response.headers()) {
            return Err(e);
        }
        let body = h::read_body(&self.shared.url, method, response.into_body()).await?;
        Err(self.shared.status_error(method, status, &body))
    }

    pub(crate) fn initialized(&self, protocol_version: &str, listen: bool) {
        *write(&self.shared.protocol_version) = Some(protocol_version.to_string());
        if listen {
            self.listen_now();
        }
    }

    /// Reads `*/list` answers of at most `limit` bytes.
    pub(crate) fn limit_lists(&self, limit: usize) {
        self.shared
            .list_limit
            .store(limit, std::sync::atomic::Ordering::Relaxed);
    }

    pub(crate) fn session_id(&self) -> Option<String> {
        read(&self.shared.session).clone()
    }

    /// Takes over session `id`, opened earlier (by another process): requests carry it
    /// from now on, with no handshake.
    pub(crate) fn adopt(&self, id: &str) {
        *write(&self.shared.session) = Some(id.to_string());
    }

    pub(crate) fn has_session(&self) -> bool {
        read(&self.shared.session).is_some()
    }

    /// Holds the session's GET stream open from now on (once).
    pub(crate) fn listen_now(&self) {
        if self
            .listening
            .swap(true, std::sync::atomic::Ordering::AcqRel)
        {
            return;
        }
        let shared = self.shared.clone();
        let stop = self.stop.clone();
        let modern = read(&self.shared.modern).clone();
        tokio::spawn(async move {
            match modern {
                // 2026-07-28 pushes only on a `subscriptions/listen` stream.
                Some(meta) => tokio::select! {
                    () = stop.cancelled() => {}
                    () = shared.listen_modern(meta) => {}
                },
                None => tokio::select! {
                    () = stop.cancelled() => {}
                    () = shared.listen() => {}
                },
            }
        });
    }

    pub(crate) async fn close(&self) {
        self.stop.cancel();
        let Some(session) = read(&self.shared.session).clone() else {
            return;
        };
        let Ok(request) = Request::builder()
            .method(Method::DELETE)
            .uri(self.shared.uri.clone())
            .header(SESSION, session)
            .body(Full::new(Bytes::new()))
        else {
            return;
        };
        // Best effort: a server that is gone has forgotten the session anyway.
        let _ =
            tokio::time::timeout(Duration::from_secs(2), self.shared.http.request(request)).await;
    }
}

impl Drop for StreamableHttp {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl Shared {
    fn builder(&self, method: Method) -> http::request::Builder {
        let mut b = Request::builder().method(method).uri(self.uri.clone());
        if let Some(session) = read(&self.session).as_deref() {
            b = b.header(SESSION, session);
        }
        if let Some(version) = read(&self.protocol_version).as_deref() {
            b = b.header(PROTOCOL_VERSION, version);
        }
        b
    }

    /// A 2026-07-28 POST: the headers mirror the body (`Mcp-Method`, `Mcp-Name`).
    async fn post_modern(
        &self,
        method: &str,
        name: Option<&str>,
        message: &Value,
    ) -> Result<http::Response<Incoming>, McpError> {
        let body = serde_json::to_vec(message).unwrap_or_default();
        let mut builder = Request::builder()
            .method(Method::POST)
            .uri(self.uri.clone())
            .header(PROTOCOL_VERSION, MODERN)
            .header("mcp-method", method)
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::ACCEPT, "application/json, text/event-stream");
        if let Some(name) = name {
            builder = builder.header("mcp-name", name);
        }
        let request = super::with_trace_headers(builder, message)
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| McpError::InvalidUrl {
                url: self.url.clone(),
                reason: e.to_string(),
            })?;
        self.http
            .request(request)
            .await
            .map_err(|e| h::send_error(&self.url, method, e))
    }

    async fn post(
        &self,
        method: &str,
        message: &Value,
    ) -> Result<http::Response<Incoming>, McpError> {
        let body = serde_json::to_vec(message).unwrap_or_default();
        let builder = self
            .builder(Method::POST)
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::ACCEPT, "application/json, text/event-stream");
        let request = super::with_trace_headers(builder, message)
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| McpError::InvalidUrl {
                url: self.url.clone(),
                reason: e.to_string(),
            })?;
        let response = self
            .http
            .request(request)
            .await
            .map_err(|e| h::send_error(&self.url, method, e))?;
        if method == "initialize"
            && response.status().is_success()
            && let Some(session) = response
                .headers()
                .get(SESSION)
                .and_then(|v| v.to_str().ok())
        {
            *write(&self.session) = Some(session.to_string());
        }
        Ok(response)
    }

    /// Reads the answer to request `id` from a JSON body or an SSE stream, delivering
    /// whatever else the server sends on the way.
    async fn read_answer(
        &self,
        id: u64,
        method: &str,
        response: http::Response<Incoming>,
        hooks: Option<&CallHooks>,
    ) -> Result<Value, McpError> {
        let status = response.status();
        if h::is_event_stream(response.headers()) && status.is_success() {
            return self
                .read_stream_answer(id, method, response.into_body(), hooks)
                .await;
        }
        if let Some(e) = h::rate_limited(&self.url, method, status, response.headers()) {
            return Err(e);
        }
        let limit = if method.ends_with("/list") {
            self.list_limit.load(std::sync::atomic::Ordering::Relaxed)
        } else {
            h::MAX_BODY
        };
        let body = h::read_body_within(&self.url, method, response.into_body(), limit).await?;
        if !status.is_success() {
            return Err(self.status_error(method, status, &body));
        }
        let message =
            jsonrpc::parse_bytes(&body).map_err(|detail| self.protocol(method, detail))?;
        self.answer(id, method, message, None).unwrap_or_else(|| {
            Err(self.protocol(method, format!("expected the answer to request {id}")))
        })
    }

    async fn read_stream_answer(
        &self,
        id: u64,
        method: &str,
        body: Incoming,
        hooks: Option<&CallHooks>,
    ) -> Result<Value, McpError> {
        let mut events = SseStream::new(body);
        while let Some(event) = events.next().await {
            let event = event.map_err(|e| match e {
                sse_stream::Error::Body(inner) => h::body_error(&self.url, method, inner.as_ref()),
                other => self.protocol(method, format!("broken SSE stream: {other}")),
            })?;
            let Some(data) = event.data.filter(|d| !d.trim().is_empty()) else {
                continue; // priming events and keep-alives carry no message
            };
            let message = jsonrpc::parse_bytes(data.as_bytes())
                .map_err(|detail| self.protocol(method, detail))?;
            if let Some(answer) = self.answer(id, method, message, hooks) {
                return answer;
            }
        }
        Err(McpError::ConnectionReset {
            url: self.url.clone(),
            method: method.into(),
            detail: "the SSE stream ended before the answer".into(),
        })
    }

    /// `Some` if `message` answers request `id`; otherwise delivers it and returns `None`.
    /// A server request or notification on this stream goes to `hooks`, if given.
    fn answer(
        &self,
        id: u64,
        method: &str,
        message: Message,
        hooks: Option<&CallHooks>,
    ) -> Option<Result<Value, McpError>> {
        match message {
            Message::Response { id: got, outcome } if id_matches(&got, id) => {
                Some(outcome.map_err(|e| McpError::rpc(&self.url, method, e)))
            }
            Message::Request {
                id: asked,
                method: asked_method,
                params,
            } if asked_method != "ping" && hooks.is_some_and(|h| h.requests.is_some()) => {
                let handler = hooks.and_then(|h| h.requests.clone())?;
                self.answer_later(
                    asked,
                    ServerRequest {
                        method: asked_method,
                        params,
                    },
                    handler,
                );
                None
            }
            Message::Notification(note)
                if let Some(sink) = hooks.and_then(|h| h.notifications.as_ref()) =>
            {
                sink(note);
                None
            }
            other => {
                if let Unsolicited::Reply(reply) = unsolicited(other, &self.notifications) {
                    self.reply(reply);
                }
                None
            }
        }
    }

    /// Who answers a server request on the standalone stream (see [`Shared::asking`]).
    fn asked_by(&self) -> Option<ServerRequestHandler> {
        let asking = self
            .asking
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match asking.in_flight.as_slice() {
            [(_, only)] => Some(only.clone()),
            _ => asking.standalone.clone(),
        }
    }

    /// Posts the handler's answer to server request `id` once it has one; the stream
    /// goes on being read meanwhile (the answer may take a person's time).
    fn answer_later(&self, id: Value, request: ServerRequest, handler: ServerRequestHandler) {
        let builder = self
            .builder(Method::POST)
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::ACCEPT, "application/json, text/event-stream");
        let http = self.http.clone();
        tokio::spawn(async move {
            let reply = match handler(request).await {
                Ok(result) => jsonrpc::result(&id, result),
                Err(e) => jsonrpc::error(&id, e.code, &e.message),
            };
            if let Ok(request) = builder.body(Full::new(Bytes::from(reply.to_string()))) {
                let _ = http.request(request).await;
            }
        });
    }

    fn reply(&self, reply: Value) {
        let Ok(request) = self
            .builder(Method::POST)
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::ACCEPT, "application/json, text/event-stream")
            .body(Full::new(Bytes::from(reply.to_string())))
        else {
            return;
        };
        let http = self.http.clone();
        tokio::spawn(async move {
            let _ = http.request(request).await;
        });
    }

    /// Turns an HTTP error answer into the error it means.
    fn status_error(&self, method: &str, status: StatusCode, body: &[u8]) -> McpError {
        if let Some(e) = h::tls_refusal(&self.url, status, body) {
            return e;
        }
        let text = String::from_utf8_lossy(body).to_ascii_lowercase();
        let had_session = read(&self.session).is_some();
        let session_gone = (status == StatusCode::NOT_FOUND && had_session)
            || (status == StatusCode::BAD_REQUEST
                && ["session", "not initialized"]
                    .iter()
                    .any(|p| text.contains(p)));
        if session_gone && method != "initialize" {
            return McpError::SessionLost {
                url: self.url.clone(),
                detail: format!("HTTP {}: {}", status.as_u16(), jsonrpc::preview(body)),
            };
        }
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return McpError::Unauthorized {
                url: self.url.clone(),
                method: method.into(),
                status: status.as_u16(),
            };
        }
        // A 4xx with a JSON-RPC error is the server answering.
        if status.is_client_error()
            && let Ok(Message::Response {
                outcome: Err(e), ..
            }) = jsonrpc::parse_bytes(body)
        {
            return McpError::rpc(&self.url, method, e);
        }
        McpError::HttpStatus {
            url: self.url.clone(),
            method: method.into(),
            status: status.as_u16(),
            body: jsonrpc::preview(body),
        }
    }

    fn protocol(&self, method: &str, detail: String) -> McpError {
        McpError::Protocol {
            url: self.url.clone(),
            method: method.into(),
            detail,
        }
    }

    /// Holds the server's GET stream open for notifications, reconnecting while the server
    /// offers one. Servers may refuse it (405): then notifications only arrive on POSTs.
    /// Holds a `subscriptions/listen` stream open for list changes (2026-07-28), opened
    /// again after it ends, with a jittered backoff that grows while it keeps failing:
    /// never a hot loop.
    async fn listen_modern(&self, meta: Value) {
        let mut backoff = Duration::from_millis(250);
        let mut n: u64 = 0;
        loop {
            n += 1;
            let mut wanted = serde_json::json!({
                "toolsListChanged": true,
                "promptsListChanged": true,
                "resourcesListChanged": true,
            });
            let resources: Vec<String> = read(&self.resources).iter().cloned().collect();
            if !resources.is_empty() {
                wanted["resourceSubscriptions"] = serde_json::json!(resources);
            }
            let message = serde_json::json!({
                "jsonrpc": "2.0",
                "id": format!("hale-listen-{n}"),
                "method": "subscriptions/listen",
                "params": {"_meta": meta, "notifications": wanted},
            });
            let started = tokio::time::Instant::now();
            let mut reopen = false;
            if let Ok(response) = self
                .post_modern("subscriptions/listen", None, &message)
                .await
            {
                if response.status().is_client_error() {
                    return; // the server does not offer it
                }
                if response.status().is_success() && h::is_event_stream(response.headers()) {
                    let mut events = SseStream::new(response.into_body());
                    loop {
                        let event = tokio::select! {
                            event = events.next() => event,
                            () = self.resources_changed.notified() => {
                                // Other resources wanted: a new stream asks for them.
                                reopen = true;
                                break;
                            }
                        };
                        let Some(Ok(event)) = event else { break };
                        let Some(data) = event.data.filter(|d| !d.trim().is_empty()) else {
                            continue;
                        };
                        match jsonrpc::parse_bytes(data.as_bytes()) {
                            // The final result: the server ended the subscription.
                            Ok(Message::Response { .. }) => break,
                            Ok(message) => {
                                let _ = unsolicited(message, &self.notifications);
                            }
                            Err(_) => {}
                        }
                    }
                }
            }
            if reopen {
                continue;
            }
            // A stream that lasted a while was healthy: start the backoff afresh.
            if started.elapsed() > Duration::from_secs(30) {
                backoff = Duration::from_millis(250);
            }
            let jitter = Duration::from_millis(u64::from(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.subsec_nanos())
                    % 250,
            ));
            tokio::time::sleep(backoff + jitter).await;
            backoff = (backoff * 2).min(Duration::from_secs(30));
        }
    }

    async fn listen(&self) {
        let mut backoff = Duration::from_millis(250);
        loop {
            let Ok(request) = self
                .builder(Method::GET)
                .header(header::ACCEPT, "text/event-stream")
                .body(Full::new(Bytes::new()))
            else {
                return;
            };
            let response = self.http.request(request).await;
            self.stream_tried.send_replace(true);
            match response {
                Ok(response)
                    if response.status().is_success() && h::is_event_stream(response.headers()) =>
                {
                    backoff = Duration::from_millis(250);
                    let mut events = SseStream::new(response.into_body());
                    while let Some(Ok(event)) = events.next().await {
                        let Some(data) = event.data.filter(|d| !d.trim().is_empty()) else {
                            continue;
                        };
                        let Ok(message) = jsonrpc::parse_bytes(data.as_bytes()) else {
                            continue;
                        };
                        match message {
                            Message::Request { id, method, params }
                                if method != "ping"
                                    && let Some(handler) = self.asked_by() =>
                            {
                                self.answer_later(id, ServerRequest { method, params }, handler);
                            }
                            message => {
                                if let Unsolicited::Reply(reply) =
                                    unsolicited(message, &self.notifications)
                                {
                                    self.reply(reply);
                                }
                            }
                        }
                    }
                }
                // 405 and friends: this server has no GET stream (or no longer our session).
                Ok(response) if response.status().is_client_error() => return,
                _ => {}
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::header_value;

    #[test]
    fn mcp_name_is_plain_when_it_can_be_and_base64_when_not() {
        assert_eq!(header_value("get_weather"), "get_weather");
        assert_eq!(header_value("café"), "=?base64?Y2Fmw6k=?=");
        assert_eq!(header_value("=?tricky"), "=?base64?PT90cmlja3k=?=");
    }
}
