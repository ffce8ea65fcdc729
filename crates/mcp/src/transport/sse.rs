//! Legacy HTTP+SSE (MCP 2024-11-05): a GET stream whose first event names the endpoint
//! to POST to; every answer comes back on the stream, matched to its request by id.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use http::{Method, Request, StatusCode, Uri, header};
use http_body_util::Full;
use hyper::body::Incoming;
use serde_json::Value;
use sse_stream::SseStream;
use tokio::sync::{broadcast, oneshot};
use tokio_util::sync::CancellationToken;

use super::{Unsolicited, unsolicited};
use crate::McpError;
use crate::http::{self as h, HttpClient};
use crate::jsonrpc::{self, Message, Notification, RpcError};

/// How long the server has to name its endpoint after the stream opens.
const ENDPOINT_DEADLINE: Duration = Duration::from_secs(10);

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<Result<Value, RpcError>>>>>;

#[derive(Debug)]
pub(crate) struct LegacySse {
    url: String,
    http: HttpClient,
    endpoint: Uri,
    pending: Pending,
    alive: Arc<AtomicBool>,
    stop: CancellationToken,
}

impl LegacySse {
    /// Opens the event stream and waits for the `endpoint` event.
    pub(crate) async fn connect(
        url: &str,
        uri: Uri,
        http: HttpClient,
        notifications: broadcast::Sender<Notification>,
    ) -> Result<Self, McpError> {
        const METHOD: &str = "GET (SSE stream)";
        let request = Request::builder()
            .method(Method::GET)
            .uri(uri.clone())
            .header(header::ACCEPT, "text/event-stream")
            .body(Full::new(Bytes::new()))
            .map_err(|e| McpError::InvalidUrl {
                url: url.into(),
                reason: e.to_string(),
            })?;
        let response = http
            .request(request)
            .await
            .map_err(|e| h::send_error(url, METHOD, e))?;
        let status = response.status();
        if let Some(e) = h::rate_limited(url, METHOD, status, response.headers()) {
            return Err(e);
        }
        if !status.is_success() || !h::is_event_stream(response.headers()) {
            let body = h::read_body(url, METHOD, response.into_body())
                .await
                .unwrap_or_default();
            return Err(status_error(url, METHOD, status, &body));
        }
        let mut events = SseStream::new(response.into_body());
        let endpoint = tokio::time::timeout(ENDPOINT_DEADLINE, async {
            while let Some(event) = events.next().await {
                let event = event.map_err(|e| McpError::Protocol {
                    url: url.into(),
                    method: METHOD.into(),
                    detail: format!("broken SSE stream: {e}"),
                })?;
                if event.event.as_deref() == Some("endpoint") {
                    return resolve_endpoint(url, &uri, event.data.as_deref().unwrap_or_default());
                }
            }
            Err(McpError::ConnectionReset {
                url: url.into(),
                method: METHOD.into(),
                detail: "the SSE stream ended before the endpoint event".into(),
            })
        })
        .await
        .map_err(|_| McpError::Timeout {
            url: url.into(),
            method: "endpoint event".into(),
            after: ENDPOINT_DEADLINE,
        })??;

        let transport = LegacySse {
            url: url.into(),
            http,
            endpoint,
            pending: Pending::default(),
            alive: Arc::new(AtomicBool::new(true)),
            stop: CancellationToken::new(),
        };
        let reader = Reader {
            transport_url: transport.url.clone(),
            http: transport.http.clone(),
            endpoint: transport.endpoint.clone(),
            pending: transport.pending.clone(),
            alive: transport.alive.clone(),
            notifications,
        };
        let stop = transport.stop.clone();
        tokio::spawn(async move {
            tokio::select! {
                () = stop.cancelled() => {}
                () = reader.run(events) => {}
            }
            reader.alive.store(false, Ordering::Release);
            lock(&reader.pending).clear();
        });
        Ok(transport)
    }

    pub(crate) async fn request(
        &self,
        id: u64,
        method: &str,
        message: &Value,
    ) -> Result<Value, McpError> {
        let (tx, rx) = oneshot::channel();
        lock(&self.pending).insert(id, tx);
        // Whatever happens next, the slot must not outlive this call.
        let _cleanup = Cleanup {
            pending: &self.pending,
            id,
        };
        self.post_no_answer(method, &crate::jsonrpc::handshake_era(message))
            .await?;
        match rx.await {
            Ok(Ok(result)) => Ok(result),
            Ok(Err(e)) => Err(McpError::rpc(&self.url, method, e)),
            Err(_) => Err(McpError::ConnectionReset {
                url: self.url.clone(),
                method: method.into(),
                detail: "the SSE stream closed before the answer".into(),
            }),
        }
    }

    pub(crate) async fn post_no_answer(
        &self,
        method: &str,
        message: &Value,
    ) -> Result<(), McpError> {
        if !self.alive.load(Ordering::Acquire) {
            return Err(McpError::SessionLost {
                url: self.url.clone(),
                detail: "the SSE stream closed".into(),
            });
        }
        let response = post(&self.http, &self.endpoint, message)
            .await
            .map_err(|e| h::send_error(&self.url, method, e))?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        if let Some(e) = h::rate_limited(&self.url, method, status, response.headers()) {
            return Err(e);
        }
        let body = h::read_body(&self.url, method, response.into_body()).await?;
        Err(status_error(&self.url, method, status, &body))
    }

    pub(crate) fn close(&self) {
        self.stop.cancel();
    }
}

/// A handle that can post a notification to this stream's endpoint later.
#[derive(Clone, Debug)]
pub(crate) struct CancelHandle {
    url: String,
    http: HttpClient,
    endpoint: Uri,
    alive: Arc<AtomicBool>,
}

impl CancelHandle {
    pub(crate) async fn send(&self, message: &Value) {
        if !self.alive.load(Ordering::Acquire) {
            return;
        }
        if let Err(e) = post(&self.http, &self.endpoint, message).await {
            tracing::debug!(url = %self.url, error = %e, "the cancellation did not reach the server");
        }
    }
}

impl LegacySse {
    pub(crate) fn cancel_handle(&self) -> CancelHandle {
        CancelHandle {
            url: self.url.clone(),
            http: self.http.clone(),
            endpoint: self.endpoint.clone(),
            alive: self.alive.clone(),
        }
    }
}

impl Drop for LegacySse {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

struct Cleanup<'a> {
    pending: &'a Pending,
    id: u64,
}

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        lock(self.pending).remove(&self.id);
    }
}

/// The task that reads the stream: answers go to their waiting requests, the rest is
/// delivered or answered.
struct Reader {
    transport_url: String,
    http: HttpClient,
    endpoint: Uri,
    pending: Pending,
    alive: Arc<AtomicBool>,
    notifications: broadcast::Sender<Notification>,
}

impl Reader {
    async fn run(&self, mut events: SseStream<Incoming>) {
        while let Some(Ok(event)) = events.next().await {
            if !matches!(event.event.as_deref(), None | Some("message")) {
                continue;
            }
            let Some(data) = event.data.filter(|d| !d.trim().is_empty()) else {
                continue;
            };
            let message = match jsonrpc::parse_bytes(data.as_bytes()) {
                Ok(m) => m,
                Err(detail) => {
                    tracing::debug!(url = %self.transport_url, %detail, "ignoring a malformed SSE message");
                    continue;
                }
            };
            match message {
                Message::Response { id, outcome } => {
                    let waiter = id.as_u64().and_then(|id| lock(&self.pending).remove(&id));
                    if let Some(waiter) = waiter {
                        let _ = waiter.send(outcome);
                    }
                }
                other => {
                    if let Unsolicited::Reply(reply) = unsolicited(other, &self.notifications) {
                        let (http, endpoint) = (self.http.clone(), self.endpoint.clone());
                        tokio::spawn(async move {
                            let _ = post(&http, &endpoint, &reply).await;
                        });
                    }
                }
            }
        }
    }
}

async fn post(
    http: &HttpClient,
    endpoint: &Uri,
    message: &Value,
) -> Result<http::Response<Incoming>, hyper_util::client::legacy::Error> {
    let builder = Request::builder()
        .method(Method::POST)
        .uri(endpoint.clone())
        .header(header::CONTENT_TYPE, "application/json");
    let request = super::with_trace_headers(builder, message)
        .body(Full::new(Bytes::from(message.to_string())))
        .unwrap_or_default();
    http.request(request).await
}

fn status_error(url: &str, method: &str, status: StatusCode, body: &[u8]) -> McpError {
    if let Some(e) = h::tls_refusal(url, status, body) {
        return e;
    }
    match status {
        StatusCode::NOT_FOUND if method != "GET (SSE stream)" => McpError::SessionLost {
            url: url.into(),
            detail: format!("HTTP 404: {}", jsonrpc::preview(body)),
        },
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => McpError::Unauthorized {
            url: url.into(),
            method: method.into(),
            status: status.as_u16(),
        },
        s if s.is_success() => McpError::Protocol {
            url: url.into(),
            method: method.into(),
            detail: "expected an SSE stream (text/event-stream)".into(),
        },
        _ => McpError::HttpStatus {
            url: url.into(),
            method: method.into(),
            status: status.as_u16(),
            body: jsonrpc::preview(body),
        },
    }
}

/// Resolves the `endpoint` event's URI against the stream's URL, refusing other origins.
fn resolve_endpoint(url: &str, base: &Uri, data: &str) -> Result<Uri, McpError> {
    let data = data.trim();
    let bad = |detail: String| McpError::Protocol {
        url: url.into(),
        method: "endpoint event".into(),
        detail,
    };
    let origin = format!(
        "{}://{}",
        base.scheme_str().unwrap_or("http"),
        base.authority().map(|a| a.as_str()).unwrap_or_default()
    );
    let resolved = if data.starts_with("http://") || data.starts_with("https://") {
        if !data.starts_with(&format!("{origin}/")) && data != origin {
            return Err(bad(format!(
                "endpoint {data:?} is not on the stream's origin {origin}"
            )));
        }
        data.to_string()
    } else if data.starts_with('/') {
        format!("{origin}{data}")
    } else {
        let path = base.path();
        let dir = &path[..path.rfind('/').map_or(0, |i| i + 1)];
        format!("{origin}{dir}{data}")
    };
    resolved
        .parse()
        .map_err(|e| bad(format!("endpoint {data:?} is not a URI ({e})")))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_resolve_against_the_stream_origin() {
        let base: Uri = "http://127.0.0.1:8080/sse".parse().unwrap();
        let url = "http://127.0.0.1:8080/sse";
        assert_eq!(
            resolve_endpoint(url, &base, "/message?sessionId=abc").unwrap(),
            "http://127.0.0.1:8080/message?sessionId=abc"
        );
        assert_eq!(
            resolve_endpoint(url, &base, "messages/?session_id=1").unwrap(),
            "http://127.0.0.1:8080/messages/?session_id=1"
        );
        assert_eq!(
            resolve_endpoint(url, &base, "http://127.0.0.1:8080/m?x=1").unwrap(),
            "http://127.0.0.1:8080/m?x=1"
        );
        let err = resolve_endpoint(url, &base, "http://evil.example/m").unwrap_err();
        assert!(
            err.to_string().contains("not on the stream's origin"),
            "{err}"
        );
    }
}
