//! The testkit server: listener, routing, sessions, faults and counters.

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::body::{self, ResponseBody};
use crate::catalog::{Catalog, Outbound, Waiting};
use crate::{Fault, ServerConfig, Stats, Transport};

const MAX_REQUEST: usize = 4 * 1024 * 1024;
const SESSION: &str = "mcp-session-id";

/// One session: the stream that carries its server messages (the GET stream, or the
/// legacy SSE stream), and a token that ends that stream when the session is forgotten.
#[derive(Default)]
struct SessionEntry {
    stream: Option<mpsc::UnboundedSender<Bytes>>,
    ended: CancellationToken,
    /// What the client declared at `initialize` (some tools are listed only to clients
    /// that declared a capability, as real servers do).
    capabilities: Value,
}

impl Drop for SessionEntry {
    fn drop(&mut self) {
        self.ended.cancel();
    }
}

pub(crate) struct Shared {
    pub(crate) config: ServerConfig,
    pub(crate) addr: SocketAddr,
    pub(crate) catalog: Catalog,
    fault: Mutex<Option<Fault>>,
    /// Cancels the accept loop and every connection of the current "up" period; the
    /// receiver resolves once the listening socket is closed.
    listening: Mutex<Option<(CancellationToken, oneshot::Receiver<()>)>>,
    flapping: Mutex<Option<CancellationToken>>,
    shutdown: CancellationToken,
    /// Streamable HTTP and legacy SSE sessions.
    sessions: Mutex<HashMap<String, SessionEntry>>,
    notifications: broadcast::Sender<Value>,
    /// Our requests to clients (sampling, elicitation) waiting for their answers.
    waiting: Waiting,
    requests: AtomicU64,
    by_method: Mutex<BTreeMap<String, u64>>,
    sessions_opened: AtomicU64,
    sessions_deleted: AtomicU64,
    next_session: AtomicU64,
    /// `Bearer <token>` every MCP request must carry, if any.
    required_authorization: Mutex<Option<String>>,
    unauthorized: AtomicU64,
    with_authorization: AtomicU64,
}

impl crate::modern::Host for Shared {
    fn config(&self) -> &ServerConfig {
        &self.config
    }

    fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    fn waiting(&self) -> Waiting {
        self.waiting.clone()
    }

    fn subscribe_notifications(&self) -> broadcast::Receiver<Value> {
        self.notifications.subscribe()
    }

    async fn answer_on_stream(
        self: Arc<Self>,
        method: String,
        params: Value,
        id: Value,
        stream: mpsc::UnboundedSender<Bytes>,
    ) {
        Shared::answer_on_stream(self, method, params, id, stream, None, true).await;
    }
}

impl Shared {
    pub(crate) async fn start(config: ServerConfig) -> std::io::Result<Arc<Shared>> {
        let listener = TcpListener::bind(config.addr).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            catalog: Catalog::new(
                config.page_size,
                config.session_tools,
                config.era != crate::Era::Legacy,
            )
            .with_resource_scheme(&config.resource_scheme),
            config,
            addr,
            fault: Mutex::new(None),
            listening: Mutex::new(None),
            flapping: Mutex::new(None),
            shutdown: CancellationToken::new(),
            sessions: Mutex::new(HashMap::new()),
            notifications: broadcast::channel(64).0,
            waiting: Waiting::default(),
            requests: AtomicU64::new(0),
            by_method: Mutex::new(BTreeMap::new()),
            sessions_opened: AtomicU64::new(0),
            sessions_deleted: AtomicU64::new(0),
            next_session: AtomicU64::new(0),
            required_authorization: Mutex::new(None),
            unauthorized: AtomicU64::new(0),
            with_authorization: AtomicU64::new(0),
        });
        shared.require_token(shared.config.require_token.clone().as_deref());
        shared.listen_on(listener);
        Ok(shared)
    }

    fn listen_on(self: &Arc<Self>, listener: TcpListener) {
        let token = self.shutdown.child_token();
        let (closed_tx, closed_rx) = oneshot::channel::<()>();
        *lock(&self.listening) = Some((token.clone(), closed_rx));
        let shared = self.clone();
        tokio::spawn(async move {
            // Dropped with the listener when this task ends: tells go_down the port is shut.
            let _closed = closed_tx;
            loop {
                let stream = tokio::select! {
                    () = token.cancelled() => return,
                    accepted = listener.accept() => match accepted {
                        Ok((stream, _)) => stream,
                        Err(_) => continue,
                    },
                };
                let _ = stream.set_nodelay(true);
                let (shared, token) = (shared.clone(), token.clone());
                tokio::spawn(async move {
                    let service = service_fn(move |req| {
                        let shared = shared.clone();
                        async move { Ok::<_, Infallible>(shared.route(req).await) }
                    });
                    let conn =
                        http1::Builder::new().serve_connection(TokioIo::new(stream), service);
                    tokio::select! {
                        () = token.cancelled() => {}
                        _ = conn => {}
                    }
                });
            }
        });
    }

    /// Closes the listener and cuts every open connection: clients see refused
    /// connections. Returns once the port is really closed, so that a test that sets this
    /// fault and then connects is refused, not reset from the dying listener's backlog.
    async fn go_down(&self) {
        let listening = lock(&self.listening).take();
        if let Some((token, closed)) = listening {
            token.cancel();
            let _ = closed.await;
        }
        // Sessions survive: an outage of the listener is not a restart (that is
        // `forget_sessions`). Streams end with their connections.
    }

    /// Listens again on the same address.
    async fn come_up(self: &Arc<Self>) {
        if lock(&self.listening).is_some() || self.shutdown.is_cancelled() {
            return;
        }
        // The old socket may linger for a moment; retry briefly.
        for _ in 0..50 {
            if let Ok(listener) = TcpListener::bind(self.addr).await {
                self.listen_on(listener);
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tracing::error!(addr = %self.addr, "testkit could not listen again");
    }

    pub(crate) async fn set_fault(self: &Arc<Self>, fault: Option<Fault>) {
        *lock(&self.fault) = fault;
        if let Some(flap) = lock(&self.flapping).take() {
            flap.cancel();
        }
        match fault {
            Some(Fault::Down) => self.go_down().await,
            Some(Fault::Flap { up, down }) => {
                self.come_up().await;
                let token = self.shutdown.child_token();
                *lock(&self.flapping) = Some(token.clone());
                let shared = self.clone();
                tokio::spawn(async move {
                    loop {
                        tokio::select! {
                            () = token.cancelled() => return,
                            () = tokio::time::sleep(up) => shared.go_down().await,
                        }
                        tokio::select! {
                            () = token.cancelled() => return,
                            () = tokio::time::sleep(down) => shared.come_up().await,
                        }
                    }
                });
            }
            _ => self.come_up().await,
        }
    }

    pub(crate) fn fault(&self) -> Option<Fault> {
        *lock(&self.fault)
    }

    pub(crate) fn forget_sessions(&self) {
        lock(&self.sessions).clear();
    }

    pub(crate) fn tools_changed(&self) {
        let _ = self
            .notifications
            .send(json!({"jsonrpc": "2.0", "method": "notifications/tools/list_changed"}));
    }

    pub(crate) fn stats(&self) -> Stats {
        Stats {
            requests: self.requests.load(Ordering::Relaxed),
            by_method: lock(&self.by_method).clone(),
            sessions_opened: self.sessions_opened.load(Ordering::Relaxed),
            sessions_deleted: self.sessions_deleted.load(Ordering::Relaxed),
            open_sessions: lock(&self.sessions).len() as u64,
            unauthorized: self.unauthorized.load(Ordering::Relaxed),
            with_authorization: self.with_authorization.load(Ordering::Relaxed),
        }
    }

    pub(crate) fn shutdown(&self) {
        self.shutdown.cancel();
        if let Some(flap) = lock(&self.flapping).take() {
            flap.cancel();
        }
        lock(&self.sessions).clear();
    }

    async fn route(self: Arc<Self>, req: Request<Incoming>) -> Response<ResponseBody> {
        let path = req.uri().path().to_string();
        let mcp = match self.config.transport {
            Transport::StreamableHttp => path == self.config.path,
            Transport::Sse => path == "/sse" || path == "/message",
        };
        if !mcp {
            return plain(StatusCode::NOT_FOUND, "not found");
        }
        self.requests.fetch_add(1, Ordering::Relaxed);
        if let Some(response) = self.injected_fault().await {
            return response;
        }
        if let Some(response) = self.reject_foreign_host(req.headers()) {
            return response;
        }
        if let Some(response) = self.reject_unauthorized(req.headers()) {
            return response;
        }
        match (self.config.transport, req.method().clone(), path.as_str()) {
            (Transport::StreamableHttp, Method::POST, _) => self.post(req).await,
            (Transport::StreamableHttp, Method::GET, _) => self.get_stream(req.headers()),
            (Transport::StreamableHttp, Method::DELETE, _) => self.delete(req.headers()),
            (Transport::Sse, Method::GET, "/sse") => self.open_sse(),
            (Transport::Sse, Method::POST, "/message") => self.post_sse(req).await,
            _ => plain(StatusCode::METHOD_NOT_ALLOWED, "method not allowed"),
        }
    }

    /// The fault's answer, if the fault answers instead of the server.
    async fn injected_fault(&self) -> Option<Response<ResponseBody>> {
        match self.fault() {
            Some(Fault::Hang) => {
                self.shutdown.cancelled().await;
                Some(plain(StatusCode::SERVICE_UNAVAILABLE, "shutting down"))
            }
            Some(Fault::Slow(d)) => {
                tokio::time::sleep(d).await;
                None
            }
            Some(Fault::Status(code)) => {
                let status =
                    StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                let mut r = plain(status, &format!("injected status {code}"));
                if status == StatusCode::TOO_MANY_REQUESTS {
                    // As a rate-limiting server says it: wait this long.
                    r.headers_mut()
                        .insert(header::RETRY_AFTER, http::HeaderValue::from_static("2"));
                }
                Some(r)
            }
            Some(Fault::Malformed) => Some(
                Response::builder()
                    .header(header::CONTENT_TYPE, "application/json")
                    .body(body::full("this is not JSON {"))
                    .unwrap_or_default(),
            ),
            Some(Fault::Down | Fault::Flap { .. }) | None => None,
        }
    }

    pub(crate) fn require_token(&self, token: Option<&str>) {
        *lock(&self.required_authorization) = token.map(|t| format!("Bearer {t}"));
    }

    /// 401 unless the request carries the required bearer token.
    fn reject_unauthorized(&self, headers: &HeaderMap) -> Option<Response<ResponseBody>> {
        if headers.contains_key(header::AUTHORIZATION) {
            self.with_authorization.fetch_add(1, Ordering::Relaxed);
        }
        let required = lock(&self.required_authorization).clone()?;
        let given = headers.get(header::AUTHORIZATION).map(|v| v.as_bytes());
        if given == Some(required.as_bytes()) {
            return None;
        }
        self.unauthorized.fetch_add(1, Ordering::Relaxed);
        let mut r = plain(StatusCode::UNAUTHORIZED, "a valid bearer token is required");
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            http::HeaderValue::from_static("Bearer error=\"invalid_token\""),
        );
        Some(r)
    }

    /// DNS-rebinding protection, as the MCP transports spec asks of local servers.
    fn reject_foreign_host(&self, headers: &HeaderMap) -> Option<Response<ResponseBody>> {
        if !self.config.validate_host {
            return None;
        }
        let local = |value: &str| {
            let host = value
                .trim_start_matches("http://")
                .trim_start_matches("https://")
                .split('/')
                .next()
                .unwrap_or_default();
            let name = if host.starts_with('[') {
                host.split(']')
                    .next()
                    .map(|h| format!("{h}]"))
                    .unwrap_or_default()
            } else {
                host.split(':').next().unwrap_or_default().to_string()
            };
            matches!(name.as_str(), "127.0.0.1" | "localhost" | "[::1]")
        };
        for (name, what) in [(header::HOST, "Host"), (header::ORIGIN, "Origin")] {
            if let Some(value) = headers.get(name).and_then(|v| v.to_str().ok())
                && !local(value)
            {
                return Some(rpc_error(
                    StatusCode::FORBIDDEN,
                    -32000,
                    &format!("Invalid {what} header: {value}"),
                ));
            }
        }
        None
    }

    fn new_session(
        &self,
        stream: Option<mpsc::UnboundedSender<Bytes>>,
    ) -> (String, CancellationToken) {
        let n = self.next_session.fetch_add(1, Ordering::Relaxed);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let id = format!(
            "{:016x}{n:08x}",
            nanos as u64 ^ u64::from(self.addr.port()) << 48
        );
        let ended = self.shutdown.child_token();
        lock(&self.sessions).insert(
            id.clone(),
            SessionEntry {
                stream,
                ended: ended.clone(),
                capabilities: Value::Null,
            },
        );
        self.sessions_opened.fetch_add(1, Ordering::Relaxed);
        (id, ended)
    }

    fn count(&self, method: &str) {
        *lock(&self.by_method).entry(method.to_string()).or_default() += 1;
    }

    async fn post(self: &Arc<Self>, req: Request<Incoming>) -> Response<ResponseBody> {
        let accept = req
            .headers()
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        if !(accept.contains("application/json") && accept.contains("text/event-stream")) {
            return rpc_error(
                StatusCode::NOT_ACCEPTABLE,
                -32000,
                "Not Acceptable: Client must accept both application/json and text/event-stream",
            );
        }
        let session = req
            .headers()
            .get(SESSION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let headers = req.headers().clone();
        let message = match read_json(req).await {
            Ok(m) => m,
            Err(response) => return response,
        };
        let Some(method) = message
            .get("method")
            .and_then(Value::as_str)
            .map(str::to_string)
        else {
            // The client answering one of our requests (sampling, elicitation).
            self.deliver_answer(message);
            return status_only(StatusCode::ACCEPTED);
        };
        self.count(&method);
        let era = self.config.era;
        if session.is_none()
            && era != crate::Era::Legacy
            && crate::modern::is_modern(&headers, &message)
        {
            return crate::modern::answer(self, &headers, message).await;
        }
        if era == crate::Era::Modern {
            let requested = message
                .pointer("/params/protocolVersion")
                .and_then(Value::as_str)
                .unwrap_or_default();
            return crate::modern::unsupported(requested);
        }
        if let Some(version) = message
            .pointer("/params/_meta/io.modelcontextprotocol~1protocolVersion")
            .and_then(Value::as_str)
            && headers
                .get("mcp-protocol-version")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|h| h != version)
        {
            // As the SDK 2.x servers do: a handshake-era request carrying the
            // 2026-07-28 envelope is refused.
            return rpc_error(
                StatusCode::BAD_REQUEST,
                -32020,
                &format!(
                    "the request headers and body disagree: the body envelope names protocol version {version} but the MCP-Protocol-Version header names another"
                ),
            );
        }
        let id = message.get("id").cloned();
        let mut new_session = None;
        if !self.config.stateless {
            if method == "initialize" {
                let id = self.new_session(None).0;
                if let Some(entry) = lock(&self.sessions).get_mut(&id) {
                    entry.capabilities = message
                        .pointer("/params/capabilities")
                        .cloned()
                        .unwrap_or(Value::Null);
                }
                new_session = Some(id);
            } else {
                match session {
                    None => {
                        return rpc_error(
                            StatusCode::BAD_REQUEST,
                            -32000,
                            "Bad Request: Server not initialized",
                        );
                    }
                    Some(s) if !lock(&self.sessions).contains_key(&s) => {
                        return rpc_error(StatusCode::NOT_FOUND, -32001, "Session not found");
                    }
                    Some(_) => {}
                }
            }
        }
        let Some(id) = id else {
            return status_only(StatusCode::ACCEPTED); // a notification
        };
        let mut params = message.get("params").cloned().unwrap_or(Value::Null);
        if method == "tools/list"
            && let Some(session) = &session
            && let Some(entry) = lock(&self.sessions).get(session)
        {
            // What the session's client declared decides what it is shown.
            if !params.is_object() {
                params = json!({});
            }
            params[crate::catalog::DECLARED] = entry.capabilities.clone();
        }
        if method == "resources/subscribe"
            && let Some(session) = session.clone()
        {
            // The subscribed resource "changes" at once: the update goes to the
            // subscribing session's GET stream only.
            let uri = params.get("uri").cloned().unwrap_or(Value::Null);
            let shared = self.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(50)).await;
                let stream = lock(&shared.sessions)
                    .get(&session)
                    .and_then(|e| e.stream.clone());
                if let Some(stream) = stream {
                    let note = json!({"jsonrpc": "2.0", "method": "notifications/resources/updated",
                                      "params": {"uri": uri}});
                    let _ = stream.send(body::sse_message(&note));
                }
            });
        }
        let mut response = if self.config.json_response {
            let out = Outbound {
                stream: None,
                waiting: self.waiting.clone(),
                session: session.clone().or(new_session.clone()),
            };
            let answer = respond(&id, self.catalog.answer(&method, &params, &out).await);
            Response::builder()
                .header(header::CONTENT_TYPE, "application/json")
                .body(body::full(answer.to_string()))
                .unwrap_or_default()
        } else {
            let (frames, rx) = mpsc::unbounded_channel();
            let session = session.clone().or(new_session.clone());
            tokio::spawn(
                self.clone()
                    .answer_on_stream(method, params, id, frames, session, false),
            );
            sse_response(rx)
        };
        if let Some(session) = new_session
            && let Ok(value) = session.parse()
        {
            response.headers_mut().insert(SESSION, value);
        }
        response
    }

    /// The standalone GET stream: server notifications for one session.
    fn get_stream(&self, headers: &HeaderMap) -> Response<ResponseBody> {
        if self.config.stateless {
            return plain(
                StatusCode::METHOD_NOT_ALLOWED,
                "this server is stateless: no GET stream",
            );
        }
        let accept = headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        if !accept.contains("text/event-stream") {
            return rpc_error(
                StatusCode::NOT_ACCEPTABLE,
                -32000,
                "Not Acceptable: Client must accept text/event-stream",
            );
        }
        let Some(session) = headers.get(SESSION).and_then(|v| v.to_str().ok()) else {
            return rpc_error(
                StatusCode::BAD_REQUEST,
                -32000,
                "Bad Request: Server not initialized",
            );
        };
        let (tx, rx) = mpsc::unbounded_channel();
        let ended = {
            let mut sessions = lock(&self.sessions);
            match sessions.get_mut(session) {
                Some(entry) => {
                    entry.stream = Some(tx.clone());
                    entry.ended.clone()
                }
                None => return rpc_error(StatusCode::NOT_FOUND, -32001, "Session not found"),
            }
        };
        self.forward_notifications(tx, ended);
        sse_response(rx)
    }

    fn delete(&self, headers: &HeaderMap) -> Response<ResponseBody> {
        let removed = headers
            .get(SESSION)
            .and_then(|v| v.to_str().ok())
            .and_then(|s| lock(&self.sessions).remove(s));
        match removed {
            Some(_) => {
                self.sessions_deleted.fetch_add(1, Ordering::Relaxed);
                status_only(StatusCode::OK)
            }
            None => rpc_error(StatusCode::NOT_FOUND, -32001, "Session not found"),
        }
    }

    /// Legacy SSE: the stream, whose first event names where to POST.
    fn open_sse(&self) -> Response<ResponseBody> {
        let (tx, rx) = mpsc::unbounded_channel();
        let (session, ended) = self.new_session(Some(tx.clone()));
        let _ = tx.send(Bytes::from(format!(
            "event: endpoint\ndata: /message?sessionId={session}\n\n"
        )));
        self.forward_notifications(tx, ended);
        sse_response(rx)
    }

    async fn post_sse(self: &Arc<Self>, req: Request<Incoming>) -> Response<ResponseBody> {
        let session = req
            .uri()
            .query()
            .unwrap_or_default()
            .split('&')
            .find_map(|kv| kv.strip_prefix("sessionId="))
            .map(str::to_string)
            .unwrap_or_default();
        let Some(stream) = lock(&self.sessions)
            .get(&session)
            .and_then(|e| e.stream.clone())
        else {
            return plain(StatusCode::NOT_FOUND, "Could not find session");
        };
        let message = match read_json(req).await {
            Ok(m) => m,
            Err(response) => return response,
        };
        let (Some(method), Some(id)) = (
            message
                .get("method")
                .and_then(Value::as_str)
                .map(str::to_string),
            message.get("id").cloned(),
        ) else {
            match message.get("method").and_then(Value::as_str) {
                Some(method) => self.count(method),
                None => self.deliver_answer(message),
            }
            return plain(StatusCode::ACCEPTED, "Accepted");
        };
        self.count(&method);
        let params = message.get("params").cloned().unwrap_or(Value::Null);
        tokio::spawn(self.clone().answer_on_stream(
            method,
            params,
            id,
            stream,
            Some(session),
            false,
        ));
        plain(StatusCode::ACCEPTED, "Accepted")
    }

    /// Answers request `id` on an SSE stream: whatever the request sends while it runs
    /// (logging, progress, questions to the client), then the answer.
    pub(crate) async fn answer_on_stream(
        self: Arc<Self>,
        method: String,
        params: Value,
        id: Value,
        stream: mpsc::UnboundedSender<Bytes>,
        session: Option<String>,
        modern: bool,
    ) {
        let (notify, mut notes) = mpsc::unbounded_channel();
        let out = Outbound {
            stream: Some(notify),
            waiting: self.waiting.clone(),
            session,
        };
        let answer = self.catalog.answer(&method, &params, &out);
        tokio::pin!(answer);
        let result = loop {
            tokio::select! {
                result = &mut answer => break result,
                Some(note) = notes.recv() => { let _ = stream.send(body::sse_message(&note)); }
            }
        };
        while let Ok(note) = notes.try_recv() {
            let _ = stream.send(body::sse_message(&note));
        }
        let result = result.map(|mut r| {
            if modern {
                crate::modern::decorate(&method, &mut r);
            }
            r
        });
        let _ = stream.send(body::sse_message(&respond(&id, result)));
    }

    /// Hands a client's answer to the request of ours that waits for it.
    fn deliver_answer(&self, message: Value) {
        let id = match message.get("id") {
            Some(Value::String(s)) => s.clone(),
            Some(other) => other.to_string(),
            None => return,
        };
        if let Some(waiter) = lock(&self.waiting).remove(&id) {
            let _ = waiter.send(message);
        }
    }

    /// Copies server-wide notifications (list_changed) onto one stream until it closes or
    /// its session ends. The stream's body ends with this task, which holds its sender.
    fn forward_notifications(&self, tx: mpsc::UnboundedSender<Bytes>, ended: CancellationToken) {
        let mut notes = self.notifications.subscribe();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = ended.cancelled() => return,
                    () = tx.closed() => return,
                    note = notes.recv() => match note {
                        Ok(note) => { if tx.send(body::sse_message(&note)).is_err() { return; } }
                        Err(broadcast::error::RecvError::Lagged(_)) => {}
                        Err(broadcast::error::RecvError::Closed) => return,
                    },
                }
            }
        });
    }
}

async fn read_json(req: Request<Incoming>) -> Result<Value, Response<ResponseBody>> {
    let bytes = match Limited::new(req.into_body(), MAX_REQUEST).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            return Err(rpc_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                -32600,
                "request body too large",
            ));
        }
    };
    let message: Value = serde_json::from_slice(&bytes)
        .map_err(|_| rpc_error(StatusCode::BAD_REQUEST, -32700, "Parse error: Invalid JSON"))?;
    if message.is_array() {
        return Err(rpc_error(
            StatusCode::BAD_REQUEST,
            -32600,
            "Invalid Request: batches are not supported",
        ));
    }
    Ok(message)
}

fn respond(id: &Value, result: Result<Value, (i64, String)>) -> Value {
    match result {
        Ok(result) => json!({"jsonrpc": "2.0", "id": id, "result": result}),
        Err((code, message)) => {
            json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}})
        }
    }
}

fn sse_response(rx: mpsc::UnboundedReceiver<Bytes>) -> Response<ResponseBody> {
    Response::builder()
        .header(header::CONTENT_TYPE, "text/event-stream")
        .header(header::CACHE_CONTROL, "no-cache, no-transform")
        .header("x-accel-buffering", "no")
        .body(body::stream(rx))
        .unwrap_or_default()
}

fn rpc_error(status: StatusCode, code: i64, message: &str) -> Response<ResponseBody> {
    let body = json!({"jsonrpc": "2.0", "error": {"code": code, "message": message}, "id": null});
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(body::full(body.to_string()))
        .unwrap_or_default()
}

fn plain(status: StatusCode, text: &str) -> Response<ResponseBody> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/plain")
        .body(body::full(text.to_string()))
        .unwrap_or_default()
}

fn status_only(status: StatusCode) -> Response<ResponseBody> {
    Response::builder()
        .status(status)
        .body(body::empty())
        .unwrap_or_default()
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}
