//! OpenTelemetry for hale: every MCP call a SERVER span, every backend request a CLIENT
//! span under it, health checks and breaker decisions in the same traces, and the MCP
//! semantic conventions' duration histograms — exported over OTLP http/protobuf to the
//! operator's collector. Off (no endpoint configured), it costs one branch per request.
//!
//! ```no_run
//! # async fn demo() -> Result<(), String> {
//! use hale_telemetry::{Overrides, Settings};
//!
//! // OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318, or a product's own settings:
//! let overrides = Overrides { endpoint: Some("127.0.0.1:4318".into()), insecure: Some(true), ..Overrides::default() };
//! if let Some(settings) = Settings::from_env("hale-vmcp", &overrides)? {
//!     let telemetry = hale_telemetry::start(settings, tokio::runtime::Handle::current())?;
//!     // … serve; then, within the drain:
//!     telemetry.shutdown(std::time::Duration::from_secs(5));
//! }
//! # Ok(()) }
//! ```
//!
//! Context travels in `params._meta` and HTTP headers ([`carrier`]); span and attribute
//! names are the semantic conventions' ([`names`]).

pub mod carrier;
mod config;
mod export;
pub mod names;
mod sampler;
mod spans;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry::metrics::{Histogram, MeterProvider};
use opentelemetry::trace::TracerProvider;
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider, SpanExporter};

pub use config::{HEALTH_CHECK_SAMPLING_RATE, Overrides, Settings, endpoint_url};
pub use export::{SPANS_METRIC, SpanCounts};
pub use opentelemetry::Context;
pub use opentelemetry::trace::FutureExt;
pub use spans::{ClientCall, HealthCheck, Incoming, Outcome, Outgoing, ServerCall};

/// The semantic conventions' bucket boundaries for MCP durations (seconds).
pub const DURATION_BUCKETS: [f64; 14] = [
    0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
];

/// Running telemetry: the tracer, the instruments, and what shuts them down.
#[derive(Debug)]
pub struct Telemetry {
    tracer: Option<SdkTracer>,
    tracer_provider: Option<SdkTracerProvider>,
    meter_provider: Option<SdkMeterProvider>,
    logger: Option<opentelemetry_sdk::logs::SdkLogger>,
    logger_provider: Option<opentelemetry_sdk::logs::SdkLoggerProvider>,
    instruments: Option<Instruments>,
    decide: sampler::Decide,
    counts: Arc<SpanCounts>,
    settings: Settings,
}

#[derive(Debug)]
struct Instruments {
    server_operation: Histogram<f64>,
    client_operation: Histogram<f64>,
    server_session: Histogram<f64>,
}

static GLOBAL: OnceLock<Telemetry> = OnceLock::new();

/// The running telemetry, if [`start`] was called (and telemetry is on).
#[inline]
pub fn get() -> Option<&'static Telemetry> {
    GLOBAL.get()
}

/// Starts exporting as `settings` say (once per process: a second call returns the
/// first's). Export work runs on `runtime`.
pub fn start(
    settings: Settings,
    runtime: tokio::runtime::Handle,
) -> Result<&'static Telemetry, String> {
    if let Some(t) = GLOBAL.get() {
        return Ok(t);
    }
    let mut attributes = vec![
        KeyValue::new("service.name", settings.service_name.clone()),
        KeyValue::new("service.version", settings.service_version.clone()),
    ];
    attributes.extend(
        settings
            .resource
            .iter()
            .map(|(k, v)| KeyValue::new(k.clone(), v.clone())),
    );
    let resource = Resource::builder_empty()
        .with_attributes(attributes)
        .build();
    let log_resource = resource.clone();
    // One map for the three exporters.
    let headers: std::collections::HashMap<String, String> =
        settings.headers.iter().cloned().collect();
    let counts = Arc::new(SpanCounts::default());
    let (tracer, tracer_provider) = match &settings.traces_url {
        None => (None, None),
        Some(url) => {
            let mut exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_endpoint(url.clone())
                .with_timeout(settings.export_timeout)
                .with_headers(headers.clone())
                .with_http_client(export::Hyper::new(runtime.clone(), settings.export_timeout))
                .build()
                .map_err(|e| format!("the OTLP trace exporter: {e}"))?;
            exporter.set_resource(&resource);
            let queue = export::Queue::start(
                exporter,
                settings.queue_size,
                runtime.clone(),
                counts.clone(),
            )
            .map_err(|e| format!("starting the span export thread: {e}"))?;
            let provider = SdkTracerProvider::builder()
                .with_resource(resource.clone())
                .with_sampler(sampler::Keep)
                .with_span_processor(queue)
                .build();
            (Some(provider.tracer("hale")), Some(provider))
        }
    };
    let (instruments, meter_provider) = match &settings.metrics_url {
        None => (None, None),
        Some(url) => {
            let exporter = opentelemetry_otlp::MetricExporter::builder()
                .with_http()
                .with_endpoint(url.clone())
                .with_timeout(settings.export_timeout)
                .with_headers(headers.clone())
                .with_http_client(export::Hyper::new(runtime.clone(), settings.export_timeout))
                .build()
                .map_err(|e| format!("the OTLP metric exporter: {e}"))?;
            let reader = PeriodicReader::builder(exporter)
                .with_interval(settings.metrics_interval)
                .build();
            let provider = SdkMeterProvider::builder()
                .with_resource(resource)
                .with_reader(reader)
                .build();
            let meter = provider.meter("hale");
            let histogram = |name: &'static str, description: &'static str| {
                meter
                    .f64_histogram(name)
                    .with_unit("s")
                    .with_description(description)
                    .with_boundaries(DURATION_BUCKETS.to_vec())
                    .build()
            };
            let instruments = Instruments {
                server_operation: histogram(
                    names::SERVER_OPERATION_DURATION,
                    "MCP request duration as observed on the receiver from the time it was received until the result or ack is sent",
                ),
                client_operation: histogram(
                    names::CLIENT_OPERATION_DURATION,
                    "MCP request duration as observed on the sender from the time it was sent until the response or ack is received",
                ),
                server_session: histogram(
                    names::SERVER_SESSION_DURATION,
                    "The duration of the MCP session as observed on the MCP server",
                ),
            };
            (Some(instruments), Some(provider))
        }
    };
    let (logger, logger_provider) = match &settings.logs_url {
        None => (None, None),
        Some(url) => {
            let exporter = opentelemetry_otlp::LogExporter::builder()
                .with_http()
                .with_endpoint(url.clone())
                .with_timeout(settings.export_timeout)
                .with_headers(headers.clone())
                .with_http_client(export::Hyper::new(runtime.clone(), settings.export_timeout))
                .build()
                .map_err(|e| format!("the OTLP log exporter: {e}"))?;
            let provider = opentelemetry_sdk::logs::SdkLoggerProvider::builder()
                .with_resource(log_resource.clone())
                .with_batch_exporter(exporter)
                .build();
            (
                Some(opentelemetry::logs::LoggerProvider::logger(
                    &provider, "hale",
                )),
                Some(provider),
            )
        }
    };
    let telemetry = Telemetry {
        tracer,
        tracer_provider,
        meter_provider,
        logger,
        logger_provider,
        instruments,
        decide: sampler::Decide::new(&settings),
        counts,
        settings,
    };
    tracing::info!(
        logs = telemetry.settings.logs_url.as_deref().unwrap_or("off"),
        traces = telemetry.settings.traces_url.as_deref().unwrap_or("off"),
        metrics = telemetry.settings.metrics_url.as_deref().unwrap_or("off"),
        service = %telemetry.settings.service_name,
        sampling_rate = telemetry.settings.sampling_rate,
        health_check_sampling_rate = telemetry.settings.health_check_sampling_rate,
        "exporting OpenTelemetry over OTLP http/protobuf"
    );
    Ok(GLOBAL.get_or_init(|| telemetry))
}

impl Telemetry {
    /// True if the duration metrics are exported (every request is measured, traced or
    /// not).
    pub fn records_metrics(&self) -> bool {
        self.instruments.is_some()
    }

    /// What became of ended spans so far.
    pub fn counts(&self) -> &SpanCounts {
        &self.counts
    }

    /// A decision of hale's (a health or circuit transition, a withdrawal, panic mode, a
    /// reload, an operator's override) as an OTel log record, in the current span's trace
    /// when there is one; `warn`: at WARN, else INFO.
    pub fn decision(&self, warn: bool, body: &str, attrs: Vec<KeyValue>) {
        use opentelemetry::logs::{AnyValue, LogRecord, Logger, Severity};
        let Some(logger) = &self.logger else {
            return;
        };
        let mut record = logger.create_log_record();
        record.set_event_name("hale.decision");
        record.set_severity_number(if warn { Severity::Warn } else { Severity::Info });
        record.set_severity_text(if warn { "WARN" } else { "INFO" });
        record.set_body(AnyValue::from(body.to_string()));
        for kv in attrs {
            record.add_attribute(kv.key, AnyValue::from(kv.value.to_string()));
        }
        logger.emit(record);
    }

    /// A session ended after `seconds` (`mcp.server.session.duration`).
    pub fn session_ended(&self, seconds: f64, protocol_version: &str) {
        if let Some(i) = &self.instruments {
            i.server_session.record(
                seconds,
                &[KeyValue::new(
                    names::MCP_PROTOCOL_VERSION,
                    protocol_version.to_string(),
                )],
            );
        }
    }

    /// Exports what is left, within `within` (part of the product's drain); the
    /// collector being down costs at most that. Traces and metrics are flushed side by
    /// side; one still under way at the deadline is left behind (the SDK's metric
    /// reader does not keep to a shorter timeout than its own).
    pub fn shutdown(&self, within: Duration) {
        type Shutdown = Box<dyn FnOnce() -> opentelemetry_sdk::error::OTelSdkResult + Send>;
        let mut signals: Vec<(&'static str, Shutdown)> = Vec::new();
        if let Some(p) = self.tracer_provider.clone() {
            signals.push(("spans", Box::new(move || p.shutdown_with_timeout(within))));
        }
        if let Some(p) = self.logger_provider.clone() {
            signals.push((
                "log records",
                Box::new(move || p.shutdown_with_timeout(within)),
            ));
        }
        if let Some(p) = self.meter_provider.clone() {
            signals.push(("metrics", Box::new(move || p.shutdown_with_timeout(within))));
        }
        let (done, finished) = std::sync::mpsc::channel::<()>();
        let waiting = signals.len();
        for (what, shutdown) in signals {
            let done = done.clone();
            let _ = std::thread::Builder::new()
                .name("hale-otel-shutdown".into())
                .spawn(move || {
                    if let Err(e) = shutdown() {
                        tracing::warn!(error = %e, "{what} still waiting at shutdown were not exported");
                    }
                    let _ = done.send(());
                });
        }
        let deadline = std::time::Instant::now() + within;
        for _ in 0..waiting {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if finished.recv_timeout(left).is_err() {
                tracing::warn!(
                    ?within,
                    "telemetry export did not finish within its share of the drain: left behind"
                );
                return;
            }
        }
    }
}
