//! The request path: everything that is not `/health` or `/metrics` goes to the server
//! unchanged, streaming both ways.

use std::error::Error as StdError;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hale_mcp::codes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode, Uri};
use http_body::{Body, Frame, SizeHint};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::client::conn::http1 as client_http1;
use hyper_util::rt::TokioIo;
use tokio::sync::{Notify, watch};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

use crate::answer::{self, Said};
use crate::body::{BoxError, ProxyBody, full};
use crate::legacy::{self, LegacyStreams};
use crate::recovery::{self, Known, Sessions};
use crate::sse_rewrite::EndpointRewrite;
use crate::status::Backend;

/// Headers that describe one connection, not the message (RFC 9110 §7.6.1).
const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

pub(crate) struct Forwarder {
    authority: http::uri::Authority,
    /// The target's scheme, host and port (no user information): what spans name.
    target: Uri,
    origin: String,
    /// Where and how to connect.
    dial: Dial,
    pub(crate) config: ForwardConfig,
    metrics: RequestMetrics,
}

/// How a request is forwarded; shared by every worker's [`Forwarder`].
#[derive(Clone)]
pub(crate) struct ForwardConfig {
    /// Request bodies larger than this get 413.
    pub(crate) max_body: usize,
    /// How long to wait before connecting again to a server that refused.
    pub(crate) retry_delay: Duration,
    /// How an `https://` server is reached.
    pub(crate) tls: hale_mcp::Tls,
    /// How long a request may wait for the server's answer (headers) in all; `None`: until
    /// the proxy gives up on the server.
    pub(crate) request_timeout: Option<Duration>,
    /// What the monitor says of the server.
    pub(crate) backend: watch::Receiver<Backend>,
    /// Requests in flight (standalone GET streams excluded), for the drain at shutdown.
    pub(crate) inflight: Arc<Inflight>,
    /// Ends every standalone SSE stream at shutdown.
    pub(crate) close_streams: CancellationToken,
    /// Legacy SSE streams, to answer their clients where they listen.
    pub(crate) legacy: Arc<LegacyStreams>,
    /// How long a client may take to send a request's headers, or its body.
    pub(crate) read_timeout: Duration,
    /// The sessions the server issued, for recovery after it restarts (`None`:
    /// `--no-session-recovery`).
    pub(crate) sessions: Option<Arc<Sessions>>,
}

/// The request metrics' handles, registered once per worker: looking a labelled metric up
/// in the recorder on every request would cost more than the rest of the bookkeeping.
struct RequestMetrics {
    duration: metrics::Histogram,
    /// `(method, status)` → counter; a handful of combinations in practice.
    counters: std::sync::Mutex<Vec<(http::Method, u16, metrics::Counter)>>,
}

impl RequestMetrics {
    fn new() -> Self {
        RequestMetrics {
            duration: metrics::histogram!("toolhive_proxy_request_duration_seconds"),
            counters: std::sync::Mutex::new(Vec::new()),
        }
    }

    fn request(&self, method: &http::Method, status: StatusCode, took: Duration) {
        self.duration.record(took.as_secs_f64());
        let code = status.as_u16();
        let mut counters = self
            .counters
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((_, _, counter)) = counters.iter().find(|(m, c, _)| *c == code && m == method) {
            counter.increment(1);
            return;
        }
        let counter = metrics::counter!(
            "toolhive_proxy_requests_total",
            "method" => method_label(method),
            "status" => status_label(status)
        );
        counter.increment(1);
        counters.push((method.clone(), code, counter));
    }
}

/// Counts requests in flight and wakes the drain when the last one finishes.
#[derive(Default)]
pub(crate) struct Inflight {
    count: AtomicUsize,
    idle: Notify,
}

impl Inflight {
    fn enter(self: &Arc<Self>) -> InflightGuard {
        self.count.fetch_add(1, Ordering::AcqRel);
        InflightGuard(self.clone())
    }

    pub(crate) fn count(&self) -> usize {
        self.count.load(Ordering::Acquire)
    }

    /// Waits until nothing is in flight.
    pub(crate) async fn drained(&self) {
        loop {
            let idle = self.idle.notified();
            if self.count() == 0 {
                return;
            }
            idle.await;
        }
    }
}

struct InflightGuard(Arc<Inflight>);

impl Drop for InflightGuard {
    fn drop(&mut self) {
        if self.0.count.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

impl Forwarder {
    pub(crate) fn new(target: &Uri, config: ForwardConfig) -> Result<Self, String> {
        let scheme = target
            .scheme()
            .cloned()
            .ok_or("the target URL has no scheme")?;
        let https = scheme == http::uri::Scheme::HTTPS;
        if !https && scheme != http::uri::Scheme::HTTP {
            return Err("only http:// and https:// targets are supported".into());
        }
        let authority = target
            .authority()
            .cloned()
            .ok_or("the target URL has no host")?;
        // Connect by host and port only: user information is never sent, logged or shown.
        let host_port = format!(
            "{}:{}",
            authority.host(),
            authority.port_u16().unwrap_or(if https { 443 } else { 80 })
        );
        let tls = match https {
            false => None,
            true => Some((
                tokio_rustls::TlsConnector::from(config.tls.client_config()),
                config.tls.server_name(authority.host())?,
            )),
        };
        let authority: http::uri::Authority = host_port
            .parse()
            .map_err(|e| format!("the target URL's host is unusable ({e})"))?;
        let shown: Uri = format!("{scheme}://{authority}")
            .parse()
            .map_err(|e| format!("the target URL's host is unusable ({e})"))?;
        Ok(Forwarder {
            target: shown,
            dial: Dial {
                address: host_port,
                tls,
            },
            origin: format!(
                "{scheme}://{}",
                target.authority().map_or("", |a| a.as_str())
            ),
            authority,
            config,
            metrics: RequestMetrics::new(),
        })
    }

    pub(crate) async fn forward(
        &self,
        req: Request<Incoming>,
        upstream: &Upstream,
    ) -> Response<ProxyBody> {
        let started = Instant::now();
        let method = req.method().clone();
        let mut traced = None;
        let response = self.forward_inner(req, upstream, &mut traced).await;
        self.metrics
            .request(&method, response.status(), started.elapsed());
        if let Some(traced) = traced {
            let own = response.extensions().get::<answer::Own>().is_some();
            traced.finish(response.status(), own);
        }
        response
    }

    async fn forward_inner(
        &self,
        req: Request<Incoming>,
        upstream: &Upstream,
        traced: &mut Option<crate::traced::Traced>,
    ) -> Response<ProxyBody> {
        let too_large = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
            .is_some_and(|n| n > self.config.max_body as u64);
        if too_large {
            return self.body_too_large();
        }
        let standalone_stream = req.method() == http::Method::GET;
        let guard = (!standalone_stream).then(|| self.config.inflight.enter());

        let (mut parts, body) = req.into_parts();
        let path = parts
            .uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/"));
        // The body is read whole (MCP messages are small; 8 MiB at most) so that a
        // connection the server refused can be tried again, and so the proxy knows the
        // request's id when it must answer it itself.
        let read = tokio::time::timeout(
            self.config.read_timeout,
            Limited::new(body, self.config.max_body).collect(),
        );
        let mut body = match read.await {
            Ok(Ok(collected)) => collected.to_bytes(),
            Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => {
                return self.body_too_large();
            }
            Err(_) => {
                return answer::rpc_error(
                    StatusCode::REQUEST_TIMEOUT,
                    &Said::new(
                        codes::TIMEOUT,
                        format!(
                            "the request body did not arrive within {:?}",
                            self.config.read_timeout
                        ),
                    ),
                );
            }
            Ok(Err(_)) => {
                return answer::rpc_error(
                    StatusCode::BAD_REQUEST,
                    &Said::new(codes::UPSTREAM_FAILED, "the request body could not be read"),
                );
            }
        };
        if parts.method == http::Method::POST && hale_telemetry::get().is_some() {
            // The request's spans; their context replaces the client's traceparent in
            // the body's _meta and the headers.
            let peer = parts.extensions.get::<crate::traced::Peer>().copied();
            *traced =
                crate::traced::Traced::start(&self.target, &mut parts.headers, &mut body, peer);
        }
        let answer_self = |said: Said| self.answer_self(path.as_str(), &body, &said);
        if let Some(said) = self.config.backend.borrow().refusal() {
            return answer_self(said);
        }

        // Origin-form (`/path?query`), as a request to an origin server must be.
        parts.uri = Uri::from(path.clone());
        parts.version = http::Version::HTTP_11;
        strip_hop_by_hop(&mut parts.headers);
        // Host and Origin pass unchanged: the server's DNS-rebinding protection keeps
        // judging what the client sent. Only a request without one (HTTP/1.0) gets the
        // server's.
        if !parts.headers.contains_key(header::HOST)
            && let Ok(host) = HeaderValue::from_str(self.authority.as_str())
        {
            parts.headers.insert(header::HOST, host);
        }

        let deadline = self
            .config
            .request_timeout
            .map(|t| tokio::time::Instant::now() + t);
        // Session recovery: a session the proxy saw the server issue goes to the server
        // session it maps to now (another one, after the server restarted).
        let recovery = self.config.sessions.as_deref();
        let client_session = parts
            .headers
            .get(recovery::SESSION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let known = recovery
            .zip(client_session.as_deref())
            .and_then(|(s, c)| s.get(c));
        if let Some(k) = &known {
            redirect(&mut parts.headers, k, client_session.as_deref());
        }
        let initialize = recovery.is_some()
            && client_session.is_none()
            && parts.method == http::Method::POST
            && recovery::is_initialize(&body);
        let mut response = match self.deliver(upstream, &parts, &body, deadline).await {
            Ok(r) => r,
            Err(answer) => return answer,
        };
        if let Some(k) = &known
            && matches!(response.status().as_u16(), 400 | 404)
        {
            // Did the server forget the session? Its answer is small: read it to see.
            let stale = k.server();
            let (answer_parts, answer_body) = response.into_parts();
            let said = read_small(answer_body).await;
            if !recovery::says_session_lost(answer_parts.status, &said) {
                return Response::from_parts(answer_parts, full(said));
            }
            match self.recover(upstream, k, &stale, &parts, deadline).await {
                Ok(()) => {
                    redirect(&mut parts.headers, k, client_session.as_deref());
                    response = match self.deliver(upstream, &parts, &body, deadline).await {
                        Ok(r) => r,
                        Err(answer) => return answer,
                    };
                }
                Err(why) => {
                    tracing::warn!(reason = %why, "the MCP server lost a client's session and a new one could not be opened for it; the client is told as the server said");
                    return Response::from_parts(answer_parts, full(said));
                }
            }
        }
        if let Some(sessions) = recovery {
            match (&client_session, response.status().is_success()) {
                (None, true) if initialize => {
                    if let Some(id) = response
                        .headers()
                        .get(recovery::SESSION)
                        .and_then(|v| v.to_str().ok())
                    {
                        sessions.learn(id, body.clone());
                    }
                }
                (Some(c), _) if parts.method == http::Method::DELETE => sessions.forget(c),
                _ => {}
            }
        }
        if let (Some(k), Some(c)) = (&known, &client_session)
            && response.headers().contains_key(recovery::SESSION)
            && k.server() != *c
            && let Ok(v) = HeaderValue::from_str(c)
        {
            // The client keeps the session id it knows.
            response.headers_mut().insert(recovery::SESSION, v);
        }
        let (mut parts, body) = response.into_parts();
        strip_hop_by_hop(&mut parts.headers);
        let event_stream = parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        let body: ProxyBody = if event_stream {
            let mut rewrite = EndpointRewrite::new(body, self.origin.clone());
            if standalone_stream {
                rewrite = rewrite.registering(self.config.legacy.clone(), path.path().to_string());
            }
            Tracked {
                inner: rewrite,
                closed: standalone_stream
                    .then(|| Box::pin(self.config.close_streams.clone().cancelled_owned())),
                _inflight: guard,
                _stream: Some(SseGauge::open()),
            }
            .boxed()
        } else {
            Tracked {
                inner: body,
                closed: None,
                _inflight: guard,
                _stream: None,
            }
            .boxed()
        };
        Response::from_parts(parts, body)
    }

    /// Sends the request (`parts` and `body`) to the server until it is delivered: a
    /// connection the server refused is tried again after the retry delay, as long as the
    /// proxy has not given up on the server and the deadline has not passed. `Err`: the
    /// answer the proxy gives itself.
    async fn deliver(
        &self,
        upstream: &Upstream,
        parts: &http::request::Parts,
        body: &Bytes,
        deadline: Option<tokio::time::Instant>,
    ) -> Result<Response<Incoming>, Response<ProxyBody>> {
        // The legacy streams are known by path and query (`/messages?sessionId=…`).
        let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        let answer_self = |said: Said| self.answer_self(path, body, &said);
        let timed_out = || {
            Said::new(
                codes::TIMEOUT,
                format!(
                    "the MCP server did not answer within {:?} (the proxy's request timeout)",
                    self.config.request_timeout.unwrap_or_default()
                ),
            )
        };
        let mut backend = self.config.backend.clone();
        loop {
            let request = rebuild(parts, body.clone());
            let sent = tokio::select! {
                sent = upstream.send(&self.dial, request) => sent,
                said = given_up(&mut backend) => return Err(answer_self(said)),
                () = until(deadline) => return Err(answer_self(timed_out())),
            };
            match sent {
                Ok(response) => return Ok(response),
                Err(Failure::NotSent(detail)) => {
                    // The server never saw it (refused, or no connection): try again after
                    // the retry delay, as long as the proxy has not given up on it.
                    tracing::debug!(%detail, retry_in = ?self.config.retry_delay, "the MCP server is unreachable; retrying");
                    tokio::select! {
                        () = tokio::time::sleep(self.config.retry_delay) => {}
                        said = stopping(&mut backend) => return Err(answer_self(said)),
                        () = until(deadline) => return Err(answer_self(timed_out())),
                    }
                }
                Err(Failure::Broke(e)) if is_length_limit(&e) => return Err(self.body_too_large()),
                Err(Failure::Broke(e)) => {
                    return Err(answer_self(Said::new(
                        codes::UPSTREAM_FAILED,
                        format!(
                            "the connection to the MCP server broke after the request was sent (it may have run): {}",
                            hale_mcp::error_chain(&e)
                        ),
                    )));
                }
            }
        }
    }

    /// Opens a new server session for client session `known`, whose server session
    /// `stale` the server no longer knows: its `initialize` again, then
    /// `notifications/initialized`, with the credentials of the request that found it
    /// lost. Requests that find it lost together share one recovery.
    async fn recover(
        &self,
        upstream: &Upstream,
        known: &Known,
        stale: &str,
        request: &http::request::Parts,
        deadline: Option<tokio::time::Instant>,
    ) -> Result<(), String> {
        let _one = known.recovering.lock().await;
        if known.server() != stale {
            return Ok(()); // another request recovered it meanwhile
        }
        let mut init = Request::new(());
        *init.method_mut() = http::Method::POST;
        *init.uri_mut() = request.uri.clone();
        let headers = init.headers_mut();
        *headers = request.headers.clone();
        for name in [
            recovery::SESSION,
            "mcp-protocol-version",
            "last-event-id",
            "content-length",
        ] {
            headers.remove(name);
        }
        headers.insert(
            header::ACCEPT,
            HeaderValue::from_static("application/json, text/event-stream"),
        );
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        let (mut init, ()) = init.into_parts();
        let answer = self
            .deliver(upstream, &init, &known.initialize, deadline)
            .await
            .map_err(|_| "the server did not take the initialize again".to_string())?;
        let status = answer.status();
        let fresh = answer
            .headers()
            .get(recovery::SESSION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let said = read_small(answer.into_body()).await;
        let Some(fresh) = fresh.filter(|_| status.is_success()) else {
            return Err(format!(
                "the server answered the initialize again with HTTP {status} and no session"
            ));
        };
        let version = recovery::negotiated_version(&said);
        let headers = &mut init.headers;
        if let Ok(v) = HeaderValue::from_str(&fresh) {
            headers.insert(recovery::SESSION, v);
        }
        if let Some(v) = version.and_then(|v| HeaderValue::from_str(&v).ok()) {
            headers.insert("mcp-protocol-version", v);
        }
        let initialized =
            Bytes::from_static(br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
        if let Ok(answer) = self.deliver(upstream, &init, &initialized, deadline).await {
            let _ = read_small(answer.into_body()).await;
        }
        tracing::info!(
            "the MCP server lost a client's session (it restarted?); a new one was opened for it with its own initialize, and the client goes on under its session id"
        );
        metrics::counter!("toolhive_proxy_sessions_recovered_total").increment(1);
        known.moved_to(fresh);
        Ok(())
    }

    /// Answers a request the proxy could not deliver: on the client's legacy SSE stream
    /// when it POSTed to one (202 to the POST, as the server would), else 200 with a
    /// JSON-RPC error for its id.
    fn answer_self(&self, path: &str, body: &[u8], said: &Said) -> Response<ProxyBody> {
        if self.config.legacy.contains(path)
            && let Some(errors) = answer::errors_for(body, said)
            && self
                .config
                .legacy
                .inject(path, legacy::message_event(&errors))
        {
            let mut accepted = Response::new(full(Bytes::new()));
            *accepted.status_mut() = StatusCode::ACCEPTED;
            accepted.extensions_mut().insert(answer::Own);
            return accepted;
        }
        answer::to_request(body, said)
    }

    fn body_too_large(&self) -> Response<ProxyBody> {
        answer::rpc_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            &Said::new(
                codes::LIMIT_REACHED,
                format!("request body larger than {} bytes", self.config.max_body),
            ),
        )
    }
}

/// Points a request of client session `known` (whose id the client sent as `client`)
/// at the server session it goes to now. Event ids of a session the server forgot mean
/// nothing to the new one: `Last-Event-ID` is dropped then.
fn redirect(headers: &mut HeaderMap, known: &Known, client: Option<&str>) {
    let server = known.server();
    if Some(server.as_str()) == client {
        return;
    }
    if let Ok(v) = HeaderValue::from_str(&server) {
        headers.insert(recovery::SESSION, v);
    }
    headers.remove("last-event-id");
}

/// A small answer read whole (at most 1 MiB within 30 s; what could not be read is left
/// out).
async fn read_small(body: Incoming) -> Bytes {
    match tokio::time::timeout(
        Duration::from_secs(30),
        Limited::new(body, 1024 * 1024).collect(),
    )
    .await
    {
        Ok(Ok(collected)) => collected.to_bytes(),
        _ => Bytes::new(),
    }
}

/// The request again, for another attempt (the body is cheap to clone).
fn rebuild(parts: &http::request::Parts, body: Bytes) -> UpstreamRequest {
    let mut request = Request::new(Full::new(body));
    *request.method_mut() = parts.method.clone();
    *request.uri_mut() = parts.uri.clone();
    *request.version_mut() = parts.version;
    *request.headers_mut() = parts.headers.clone();
    request
}

/// Resolves when the proxy gives up on the server (a request waiting for it is answered
/// then); a SIGTERM alone lets requests the server already has finish.
async fn given_up(backend: &mut watch::Receiver<Backend>) -> Said {
    loop {
        if let Backend::GivenUp { reason } = &*backend.borrow_and_update() {
            return Said::new(
                codes::BACKEND_UNAVAILABLE,
                format!("the MCP server is unavailable: {reason}"),
            );
        }
        if backend.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// Resolves when the proxy stops for any reason (a request not yet sent is answered then).
async fn stopping(backend: &mut watch::Receiver<Backend>) -> Said {
    loop {
        if let Some(said) = backend.borrow_and_update().refusal() {
            return said;
        }
        if backend.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

async fn until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Label values without an allocation for the common cases.
fn method_label(method: &http::Method) -> metrics::SharedString {
    match *method {
        http::Method::POST => "POST".into(),
        http::Method::GET => "GET".into(),
        http::Method::DELETE => "DELETE".into(),
        ref other => other.to_string().into(),
    }
}

fn status_label(status: StatusCode) -> metrics::SharedString {
    match status.as_u16() {
        200 => "200".into(),
        202 => "202".into(),
        400 => "400".into(),
        404 => "404".into(),
        502 => "502".into(),
        503 => "503".into(),
        other => other.to_string().into(),
    }
}

/// A response body that holds its request's in-flight slot until it ends, and, for a
/// standalone SSE stream, ends early when the proxy shuts down.
struct Tracked<B> {
    inner: B,
    closed: Option<Pin<Box<WaitForCancellationFutureOwned>>>,
    _inflight: Option<InflightGuard>,
    _stream: Option<SseGauge>,
}

impl<B> Body for Tracked<B>
where
    B: Body<Data = Bytes, Error = hyper::Error> + Unpin,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let frame = Pin::new(&mut self.inner)
            .poll_frame(cx)
            .map_err(BoxError::from);
        // At shutdown, what is ready (an answer the proxy just put on the stream) still
        // goes out; then the stream ends.
        if frame.is_pending()
            && let Some(closed) = self.closed.as_mut()
            && closed.as_mut().poll(cx).is_ready()
        {
            return Poll::Ready(None);
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The upstream connection of one downstream connection.
///
/// HTTP/1.1 carries one request at a time, so each client connection gets its own
/// upstream connection, opened on first use and reused while it lives: no shared pool to
/// lock, and the connection's task runs on the same worker thread as the client's.
#[derive(Default)]
pub(crate) struct Upstream {
    sender: std::sync::Mutex<Option<client_http1::SendRequest<Full<Bytes>>>>,
}

type UpstreamRequest = Request<Full<Bytes>>;

/// Why an exchange with the server failed.
enum Failure {
    /// The server never received the request: safe to send again.
    NotSent(String),
    /// It broke after the request went out: the server may have acted on it.
    Broke(hyper::Error),
}

impl Upstream {
    async fn send(
        &self,
        dial: &Dial,
        request: UpstreamRequest,
    ) -> Result<Response<Incoming>, Failure> {
        let cached = self
            .sender
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        let reusable = match cached {
            Some(mut s) => s.ready().await.is_ok().then_some(s),
            None => None,
        };
        let request = match reusable {
            Some(sender) => match self.try_on(sender, request).await {
                // A kept-alive connection the server had just closed: a new one.
                Err(unsent) => unsent,
                Ok(answer) => return answer,
            },
            None => request,
        };
        let sender = connect(dial).await?;
        match self.try_on(sender, request).await {
            Ok(answer) => answer,
            Err(_) => Err(Failure::NotSent(
                "the new connection closed before the request was sent".into(),
            )),
        }
    }

    /// Sends on `sender`; `Err(request)` when it was not sent, to try elsewhere.
    async fn try_on(
        &self,
        mut sender: client_http1::SendRequest<Full<Bytes>>,
        request: UpstreamRequest,
    ) -> Result<Result<Response<Incoming>, Failure>, UpstreamRequest> {
        match sender.try_send_request(request).await {
            Ok(response) => {
                *self
                    .sender
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(sender);
                Ok(Ok(response))
            }
            Err(mut e) => match e.take_message() {
                Some(unsent) => Err(unsent),
                None => Ok(Err(Failure::Broke(e.into_error()))),
            },
        }
    }
}

/// Where the server is, and the TLS to speak there (`https://`).
pub(crate) struct Dial {
    /// `host:port`.
    address: String,
    tls: Option<(
        tokio_rustls::TlsConnector,
        tokio_rustls::rustls::pki_types::ServerName<'static>,
    )>,
}

async fn connect(dial: &Dial) -> Result<client_http1::SendRequest<Full<Bytes>>, Failure> {
    let address = &dial.address;
    let failed = |e: &(dyn StdError + 'static)| {
        Failure::NotSent(match hale_mcp::Tls::explain(e) {
            Some(reason) => format!("cannot connect to the MCP server at {address}: {reason}"),
            None => format!(
                "cannot connect to the MCP server at {address}: {}",
                hale_mcp::error_chain(e)
            ),
        })
    };
    let stream = match tokio::time::timeout(
        Duration::from_secs(5),
        tokio::net::TcpStream::connect(address),
    )
    .await
    {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => return Err(failed(&e)),
        Err(e) => return Err(failed(&e)),
    };
    let _ = stream.set_nodelay(true);
    match &dial.tls {
        None => handshake(TokioIo::new(stream))
            .await
            .map_err(|e| failed(&e)),
        Some((connector, name)) => {
            let stream = match tokio::time::timeout(
                Duration::from_secs(5),
                connector.connect(name.clone(), stream),
            )
            .await
            {
                Ok(Ok(stream)) => stream,
                Ok(Err(e)) => return Err(failed(&e)),
                Err(e) => return Err(failed(&e)),
            };
            handshake(TokioIo::new(stream))
                .await
                .map_err(|e| failed(&e))
        }
    }
}

/// HTTP/1.1 over `io` (plain or TLS), its connection driven by a task of its own.
async fn handshake<IO>(io: IO) -> Result<client_http1::SendRequest<Full<Bytes>>, hyper::Error>
where
    IO: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (sender, connection) = client_http1::Builder::new()
        .writev(false)
        .handshake(io)
        .await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(sender)
}

/// Counts an open SSE stream in `toolhive_proxy_active_sse_streams` while it lives.
struct SseGauge;

impl SseGauge {
    fn open() -> Self {
        metrics::gauge!("toolhive_proxy_active_sse_streams").increment(1.0);
        SseGauge
    }
}

impl Drop for SseGauge {
    fn drop(&mut self) {
        metrics::gauge!("toolhive_proxy_active_sse_streams").decrement(1.0);
    }
}

/// Removes hop-by-hop headers, including every header the `Connection` header names.
pub(crate) fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
}

fn is_length_limit(e: &hyper::Error) -> bool {
    let mut source: Option<&(dyn StdError + 'static)> = Some(e);
    while let Some(err) = source {
        if err.downcast_ref::<LengthLimitError>().is_some() {
            return true;
        }
        source = err.source();
    }
    false
}
