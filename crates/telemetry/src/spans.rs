//! The spans hale makes: a SERVER span per client request ([`ServerCall`]), a CLIENT
//! span per backend request ([`ClientCall`]) as its child, and a traced health check
//! ([`HealthCheck`]: a `health_check` root with a `ping` CLIENT span under it). Names and
//! attributes follow the MCP semantic conventions; arguments and results are never
//! recorded.

use std::net::IpAddr;
use std::time::Instant;

use opentelemetry::trace::{SpanKind, Status, TraceContextExt, Tracer};
use opentelemetry::{Context, KeyValue};
use serde_json::Value;

use crate::names::*;
use crate::{Telemetry, carrier};

/// A request as received from a client.
#[derive(Debug)]
pub struct Incoming<'a> {
    pub method: &'a str,
    pub params: &'a Value,
    /// The HTTP request's headers (a `traceparent` there is used when `_meta` has none).
    pub headers: Option<&'a http::HeaderMap>,
    pub request_id: &'a Value,
    /// The handshake era's session id (none for 2026-07-28).
    pub session_id: Option<&'a str>,
    pub protocol_version: Option<&'a str>,
    pub client_address: Option<IpAddr>,
}

/// A request as sent to a backend.
#[derive(Debug)]
pub struct Outgoing<'a> {
    pub method: &'a str,
    /// Its parameters (for the tool, prompt or resource it names: the backend's own).
    pub params: &'a Value,
    pub backend: &'a str,
    pub address: Option<&'a str>,
    pub port: Option<u16>,
    /// `tcp`, or `pipe` for a stdio server.
    pub transport: &'static str,
    /// The backend's circuit state at admission.
    pub circuit: &'static str,
}

/// How a request ended.
#[derive(Clone, Copy, Debug)]
pub enum Outcome<'a> {
    /// A result; `tool_error`: a `tools/call` result with `isError: true`.
    Ok { tool_error: bool },
    /// A JSON-RPC error.
    Error { code: i64, message: &'a str },
    /// No answer: a transport failure, a timeout (`kind` is its low-cardinality name).
    Failed {
        kind: &'static str,
        message: &'a str,
    },
}

impl<'a> Outcome<'a> {
    /// The outcome of a health check's probe.
    pub fn of_check(check: &'a hale_core::CheckOutcome) -> Self {
        match check {
            hale_core::CheckOutcome::Failure(f) => Outcome::Failed {
                kind: f.category.as_str(),
                message: &f.message,
            },
            _ => Outcome::Ok { tool_error: false },
        }
    }
}

/// Codes that say the caller was at fault (or went away): never an error of the
/// server's (the conventions' server-side rule; hale's own unknown-name, refused and
/// cancelled likewise).
fn callers_fault(code: i64) -> bool {
    matches!(
        code,
        -32700 | -32600 | -32601 | -32602 | -32002 | -31002 | -31008 | -31010
    )
}

/// `tools/call get_weather`: the method and the tool or prompt it names.
fn span_name(method: &str, params: &Value) -> String {
    match target(method, params) {
        Some(t) => format!("{method} {t}"),
        None => method.to_string(),
    }
}

fn target<'a>(method: &str, params: &'a Value) -> Option<&'a str> {
    match method {
        "tools/call" | "prompts/get" => params.get("name").and_then(Value::as_str),
        _ => None,
    }
}

/// The attributes naming what a request is about.
fn about(method: &str, params: &Value, attrs: &mut Vec<KeyValue>) {
    attrs.push(KeyValue::new(MCP_METHOD_NAME, method.to_string()));
    match method {
        "tools/call" => {
            if let Some(name) = target(method, params) {
                attrs.push(KeyValue::new(GEN_AI_TOOL_NAME, name.to_string()));
            }
            attrs.push(KeyValue::new(GEN_AI_OPERATION_NAME, "execute_tool"));
        }
        "prompts/get" => {
            if let Some(name) = target(method, params) {
                attrs.push(KeyValue::new(GEN_AI_PROMPT_NAME, name.to_string()));
            }
        }
        "resources/read" | "resources/subscribe" | "resources/unsubscribe" => {
            if let Some(uri) = params.get("uri").and_then(Value::as_str) {
                attrs.push(KeyValue::new(MCP_RESOURCE_URI, uri.to_string()));
            }
        }
        _ => {}
    }
}

/// The metric attributes of a span's attributes (no ids, no URIs: bounded cardinality).
fn for_metrics(attrs: &[KeyValue]) -> Vec<KeyValue> {
    attrs
        .iter()
        .filter(|kv| {
            matches!(
                kv.key.as_str(),
                MCP_METHOD_NAME
                    | GEN_AI_TOOL_NAME
                    | GEN_AI_PROMPT_NAME
                    | GEN_AI_OPERATION_NAME
                    | MCP_PROTOCOL_VERSION
                    | NETWORK_TRANSPORT
                    | SERVER_ADDRESS
                    | SERVER_PORT
                    | MCP_BACKEND_NAME
            )
        })
        .cloned()
        .collect()
}

/// The `error.type` of `outcome` (`server`: only a server's fault is one), and the
/// message to set as the span's status.
fn error_of<'a>(outcome: Outcome<'a>, server: bool) -> Option<(String, &'a str)> {
    match outcome {
        Outcome::Ok { tool_error: false } => None,
        Outcome::Ok { tool_error: true } => Some(("tool_error".into(), "tool_error")),
        Outcome::Error { code, .. } if server && callers_fault(code) => None,
        Outcome::Error { code, message } => Some((code.to_string(), message)),
        Outcome::Failed { kind, message } => Some((kind.to_string(), message)),
    }
}

/// Ends `cx`'s span with `outcome`; returns its `error.type`, if any.
fn conclude(cx: Option<&Context>, outcome: Outcome<'_>, server: bool) -> Option<String> {
    let error = error_of(outcome, server);
    if let Some(cx) = cx {
        let span = cx.span();
        if let Outcome::Error { code, .. } = outcome {
            span.set_attribute(KeyValue::new(RPC_RESPONSE_STATUS_CODE, code.to_string()));
        }
        if let Some((t, message)) = &error {
            span.set_attribute(KeyValue::new(ERROR_TYPE, t.clone()));
            span.set_status(Status::error(message.to_string()));
        }
        span.end();
    }
    error.map(|(t, _)| t)
}

/// A client's request being answered: its SERVER span (when this trace is recorded) and
/// what its duration metric is recorded with (when metrics are exported).
#[derive(Debug)]
pub struct ServerCall {
    cx: Option<Context>,
    started: Instant,
    metric: Option<Vec<KeyValue>>,
}

impl Telemetry {
    /// Starts a client request's SERVER span, continuing the caller's trace (from
    /// `_meta`, else the `traceparent` header) when the sampling decision says so. `None`
    /// when there is nothing to record: no span (traces off, or not this trace) and no
    /// metric. An unrecorded request costs the extraction and one coin.
    pub fn server_call(&self, req: &Incoming<'_>) -> Option<ServerCall> {
        let traced = self.tracer.as_ref().and_then(|tracer| {
            let parent = carrier::extract(req.params, req.headers);
            if !self.decide.request(parent.span().span_context()) {
                return None;
            }
            Some((tracer, parent))
        });
        if traced.is_none() && self.instruments.is_none() {
            return None;
        }
        let mut attrs = Vec::with_capacity(10);
        about(req.method, req.params, &mut attrs);
        if let Some(v) = req.protocol_version {
            attrs.push(KeyValue::new(MCP_PROTOCOL_VERSION, v.to_string()));
        }
        attrs.push(KeyValue::new(NETWORK_TRANSPORT, "tcp"));
        let metric = self.instruments.is_some().then(|| for_metrics(&attrs));
        let cx = traced.map(|(tracer, parent)| {
            match req.request_id {
                Value::String(s) => attrs.push(KeyValue::new(JSONRPC_REQUEST_ID, s.clone())),
                Value::Number(n) => attrs.push(KeyValue::new(JSONRPC_REQUEST_ID, n.to_string())),
                _ => {}
            }
            if let Some(id) = req.session_id {
                attrs.push(KeyValue::new(MCP_SESSION_ID, id.to_string()));
            }
            attrs.push(KeyValue::new(NETWORK_PROTOCOL_NAME, "http"));
            if let Some(ip) = req.client_address {
                attrs.push(KeyValue::new(CLIENT_ADDRESS, ip.to_string()));
            }
            let span = tracer
                .span_builder(span_name(req.method, req.params))
                .with_kind(SpanKind::Server)
                .with_attributes(attrs)
                .start_with_context(tracer, &parent);
            parent.with_span(span)
        });
        Some(ServerCall {
            cx,
            started: Instant::now(),
            metric,
        })
    }

    /// Starts the CLIENT span of a request to a backend under `parent` (a recorded
    /// SERVER span's context, or a traced health check's). `None` when there is nothing
    /// to record: `parent` is not a recorded span, and metrics are off.
    pub fn client_call(&self, req: &Outgoing<'_>, parent: &Context) -> Option<ClientCall> {
        let tracer = self
            .tracer
            .as_ref()
            .filter(|_| parent.span().span_context().is_sampled());
        if tracer.is_none() && self.instruments.is_none() {
            return None;
        }
        let mut attrs = Vec::with_capacity(10);
        about(req.method, req.params, &mut attrs);
        attrs.push(KeyValue::new(MCP_BACKEND_NAME, req.backend.to_string()));
        attrs.push(KeyValue::new(NETWORK_TRANSPORT, req.transport));
        if let Some(a) = req.address {
            attrs.push(KeyValue::new(SERVER_ADDRESS, a.to_string()));
        }
        if let Some(p) = req.port {
            attrs.push(KeyValue::new(SERVER_PORT, i64::from(p)));
        }
        let metric = self.instruments.is_some().then(|| for_metrics(&attrs));
        let cx = tracer.map(|tracer| {
            attrs.push(KeyValue::new(TARGET_WORKLOAD_NAME, req.backend.to_string()));
            attrs.push(KeyValue::new(CIRCUIT_STATE, req.circuit));
            let span = tracer
                .span_builder(span_name(req.method, req.params))
                .with_kind(SpanKind::Client)
                .with_attributes(attrs)
                .start_with_context(tracer, parent);
            parent.with_span(span)
        });
        Some(ClientCall {
            cx,
            started: Instant::now(),
            metric,
        })
    }

    /// Starts a traced health check of `backend`, if this one is sampled
    /// (`healthCheckSamplingRate`).
    pub fn health_check(&self, backend: &str) -> Option<HealthCheck> {
        let tracer = self.tracer.as_ref()?;
        if !self.decide.health() {
            return None;
        }
        let span = tracer
            .span_builder(HEALTH_CHECK)
            .with_kind(SpanKind::Internal)
            .with_attributes([
                KeyValue::new(MCP_BACKEND_NAME, backend.to_string()),
                KeyValue::new(TARGET_WORKLOAD_NAME, backend.to_string()),
            ])
            .start_with_context(tracer, &Context::new());
        Some(HealthCheck {
            cx: Context::new().with_span(span),
        })
    }
}

impl ServerCall {
    /// The context to run the request's work in (its backend requests' parent), when
    /// its trace is recorded.
    pub fn context(&self) -> Option<&Context> {
        self.cx.as_ref()
    }

    /// Ends the span with `outcome` and records `mcp.server.operation.duration`.
    pub fn finish(self, outcome: Outcome<'_>, telemetry: &Telemetry) {
        let error = conclude(self.cx.as_ref(), outcome, true);
        if let (Some(i), Some(mut metric)) = (&telemetry.instruments, self.metric) {
            if let Some(t) = error {
                metric.push(KeyValue::new(ERROR_TYPE, t));
            }
            i.server_operation
                .record(self.started.elapsed().as_secs_f64(), &metric);
        }
    }
}

/// A request to a backend: its CLIENT span (when recorded) and metric attributes.
#[derive(Debug)]
pub struct ClientCall {
    cx: Option<Context>,
    started: Instant,
    metric: Option<Vec<KeyValue>>,
}

impl ClientCall {
    /// Writes this span's context into the backend request's `params._meta`
    /// (`traceparent` replaced; the caller's `tracestate` and `baggage` carried on). An
    /// unrecorded request's `_meta` is left as the caller sent it.
    pub fn inject(&self, params: &mut Value) {
        if let Some(cx) = &self.cx {
            carrier::inject_meta(cx, params);
        }
    }

    /// The span's context, when recorded.
    pub fn context(&self) -> Option<&Context> {
        self.cx.as_ref()
    }

    /// Sets an attribute (`hale.retried`, …), if recorded.
    pub fn set(&self, kv: KeyValue) {
        if let Some(cx) = &self.cx {
            cx.span().set_attribute(kv);
        }
    }

    /// Adds an event (a circuit opened, a backend withdrawn), if recorded.
    pub fn event(&self, name: &'static str, attrs: Vec<KeyValue>) {
        if let Some(cx) = &self.cx {
            cx.span().add_event(name, attrs);
        }
    }

    /// Ends the span with `outcome` (every error is one on the client side) and records
    /// `mcp.client.operation.duration`.
    pub fn finish(self, outcome: Outcome<'_>, telemetry: &Telemetry) {
        let error = conclude(self.cx.as_ref(), outcome, false);
        if let (Some(i), Some(mut metric)) = (&telemetry.instruments, self.metric) {
            if let Some(t) = error {
                metric.push(KeyValue::new(ERROR_TYPE, t));
            }
            i.client_operation
                .record(self.started.elapsed().as_secs_f64(), &metric);
        }
    }
}

/// A traced health check: the `health_check` root span.
#[derive(Debug)]
pub struct HealthCheck {
    cx: Context,
}

impl HealthCheck {
    /// The root's context (its `ping` CLIENT span's parent).
    pub fn context(&self) -> &Context {
        &self.cx
    }

    /// Adds an event: a transition the check caused.
    pub fn event(&self, name: &'static str, attrs: Vec<KeyValue>) {
        self.cx.span().add_event(name, attrs);
    }

    /// Ends the check: healthy or not, and why.
    pub fn finish(self, state: &str, reason: &str) {
        let span = self.cx.span();
        span.set_attribute(KeyValue::new("hale.health.state", state.to_string()));
        span.set_attribute(KeyValue::new("hale.health.reason", reason.to_string()));
        span.end();
    }
}
