//! An OTLP/HTTP receiver for tests: it takes what an exporter sends to `/v1/traces` and
//! `/v1/metrics` (protobuf), answers 200, and decodes it on request into plain records
//! a test can assert on — span names, kinds, ids, attributes, events and status.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use prost::Message;

/// One span as received.
#[derive(Clone, Debug)]
pub struct SpanRecord {
    pub trace_id: String,
    pub span_id: String,
    /// Empty for a root.
    pub parent_span_id: String,
    pub name: String,
    /// `server`, `client`, `internal`, …
    pub kind: &'static str,
    pub attributes: BTreeMap<String, String>,
    /// (name, attributes) in order.
    pub events: Vec<(String, BTreeMap<String, String>)>,
    /// Its status is ERROR.
    pub error: bool,
    /// The resource's `service.name`.
    pub service: String,
}

impl SpanRecord {
    /// An attribute's value as text.
    pub fn attr(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).map(String::as_str)
    }

    /// True if it has an event named `name`.
    pub fn has_event(&self, name: &str) -> bool {
        self.events.iter().any(|(n, _)| n == name)
    }
}

/// One log record as received.
#[derive(Clone, Debug)]
pub struct LogRecord {
    pub body: String,
    pub severity: String,
    /// Empty outside a trace.
    pub trace_id: String,
    pub attributes: BTreeMap<String, String>,
}

type Got = Arc<Mutex<Vec<(String, Bytes)>>>;

/// A receiver on a loopback port, serving until dropped with its runtime.
#[derive(Clone, Debug)]
pub struct OtlpReceiver {
    url: String,
    got: Got,
}

impl OtlpReceiver {
    /// Starts one on a free loopback port.
    pub async fn start() -> std::io::Result<OtlpReceiver> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let got: Got = Arc::default();
        let keep = got.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let keep = keep.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(
                        move |req: hyper::Request<hyper::body::Incoming>| {
                            let keep = keep.clone();
                            async move {
                                let path = req.uri().path().to_string();
                                let body = req
                                    .into_body()
                                    .collect()
                                    .await
                                    .map(|b| b.to_bytes())
                                    .unwrap_or_default();
                                keep.lock()
                                    .unwrap_or_else(PoisonError::into_inner)
                                    .push((path, body));
                                Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(
                                    Bytes::new(),
                                )))
                            }
                        },
                    );
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(OtlpReceiver { url, got })
    }

    /// Its base URL (`http://127.0.0.1:PORT`), an `OTEL_EXPORTER_OTLP_ENDPOINT`.
    pub fn url(&self) -> &str {
        &self.url
    }

    fn bodies(&self, path: &str) -> Vec<Bytes> {
        self.got
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter(|(p, _)| p == path)
            .map(|(_, b)| b.clone())
            .collect()
    }

    /// Every span received so far.
    pub fn spans(&self) -> Vec<SpanRecord> {
        let mut out = Vec::new();
        for body in self.bodies("/v1/traces") {
            let Ok(request) = ExportTraceServiceRequest::decode(body) else {
                continue;
            };
            for resource in request.resource_spans {
                let service = resource
                    .resource
                    .as_ref()
                    .and_then(|r| attributes(&r.attributes).remove("service.name"))
                    .unwrap_or_default();
                for span in resource.scope_spans.into_iter().flat_map(|s| s.spans) {
                    out.push(SpanRecord {
                        trace_id: hex(&span.trace_id),
                        span_id: hex(&span.span_id),
                        parent_span_id: hex(&span.parent_span_id),
                        kind: match span.kind {
                            1 => "internal",
                            2 => "server",
                            3 => "client",
                            4 => "producer",
                            5 => "consumer",
                            _ => "unspecified",
                        },
                        attributes: attributes(&span.attributes),
                        events: span
                            .events
                            .iter()
                            .map(|e| (e.name.clone(), attributes(&e.attributes)))
                            .collect(),
                        error: span.status.as_ref().is_some_and(|s| s.code == 2),
                        service: service.clone(),
                        name: span.name,
                    });
                }
            }
        }
        out
    }

    /// Every log record received so far: (body, severity text, trace id, attributes).
    pub fn logs(&self) -> Vec<LogRecord> {
        self.bodies("/v1/logs")
            .into_iter()
            .filter_map(|b| ExportLogsServiceRequest::decode(b).ok())
            .flat_map(|r| r.resource_logs)
            .flat_map(|r| r.scope_logs)
            .flat_map(|s| s.log_records)
            .map(|r| LogRecord {
                body: match r.body.and_then(|b| b.value) {
                    Some(Any::StringValue(s)) => s,
                    _ => String::new(),
                },
                severity: r.severity_text,
                trace_id: hex(&r.trace_id),
                attributes: attributes(&r.attributes),
            })
            .collect()
    }

    /// The names of every metric received so far.
    pub fn metric_names(&self) -> Vec<String> {
        self.bodies("/v1/metrics")
            .into_iter()
            .filter_map(|b| ExportMetricsServiceRequest::decode(b).ok())
            .flat_map(|r| r.resource_metrics)
            .flat_map(|r| r.scope_metrics)
            .flat_map(|s| s.metrics)
            .map(|m| m.name)
            .collect()
    }
}

fn attributes(kvs: &[KeyValue]) -> BTreeMap<String, String> {
    kvs.iter()
        .filter_map(|kv| {
            let v = match kv.value.as_ref()?.value.as_ref()? {
                Any::StringValue(s) => s.clone(),
                Any::BoolValue(b) => b.to_string(),
                Any::IntValue(i) => i.to_string(),
                Any::DoubleValue(d) => d.to_string(),
                _ => return None,
            };
            Some((kv.key.clone(), v))
        })
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
