//! A client request's SERVER span (when telemetry is on): started with the request,
//! continuing the caller's trace (`params._meta`, else the `traceparent` header); the
//! request's work runs in its context, so that every backend request it makes is a
//! CLIENT span under it; ended with the answer.

use std::future::Future;

use hale_telemetry::{FutureExt, Incoming, Outcome, ServerCall, Telemetry};
use http::request::Parts;
use serde_json::Value;

use super::Peer;
use crate::message::RpcError;

/// A traced request: its span, and the telemetry that ends it.
pub(crate) struct Traced {
    telemetry: &'static Telemetry,
    call: ServerCall,
}

impl Traced {
    /// The span of request `id` (`method`, `params`) that came with `parts`, on the
    /// legacy session `session` (its id and protocol version) if any. `None` when
    /// telemetry (or tracing) is off: then nothing else is paid.
    pub(crate) fn start(
        parts: &Parts,
        id: &Value,
        method: &str,
        params: &Value,
        session: Option<(&str, &str)>,
    ) -> Option<Traced> {
        let telemetry = hale_telemetry::get()?;
        let call = telemetry.server_call(&Incoming {
            method,
            params,
            headers: Some(&parts.headers),
            request_id: id,
            session_id: session.map(|s| s.0),
            protocol_version: Some(session.map_or(super::modern::VERSION, |s| s.1)),
            client_address: parts.extensions.get::<Peer>().map(|p| p.0),
        })?;
        Some(Traced { telemetry, call })
    }

    /// Runs `work` in the span's context (as is, untraced).
    pub(crate) async fn run<F: Future>(this: Option<&Traced>, work: F) -> F::Output {
        match this.and_then(|t| t.call.context()) {
            Some(cx) => work.with_context(cx.clone()).await,
            None => work.await,
        }
    }

    /// Ends the span with the answer to `method`.
    pub(crate) fn finish(self, method: &str, outcome: &Result<Value, RpcError>) {
        let outcome = match outcome {
            Ok(result) => Outcome::Ok {
                tool_error: method == "tools/call"
                    && result.get("isError") == Some(&Value::Bool(true)),
            },
            Err(e) => Outcome::Error {
                code: e.code,
                message: &e.message,
            },
        };
        self.call.finish(outcome, self.telemetry);
    }
}
