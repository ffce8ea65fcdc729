//! A backend request's CLIENT span (when telemetry is on): under the client request's
//! SERVER span (the context the request's work runs in), with the backend, its address
//! and the circuit state at admission; its context goes into the request's `_meta` (and,
//! by hale-mcp, its HTTP headers). Transitions the request caused are events on it.

use hale_telemetry::{ClientCall, Context, Outcome, Outgoing, Telemetry};
use opentelemetry::KeyValue;
use opentelemetry::trace::TraceContextExt;
use serde_json::Value;

use super::CallError;
use super::health::Health;
use crate::config::BackendConfig;

/// Where a backend is, as its spans name it: parsed from its URL once, when its
/// upstream is made, not per request.
#[derive(Clone, Debug)]
pub(crate) struct Peer {
    address: Option<String>,
    port: Option<u16>,
    /// `tcp`, or `pipe` for a stdio server.
    transport: &'static str,
}

impl Peer {
    pub(crate) fn of(backend: &BackendConfig) -> Peer {
        let uri = backend.url.parse::<http::Uri>().ok();
        Peer {
            address: uri.as_ref().and_then(|u| u.host()).map(str::to_string),
            port: uri.as_ref().and_then(|u| {
                u.port_u16().or(match u.scheme_str() {
                    Some("https") => Some(443),
                    _ => Some(80),
                })
            }),
            transport: if backend.stdio.is_some() {
                "pipe"
            } else {
                "tcp"
            },
        }
    }

    fn outgoing<'a>(
        &'a self,
        backend: &'a str,
        method: &'a str,
        params: &'a Value,
        circuit: &'static str,
    ) -> Outgoing<'a> {
        Outgoing {
            method,
            params,
            backend,
            address: self.address.as_deref(),
            port: self.port,
            transport: self.transport,
            circuit,
        }
    }
}

/// A traced backend request.
pub(crate) struct Traced {
    telemetry: &'static Telemetry,
    pub(crate) call: ClientCall,
}

impl Traced {
    /// The span of `method` (`params`) to `backend` under the current context; its
    /// context written into `params`. `None` when telemetry is off.
    pub(crate) fn start(
        backend: &str,
        peer: &Peer,
        circuit: &'static str,
        method: &str,
        params: &mut Value,
    ) -> Option<Traced> {
        let telemetry = hale_telemetry::get()?;
        let parent = Context::current();
        if !parent.span().span_context().is_sampled() && !telemetry.records_metrics() {
            return None; // not a recorded trace, and nothing to measure
        }
        let call =
            telemetry.client_call(&peer.outgoing(backend, method, params, circuit), &parent)?;
        call.inject(params);
        Some(Traced { telemetry, call })
    }

    /// Ends the span with the request's outcome.
    pub(crate) fn finish(self, method: &str, result: &Result<Value, CallError>) {
        let outcome = match result {
            Ok(v) => Outcome::Ok {
                tool_error: method == "tools/call" && v.get("isError") == Some(&Value::Bool(true)),
            },
            Err(CallError::Refused(state)) => {
                self.call
                    .set(KeyValue::new(hale_telemetry::names::CIRCUIT_REFUSED, true));
                self.call.event(
                    "circuit refused the call",
                    vec![KeyValue::new(
                        hale_telemetry::names::CIRCUIT_STATE,
                        state.as_str(),
                    )],
                );
                Outcome::Failed {
                    kind: "circuit_open",
                    message: if *state == hale_core::BreakerState::HalfOpen {
                        "the circuit is half-open and its trial is under way"
                    } else {
                        "the circuit is open: the backend was not contacted"
                    },
                }
            }
            Err(CallError::ToolRefused { tool, .. }) => {
                self.call
                    .set(KeyValue::new(hale_telemetry::names::CIRCUIT_REFUSED, true));
                self.call.event(
                    "tool circuit refused the call",
                    vec![KeyValue::new("gen_ai.tool.name", tool.clone())],
                );
                Outcome::Failed {
                    kind: "tool_circuit_open",
                    message: "the tool's circuit is open: the backend was not contacted",
                }
            }
            Err(CallError::RateLimited(_)) => Outcome::Failed {
                kind: "rate_limited",
                message: "the backend asked hale to slow down (HTTP 429)",
            },
            Err(CallError::Backend(hale_mcp::McpError::Rpc { code, message, .. })) => {
                Outcome::Error {
                    code: *code,
                    message,
                }
            }
            Err(CallError::Backend(e)) => Outcome::Failed {
                kind: e.category().map_or("_OTHER", |c| c.as_str()),
                message: "the request to the backend failed",
            },
        };
        self.call.finish(outcome, self.telemetry);
    }
}

/// A decision of hale's, when telemetry is on: an event `name` with `attrs` on the
/// current context's span if there is a sampled one (the backend request or health check
/// that caused it), and an OTel log record (in that trace) whether or not. `warn`: the
/// record's severity is WARN.
pub(crate) fn decision(name: &'static str, warn: bool, attrs: impl FnOnce() -> Vec<KeyValue>) {
    let Some(telemetry) = hale_telemetry::get() else {
        return;
    };
    let attrs = attrs();
    on_recorded_span(|span| span.add_event(name, attrs.clone()));
    telemetry.decision(warn, name, attrs);
}

/// An event on the current span only (a decision about one request, not the backend's).
pub(crate) fn event(name: &'static str, attrs: impl FnOnce() -> Vec<KeyValue>) {
    if hale_telemetry::get().is_some() {
        on_recorded_span(|span| span.add_event(name, attrs()));
    }
}

/// Runs `f` on the current context's span if it is a recorded one.
fn on_recorded_span(f: impl FnOnce(&opentelemetry::trace::SpanRef<'_>)) {
    let cx = Context::current();
    let span = cx.span();
    if span.span_context().is_sampled() {
        f(&span);
    }
}

/// A traced health check (one in `healthCheckSamplingRate`): a `health_check` root span
/// with the probe's CLIENT span under it; what the check changed are events on the root.
pub(crate) struct HealthTrace {
    telemetry: &'static Telemetry,
    check: hale_telemetry::HealthCheck,
    ping: Option<ClientCall>,
    reason: String,
}

impl HealthTrace {
    /// The spans of a check of `backend` about to be sent, if this one is sampled.
    pub(crate) fn start(
        backend: &str,
        peer: &Peer,
        health: &Health,
        method: hale_mcp::ProbeMethod,
    ) -> Option<HealthTrace> {
        let telemetry = hale_telemetry::get()?;
        let check = telemetry.health_check(backend)?;
        let method = match method {
            hale_mcp::ProbeMethod::Ping => "ping",
            hale_mcp::ProbeMethod::ToolsList => "tools/list",
        };
        let circuit = health.breaker.snapshot().state.as_str();
        let ping = telemetry.client_call(
            &peer.outgoing(backend, method, &Value::Null, circuit),
            check.context(),
        );
        Some(HealthTrace {
            telemetry,
            check,
            ping,
            reason: String::new(),
        })
    }

    /// The probe answered (or did not): its span ends with that.
    pub(crate) fn pinged(&mut self, outcome: &hale_core::CheckOutcome) {
        use hale_core::CheckOutcome as C;
        self.reason = match outcome {
            C::Success { latency } => format!("answered in {latency:?}"),
            C::Unauthenticated { message } => format!("refused hale's credentials: {message}"),
            C::Failure(f) => f.message.clone(),
        };
        if let Some(ping) = self.ping.take() {
            ping.finish(Outcome::of_check(outcome), self.telemetry);
        }
    }

    /// Ends the check: `report` runs in its context (its transitions become events on
    /// the root), then the root ends with the backend's state.
    pub(crate) fn finish(self, health: &Health, report: impl FnOnce()) {
        {
            let _current = self.check.context().clone().attach();
            report();
        }
        self.check.finish(health.health().as_str(), &self.reason);
    }
}

/// Sets an attribute on the current context's span, if telemetry is on and there is a
/// sampled one (`hale.retried`, `hale.session.resumed` on the backend request's span).
pub(crate) fn mark(key: &'static str, value: bool) {
    if hale_telemetry::get().is_none() {
        return;
    }
    let cx = Context::current();
    let span = cx.span();
    if span.span_context().is_sampled() {
        span.set_attribute(KeyValue::new(key, value));
    }
}
