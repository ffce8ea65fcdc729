//! The pooled HTTP/1.1 client every transport uses, and how its errors are classified.

use std::error::Error as StdError;
use std::io;
use std::time::Duration;

use bytes::Bytes;
use http::Uri;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::McpError;

/// The largest response body read whole (JSON answers; SSE streams are read event by event).
pub(crate) const MAX_BODY: usize = 16 * 1024 * 1024;

type RawClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// Keep-alive connection pools: one, or one per thread of a host that runs a
/// single-threaded runtime per thread (then each request uses its own thread's pool, so
/// that a connection's task and its requests stay on one thread).
#[derive(Clone, Debug)]
pub(crate) struct HttpClient {
    pools: std::sync::Arc<[RawClient]>,
    select: Option<fn() -> Option<usize>>,
    /// Added to every request (a backend's configured headers and token).
    credentials: Option<crate::Credentials>,
    /// How `https://` servers are reached.
    tls: crate::Tls,
}

impl HttpClient {
    /// `n` pools; `select` says which this thread uses (modulo `n`; `None`: the last).
    pub(crate) fn per_thread(n: usize, select: fn() -> Option<usize>) -> Self {
        let tls = crate::Tls::default();
        HttpClient {
            pools: (0..n.max(1)).map(|_| raw(&tls)).collect(),
            select: Some(select),
            credentials: None,
            tls,
        }
    }

    /// The same number of pools, new and empty, reaching `https://` servers with `tls`.
    pub(crate) fn with_tls(mut self, tls: crate::Tls) -> Self {
        if tls != self.tls {
            self.pools = (0..self.pools.len()).map(|_| raw(&tls)).collect();
            self.tls = tls;
        }
        self
    }

    /// The same pools, sending `credentials` with each request.
    pub(crate) fn with_credentials(mut self, credentials: Option<crate::Credentials>) -> Self {
        self.credentials = credentials.filter(|c| !c.is_empty());
        self
    }

    pub(crate) fn request(
        &self,
        mut request: http::Request<Full<Bytes>>,
    ) -> hyper_util::client::legacy::ResponseFuture {
        if let Some(credentials) = &self.credentials {
            credentials.apply(&mut request);
        }
        let n = self.pools.len();
        let i = self.select.map_or(0, |f| f().map_or(n - 1, |i| i % n));
        self.pools[i].request(request)
    }
}

/// A keep-alive connection pool for one client. Not shared process-wide on purpose: a
/// pooled connection's task lives on the runtime that opened it, and a host (or a test
/// suite) may run several runtimes; a connection from a runtime that has shut down fails
/// when reused.
pub(crate) fn client() -> HttpClient {
    let tls = crate::Tls::default();
    HttpClient {
        pools: std::sync::Arc::new([raw(&tls)]),
        select: None,
        credentials: None,
        tls,
    }
}

fn raw(tls: &crate::Tls) -> RawClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(Duration::from_secs(10)));
    // `http://` stays plain; `https://` goes through rustls with these settings.
    connector.enforce_http(false);
    let builder = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config((*tls.client_config()).clone())
        .https_or_http();
    // A fixed `serverName` (checked when the settings were built) instead of the host.
    let builder = match (&tls.options().server_name, tls.server_name("")) {
        (Some(_), Ok(name)) => {
            builder.with_server_name_resolver(hyper_rustls::FixedServerNameResolver::new(name))
        }
        _ => builder,
    };
    let connector = builder.enable_http1().wrap_connector(connector);
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(90))
        // MCP messages are small: one flattened write beats an iovec.
        .http1_writev(false)
        .pool_timer(TokioTimer::new())
        .build(connector)
}

/// Checks that a backend URL is something we can talk to.
pub(crate) fn parse_url(url: &str) -> Result<Uri, McpError> {
    let invalid = |reason: &str| McpError::InvalidUrl {
        url: crate::redact_url(url),
        reason: reason.to_string(),
    };
    let uri: Uri = url
        .parse()
        .map_err(|e| invalid(&format!("not a URL ({e})")))?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        _ => return Err(invalid("expected an http:// or https:// URL")),
    }
    if uri.host().is_none() {
        return Err(invalid("the URL has no host"));
    }
    Ok(uri)
}

/// Classifies a failure to get response headers.
pub(crate) fn send_error(
    url: &str,
    method: &str,
    err: hyper_util::client::legacy::Error,
) -> McpError {
    if let Some(reason) = crate::tls::explain(&err) {
        return McpError::Tls {
            url: url.into(),
            reason,
        };
    }
    if err.is_connect() {
        if io_kind(&err) == Some(io::ErrorKind::ConnectionRefused) {
            return McpError::ConnectionRefused { url: url.into() };
        }
        return McpError::Connect {
            url: url.into(),
            detail: error_chain(&err),
        };
    }
    McpError::ConnectionReset {
        url: url.into(),
        method: method.into(),
        detail: error_chain(&err),
    }
}

/// Classifies a failure while reading a response body.
pub(crate) fn body_error(url: &str, method: &str, err: &(dyn StdError + 'static)) -> McpError {
    if let Some(reason) = crate::tls::explain(err) {
        return McpError::Tls {
            url: url.into(),
            reason,
        };
    }
    McpError::ConnectionReset {
        url: url.into(),
        method: method.into(),
        detail: error_chain(err),
    }
}

/// Reads a whole (bounded) body.
pub(crate) async fn read_body(url: &str, method: &str, body: Incoming) -> Result<Bytes, McpError> {
    read_body_within(url, method, body, MAX_BODY).await
}

/// Like [`read_body`], at most `limit` bytes.
pub(crate) async fn read_body_within(
    url: &str,
    method: &str,
    body: Incoming,
    limit: usize,
) -> Result<Bytes, McpError> {
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) => {
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                Err(McpError::Protocol {
                    url: url.into(),
                    method: method.into(),
                    detail: format!("response body larger than {limit} bytes"),
                })
            } else {
                Err(body_error(url, method, e.as_ref()))
            }
        }
    }
}

fn io_kind(err: &(dyn StdError + 'static)) -> Option<io::ErrorKind> {
    let mut source: Option<&(dyn StdError + 'static)> = Some(err);
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<io::Error>() {
            return Some(io.kind());
        }
        source = e.source();
    }
    None
}

/// An error and its causes on one line.
/// An error and its causes on one line (`a: b: c`), each cause once.
pub fn error_chain(err: &dyn StdError) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(e) = source {
        let text = e.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = e.source();
    }
    out
}

/// The error for a TLS-terminating proxy's refusal of the client certificate, which
/// nginx answers with an HTTP 400 page after the handshake rather than a TLS alert.
pub(crate) fn tls_refusal(url: &str, status: http::StatusCode, body: &[u8]) -> Option<McpError> {
    if status != http::StatusCode::BAD_REQUEST {
        return None;
    }
    let text = String::from_utf8_lossy(&body[..body.len().min(4096)]);
    let reason = if text.contains("No required SSL certificate was sent") {
        "TLS: the server requires a client certificate (it answered 400 \"No required SSL certificate was sent\"): set tls.clientCertPath and tls.clientKeyPath (hale proxy: --target-client-cert and --target-client-key)"
    } else if text.contains("The SSL certificate error") {
        "TLS: the server refused the client certificate (it answered 400 \"The SSL certificate error\"): check tls.clientCertPath against the CA the server trusts"
    } else {
        return None;
    };
    Some(McpError::Tls {
        url: url.into(),
        reason: reason.into(),
    })
}

/// The error for a 429 answer (with its `Retry-After` in seconds, if any), or `None` for
/// any other status. A 429 is a live server asking for less, not a failure.
pub(crate) fn rate_limited(
    url: &str,
    method: &str,
    status: http::StatusCode,
    headers: &http::HeaderMap,
) -> Option<McpError> {
    if status != http::StatusCode::TOO_MANY_REQUESTS {
        return None;
    }
    let retry_after = headers
        .get(http::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(std::time::Duration::from_secs);
    Some(McpError::RateLimited {
        url: url.into(),
        method: method.into(),
        retry_after,
    })
}

/// Whether a response's content type is an SSE stream.
pub(crate) fn is_event_stream(headers: &http::HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().starts_with("text/event-stream"))
}
