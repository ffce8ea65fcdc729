//! Getting spans and metrics to the collector without the request path ever waiting on
//! it: ended spans go into a bounded queue (a full queue drops the span and counts it)
//! drained by one thread that exports batches over OTLP http/protobuf, through hale's
//! own hyper client on the product's runtime (no second HTTP or TLS stack). See
//! docs/decisions/0009-opentelemetry.md for why not the SDK's batch processor.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use opentelemetry::Context;
use opentelemetry_http::HttpError;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{Span, SpanData, SpanExporter, SpanProcessor};

/// Ended spans by what became of them (`outcome`: `exported`, `failed`, `dropped`), in
/// the product's Prometheus metrics.
pub const SPANS_METRIC: &str = "hale_otel_spans_total";

/// At most this many spans in one export.
const BATCH: usize = 512;
/// A batch waits at most this long for more spans.
const DELAY: Duration = Duration::from_secs(1);

/// The OTLP exporters' HTTP client: hyper (rustls with the Mozilla roots for
/// `https://`), run on the product's tokio runtime whatever thread asks.
pub(crate) struct Hyper {
    client: Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>,
    runtime: tokio::runtime::Handle,
    timeout: Duration,
}

impl fmt::Debug for Hyper {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hyper").finish_non_exhaustive()
    }
}

impl Hyper {
    pub(crate) fn new(runtime: tokio::runtime::Handle, timeout: Duration) -> Self {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(timeout));
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map(|b| {
            b.with_root_certificates(rustls::RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            })
            .with_no_client_auth()
        });
        let connector = match tls {
            Ok(tls) => hyper_rustls::HttpsConnectorBuilder::new()
                .with_tls_config(tls)
                .https_or_http()
                .enable_http1()
                .wrap_connector(http),
            Err(_) => hyper_rustls::HttpsConnectorBuilder::new()
                .with_webpki_roots()
                .https_or_http()
                .enable_http1()
                .wrap_connector(http),
        };
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        Hyper {
            client,
            runtime,
            timeout,
        }
    }
}

type Sending<'a> = std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<Response<Bytes>, HttpError>> + Send + 'a>,
>;

// The trait is declared with `#[async_trait]`: this is the signature it expands to.
impl opentelemetry_http::HttpClient for Hyper {
    fn send_bytes<'life0, 'async_trait>(
        &'life0 self,
        request: Request<Bytes>,
    ) -> Sending<'async_trait>
    where
        'life0: 'async_trait,
        Self: 'async_trait,
    {
        Box::pin(self.send(request))
    }
}

impl Hyper {
    async fn send(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let (parts, body) = request.into_parts();
        let request = Request::from_parts(parts, Full::new(body));
        let client = self.client.clone();
        let timeout = self.timeout;
        let answer = self.runtime.spawn(async move {
            let exchange = async {
                let response = client.request(request).await?;
                let (parts, body) = response.into_parts();
                let body = http_body_util::Limited::new(body, 1 << 20)
                    .collect()
                    .await
                    .map_err(|e| -> HttpError { e })?
                    .to_bytes();
                Ok::<_, HttpError>(Response::from_parts(parts, body))
            };
            match tokio::time::timeout(timeout, exchange).await {
                Ok(r) => r,
                Err(_) => Err(format!("no answer from the collector within {timeout:?}").into()),
            }
        });
        answer.await.map_err(|e| -> HttpError { Box::new(e) })?
    }
}

/// What became of ended spans (for `hale_otel_spans_total`).
#[derive(Debug, Default)]
pub struct SpanCounts {
    /// Sent to the collector, which took them.
    pub exported: AtomicU64,
    /// Dropped: the queue was full (the collector down or slow for long).
    pub dropped: AtomicU64,
    /// Sent, but the collector refused them or could not be reached.
    pub failed: AtomicU64,
}

/// What the request path and the exporting thread share: ended spans waiting, and
/// flush requests. A span is pushed under a short lock; the thread is woken only when a
/// batch is full or a flush is asked (not per span: waking a thread per span cost more
/// than the span).
#[derive(Default)]
struct Shared {
    waiting: Mutex<Waiting>,
    wake: Condvar,
    flushed: Condvar,
}

#[derive(Default)]
struct Waiting {
    spans: Vec<SpanData>,
    /// Flushes asked for, and done (the thread exports, then catches up).
    asked: u64,
    done: u64,
    closed: bool,
}

/// The span processor: a bounded queue and one exporting thread.
pub(crate) struct Queue {
    shared: Arc<Shared>,
    size: usize,
    counts: Arc<SpanCounts>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl fmt::Debug for Queue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Queue").finish_non_exhaustive()
    }
}

impl Queue {
    /// Starts the exporting thread for `exporter`, whose export futures run on `runtime`.
    pub(crate) fn start<E: SpanExporter + 'static>(
        exporter: E,
        size: usize,
        runtime: tokio::runtime::Handle,
        counts: Arc<SpanCounts>,
    ) -> std::io::Result<Queue> {
        let shared = Arc::new(Shared::default());
        let (theirs, drained) = (shared.clone(), counts.clone());
        let thread = std::thread::Builder::new()
            .name("hale-otel-export".into())
            .spawn(move || drain(exporter, &theirs, &runtime, &drained))?;
        Ok(Queue {
            shared,
            size: size.max(1),
            counts,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Waits until what is queued now has been exported (or `within` passed).
    fn flush_within(&self, within: Duration) -> OTelSdkResult {
        let deadline = Instant::now() + within;
        let mut w = self
            .shared
            .waiting
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        w.asked += 1;
        let ticket = w.asked;
        self.shared.wake.notify_one();
        while w.done < ticket && !w.closed {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(OTelSdkError::Timeout(within));
            }
            w = self
                .shared
                .flushed
                .wait_timeout(w, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        Ok(())
    }
}

impl SpanProcessor for Queue {
    fn on_start(&self, _span: &mut Span, _cx: &Context) {}

    fn on_end(&self, span: SpanData) {
        if !span.span_context.is_sampled() {
            return;
        }
        let mut w = self
            .shared
            .waiting
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if w.closed || w.spans.len() >= self.size {
            drop(w);
            self.counts.dropped.fetch_add(1, Ordering::Relaxed);
            metrics::counter!(SPANS_METRIC, "outcome" => "dropped").increment(1);
            return;
        }
        w.spans.push(span);
        if w.spans.len() == BATCH {
            self.shared.wake.notify_one();
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.flush_within(Duration::from_secs(5))
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        let flushed = self.flush_within(timeout);
        {
            let mut w = self
                .shared
                .waiting
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            w.closed = true;
            self.shared.wake.notify_one();
        }
        if let Some(thread) = self
            .thread
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
            && flushed.is_ok()
        {
            let _ = thread.join();
        }
        flushed
    }
}

/// The exporting thread: what is waiting, in batches of up to [`BATCH`], every
/// [`DELAY`] or sooner when a batch is full or a flush is asked.
fn drain<E: SpanExporter>(
    exporter: E,
    shared: &Shared,
    runtime: &tokio::runtime::Handle,
    counts: &SpanCounts,
) {
    let export = |batch: Vec<SpanData>| {
        let n = batch.len() as u64;
        let outcome = match runtime.block_on(exporter.export(batch)) {
            Ok(()) => {
                counts.exported.fetch_add(n, Ordering::Relaxed);
                "exported"
            }
            Err(e) => {
                counts.failed.fetch_add(n, Ordering::Relaxed);
                tracing::debug!(error = %e, spans = n, "the collector did not take a batch of spans");
                "failed"
            }
        };
        metrics::counter!(SPANS_METRIC, "outcome" => outcome).increment(n);
    };
    loop {
        let (spans, ticket, closed) = {
            let mut w = shared
                .waiting
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if w.spans.len() < BATCH && w.asked == w.done && !w.closed {
                w = shared
                    .wake
                    .wait_timeout(w, DELAY)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0;
            }
            (std::mem::take(&mut w.spans), w.asked, w.closed)
        };
        let mut spans = spans;
        while !spans.is_empty() {
            let rest = spans.split_off(spans.len().min(BATCH));
            export(spans);
            spans = rest;
        }
        let mut w = shared
            .waiting
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        w.done = w.done.max(ticket);
        shared.flushed.notify_all();
        if closed {
            return;
        }
    }
}
