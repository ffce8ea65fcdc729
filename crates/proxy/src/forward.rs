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
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode, Uri};
use http_body::{Body, Frame, SizeHint};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::client::conn::http1 as client_http1;
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::sync::{Notify, watch};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

use crate::sse_rewrite::EndpointRewrite;
use crate::status::Backend;

pub(crate) type BoxError = Box<dyn StdError + Send + Sync>;
pub(crate) type ProxyBody = BoxBody<Bytes, BoxError>;

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
    origin: String,
    /// `host:port` to connect to.
    address: String,
    pub(crate) max_body: usize,
    /// How long a request may wait for response headers while the server is failing.
    pub(crate) down_timeout: Duration,
    pub(crate) backend: watch::Receiver<Backend>,
    /// Requests in flight (standalone GET streams excluded), for the drain at shutdown.
    pub(crate) inflight: Arc<Inflight>,
    /// Ends every standalone SSE stream at shutdown.
    pub(crate) close_streams: CancellationToken,
    metrics: RequestMetrics,
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
    pub(crate) fn new(
        target: &Uri,
        max_body: usize,
        down_timeout: Duration,
        backend: watch::Receiver<Backend>,
        inflight: Arc<Inflight>,
        close_streams: CancellationToken,
    ) -> Result<Self, String> {
        let scheme = target
            .scheme()
            .cloned()
            .ok_or("the target URL has no scheme")?;
        if scheme != http::uri::Scheme::HTTP {
            return Err("only http:// targets are supported".into());
        }
        let authority = target
            .authority()
            .cloned()
            .ok_or("the target URL has no host")?;
        let address = format!(
            "{}:{}",
            authority.host(),
            authority.port_u16().unwrap_or(80)
        );
        Ok(Forwarder {
            address,
            origin: format!("{scheme}://{authority}"),
            authority,
            max_body,
            down_timeout,
            backend,
            inflight,
            close_streams,
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
        let response = self.forward_inner(req, upstream).await;
        self.metrics
            .request(&method, response.status(), started.elapsed());
        response
    }

    async fn forward_inner(
        &self,
        req: Request<Incoming>,
        upstream: &Upstream,
    ) -> Response<ProxyBody> {
        let down = match &*self.backend.borrow() {
            Backend::ShuttingDown { reason } => {
                return rpc_error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    &format!("hale proxy is shutting down: {reason}"),
                );
            }
            Backend::Down { .. } => true,
            Backend::Up => false,
        };
        let too_large = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
            .is_some_and(|n| n > self.max_body as u64);
        if too_large {
            return rpc_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!("request body larger than {} bytes", self.max_body),
            );
        }
        let standalone_stream = req.method() == http::Method::GET;
        let guard = (!standalone_stream).then(|| self.inflight.enter());

        let (mut parts, body) = req.into_parts();
        let path = parts
            .uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/"));
        // Origin-form (`/path?query`), as a request to an origin server must be.
        parts.uri = Uri::from(path);
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
        let request = Request::from_parts(parts, Limited::new(body, self.max_body));

        let sent = upstream.send(&self.address, request);
        let response = if down {
            match tokio::time::timeout(self.down_timeout, sent).await {
                Ok(response) => response,
                Err(_) => {
                    return rpc_error(
                        StatusCode::GATEWAY_TIMEOUT,
                        &format!(
                            "the MCP server is failing its health checks and did not answer within {:?}",
                            self.down_timeout
                        ),
                    );
                }
            }
        } else {
            let mut backend = self.backend.clone();
            tokio::select! {
                response = sent => response,
                // The server failed a check while we waited for it: answer now.
                () = went_down(&mut backend) => {
                    return rpc_error(StatusCode::BAD_GATEWAY, "the MCP server failed its health check while this request waited");
                }
            }
        };
        let response = match response {
            Ok(r) => r,
            Err(e) => return e,
        };
        let (mut parts, body) = response.into_parts();
        strip_hop_by_hop(&mut parts.headers);
        let event_stream = parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        let body: ProxyBody = if event_stream {
            Tracked {
                inner: EndpointRewrite::new(body, self.origin.clone()),
                closed: standalone_stream
                    .then(|| Box::pin(self.close_streams.clone().cancelled_owned())),
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

async fn went_down(backend: &mut watch::Receiver<Backend>) {
    loop {
        if !matches!(*backend.borrow_and_update(), Backend::Up) {
            return;
        }
        if backend.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
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
        if let Some(closed) = self.closed.as_mut()
            && closed.as_mut().poll(cx).is_ready()
        {
            return Poll::Ready(None);
        }
        Pin::new(&mut self.inner)
            .poll_frame(cx)
            .map_err(BoxError::from)
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
    sender: std::sync::Mutex<Option<client_http1::SendRequest<Limited<Incoming>>>>,
}

type UpstreamRequest = Request<Limited<Incoming>>;

impl Upstream {
    async fn send(
        &self,
        address: &str,
        request: UpstreamRequest,
    ) -> Result<Response<Incoming>, Response<ProxyBody>> {
        let cached = self
            .sender
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        let reusable = match cached {
            Some(mut s) => s.ready().await.is_ok().then_some(s),
            None => None,
        };
        let mut sender = match reusable {
            Some(s) => s,
            None => connect(address).await?,
        };
        let response = sender.send_request(request).await;
        *self
            .sender
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(sender);
        response.map_err(|e| upstream_error(&e))
    }
}

async fn connect(
    address: &str,
) -> Result<client_http1::SendRequest<Limited<Incoming>>, Response<ProxyBody>> {
    let failed = |e: &dyn StdError| {
        rpc_error(
            StatusCode::BAD_GATEWAY,
            &format!(
                "cannot connect to the MCP server at {address}: {}",
                chain(e)
            ),
        )
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
    let (sender, connection) = client_http1::Builder::new()
        .writev(false)
        .handshake(TokioIo::new(stream))
        .await
        .map_err(|e| failed(&e))?;
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

/// Classifies a failure of an exchange with the server into the answer the client gets.
fn upstream_error(e: &hyper::Error) -> Response<ProxyBody> {
    let mut source: Option<&(dyn StdError + 'static)> = Some(e);
    while let Some(err) = source {
        if err.downcast_ref::<LengthLimitError>().is_some() {
            return rpc_error(StatusCode::PAYLOAD_TOO_LARGE, "request body too large");
        }
        source = err.source();
    }
    rpc_error(
        StatusCode::BAD_GATEWAY,
        &format!("the connection to the MCP server failed: {}", chain(e)),
    )
}

/// An error and its causes on one line.
fn chain(e: &dyn StdError) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(err) = source {
        text.push_str(": ");
        text.push_str(&err.to_string());
        source = err.source();
    }
    text
}

/// A JSON-RPC error answer, which MCP clients show instead of a bare HTTP failure.
pub(crate) fn rpc_error(status: StatusCode, message: &str) -> Response<ProxyBody> {
    let body = json!({"jsonrpc": "2.0", "id": null, "error": {"code": -32000, "message": message}});
    let mut response = Response::new(full(body.to_string()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if status == StatusCode::SERVICE_UNAVAILABLE {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
    }
    response
}

pub(crate) fn full(body: impl Into<Bytes>) -> ProxyBody {
    Full::new(body.into())
        .map_err(|never| match never {})
        .boxed()
}
