//! The spans hale makes: a SERVER span per client request ([`ServerCall`]), a CLIENT
//! span per backend request ([`ClientCall`]) as its child, and a traced health check
//! ([`HealthCheck`]: a `health_check` root with a `ping` CLIENT span under it). Names and
//! attributes follow the MCP semantic conventions; arguments and results are never
//! recorded.

use std::net::IpAddr;
use std::time::Instant;

use opentelemetry::trace::{Span as _, SpanKind, Status, TraceContextExt, Tracer};
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

/// Sets the outcome on `cx`'s span (`server`: only a server's fault is an error) and
/// returns the `error.type` it got, if any.
fn conclude(cx: &Context, outcome: Outcome<'_>, server: bool) -> Option<String> {
    let span = cx.span();
    let (error_type, message) = match outcome {
        Outcome::Ok { tool_error: false } => (None, None),
        Outcome::Ok { tool_error: true } => (Some("tool_error".to_string()), None),
        Outcome::Error { code, message } => {
            span.set_attribute(KeyValue::new(RPC_RESPONSE_STATUS_CODE, code.to_string()));
            if server && callers_fault(code) {
                (None, None)
            } else {
                (Some(code.to_string()), Some(message))
            }
        }
        Outcome::Failed { kind, message } => (Some(kind.to_string()), Some(message)),
    };
    if let Some(t) = &error_type {
        span.set_attribute(KeyValue::new(ERROR_TYPE, t.clone()));
        span.set_status(Status::error(message.unwrap_or(t).to_string()));
    }
    error_type
}

/// A client's request being answered: its SERVER span.
#[derive(Debug)]
pub struct ServerCall {
    cx: Context,
    started: Instant,
    metric: Vec<KeyValue>,
}

impl Telemetry {
    /// Starts the SERVER span of a client request, continuing the caller's trace (from
    /// `_meta`, else the `traceparent` header). `None` when traces are off.
    pub fn server_call(&self, req: &Incoming<'_>) -> Option<ServerCall> {
        let tracer = self.tracer.as_ref()?;
        let parent = carrier::extract(req.params, req.headers);
        let mut attrs = Vec::with_capacity(10);
        about(req.method, req.params, &mut attrs);
        match req.request_id {
            Value::String(s) => attrs.push(KeyValue::new(JSONRPC_REQUEST_ID, s.clone())),
            Value::Number(n) => attrs.push(KeyValue::new(JSONRPC_REQUEST_ID, n.to_string())),
            _ => {}
        }
        if let Some(id) = req.session_id {
            attrs.push(KeyValue::new(MCP_SESSION_ID, id.to_string()));
        }
        if let Some(v) = req.protocol_version {
            attrs.push(KeyValue::new(MCP_PROTOCOL_VERSION, v.to_string()));
        }
        attrs.push(KeyValue::new(NETWORK_TRANSPORT, "tcp"));
        attrs.push(KeyValue::new(NETWORK_PROTOCOL_NAME, "http"));
        if let Some(ip) = req.client_address {
            attrs.push(KeyValue::new(CLIENT_ADDRESS, ip.to_string()));
        }
        let metric = for_metrics(&attrs);
        let span = tracer
            .span_builder(span_name(req.method, req.params))
            .with_kind(SpanKind::Server)
            .with_attributes(attrs)
            .start_with_context(tracer, &parent);
        Some(ServerCall {
            cx: parent.with_span(span),
            started: Instant::now(),
            metric,
        })
    }

    /// Starts the CLIENT span of a request to a backend, under `parent` (the SERVER
    /// span's context, or a health check's). `None` when traces are off.
    pub fn client_call(&self, req: &Outgoing<'_>, parent: &Context) -> Option<ClientCall> {
        let tracer = self.tracer.as_ref()?;
        let mut attrs = Vec::with_capacity(10);
        about(req.method, req.params, &mut attrs);
        attrs.push(KeyValue::new(MCP_BACKEND_NAME, req.backend.to_string()));
        attrs.push(KeyValue::new(TARGET_WORKLOAD_NAME, req.backend.to_string()));
        if let Some(a) = req.address {
            attrs.push(KeyValue::new(SERVER_ADDRESS, a.to_string()));
        }
        if let Some(p) = req.port {
            attrs.push(KeyValue::new(SERVER_PORT, i64::from(p)));
        }
        attrs.push(KeyValue::new(NETWORK_TRANSPORT, req.transport));
        attrs.push(KeyValue::new(CIRCUIT_STATE, req.circuit));
        let metric = for_metrics(&attrs);
        let span = tracer
            .span_builder(span_name(req.method, req.params))
            .with_kind(SpanKind::Client)
            .with_attributes(attrs)
            .start_with_context(tracer, parent);
        Some(ClientCall {
            cx: parent.with_span(span),
            started: Instant::now(),
            metric,
        })
    }

    /// Starts a traced health check of `backend`, if this one is sampled
    /// (`healthCheckSamplingRate`).
    pub fn health_check(&self, backend: &str) -> Option<HealthCheck> {
        let tracer = self.tracer.as_ref()?;
        let span = tracer
            .span_builder(HEALTH_CHECK)
            .with_kind(SpanKind::Internal)
            .with_attributes([
                KeyValue::new(MCP_BACKEND_NAME, backend.to_string()),
                KeyValue::new(TARGET_WORKLOAD_NAME, backend.to_string()),
            ])
            .start_with_context(tracer, &Context::new());
        if !span.span_context().is_sampled() {
            return None;
        }
        Some(HealthCheck {
            cx: Context::new().with_span(span),
        })
    }
}

impl ServerCall {
    /// The context to run the request's work in (its backend requests' parent).
    pub fn context(&self) -> &Context {
        &self.cx
    }

    /// Adds an event (a decision taken while answering) to the span.
    pub fn event(&self, name: &'static str, attrs: Vec<KeyValue>) {
        self.cx.span().add_event(name, attrs);
    }

    /// Ends the span with `outcome` and records `mcp.server.operation.duration`.
    pub fn finish(mut self, outcome: Outcome<'_>, telemetry: &Telemetry) {
        if let Some(t) = conclude(&self.cx, outcome, true) {
            self.metric.push(KeyValue::new(ERROR_TYPE, t));
        }
        self.cx.span().end();
        if let Some(i) = &telemetry.instruments {
            i.server_operation
                .record(self.started.elapsed().as_secs_f64(), &self.metric);
        }
    }
}

/// A request to a backend: its CLIENT span.
#[derive(Debug)]
pub struct ClientCall {
    cx: Context,
    started: Instant,
    metric: Vec<KeyValue>,
}

impl ClientCall {
    /// Writes this span's context into the backend request's `params._meta`
    /// (`traceparent` replaced; the caller's `tracestate` and `baggage` carried on).
    pub fn inject(&self, params: &mut Value) {
        carrier::inject_meta(&self.cx, params);
    }

    /// The span's context.
    pub fn context(&self) -> &Context {
        &self.cx
    }

    /// Sets an attribute (`hale.retried`, …).
    pub fn set(&self, kv: KeyValue) {
        self.cx.span().set_attribute(kv);
    }

    /// Adds an event: a decision this request caused (a circuit opened, a backend
    /// withdrawn).
    pub fn event(&self, name: &'static str, attrs: Vec<KeyValue>) {
        self.cx.span().add_event(name, attrs);
    }

    /// Ends the span with `outcome` (every error is one on the client side) and records
    /// `mcp.client.operation.duration`.
    pub fn finish(mut self, outcome: Outcome<'_>, telemetry: &Telemetry) {
        if let Some(t) = conclude(&self.cx, outcome, false) {
            self.metric.push(KeyValue::new(ERROR_TYPE, t));
        }
        self.cx.span().end();
        if let Some(i) = &telemetry.instruments {
            i.client_operation
                .record(self.started.elapsed().as_secs_f64(), &self.metric);
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
