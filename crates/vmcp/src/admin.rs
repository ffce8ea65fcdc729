//! The admin API (`operational.admin`; off unless configured): an operator's levers on
//! each backend, every change logged with who made it.
//!
//! - `GET  /api/admin/backends`: every backend's status record.
//! - `POST /api/admin/backends/NAME/circuit` `{"state": "open" | "closed" | "auto"}`:
//!   force the breaker open (refuse everything) or closed (admit everything, ignore
//!   outcomes), or hand it back to its automatic rules.
//! - `POST /api/admin/backends/NAME/tools/TOOL/circuit` `{"state": …}`: the same for one
//!   tool's own breaker (TOOL as the backend names it); forced open withdraws the tool.
//! - `POST /api/admin/backends/NAME/mode` `{"mode": "active" | "draining" |
//!   "maintenance"}`: draining takes no new work (tools withdrawn; clients with a backend
//!   session there may finish; calls in flight finish), maintenance refuses every new
//!   call, active serves again.
//! - `POST /api/admin/reload`: read the configuration file again, as SIGHUP does.
//!
//! Answers are JSON: the backend's record after the change, or `{"error": …}` with 400
//! (a bad body, naming the field), 404 (no such backend or path) or 405.

use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use serde_json::{Value, json};

use crate::auth::Identity;
use crate::body::{Body, json_response};
use crate::reload::Reloader;
use crate::route::Router;
use crate::upstream::{CircuitOverride, Mode};

/// Where the admin API lives.
pub(crate) const PREFIX: &str = "/api/admin/";

/// Serves one admin request from an admitted operator.
pub(crate) async fn serve(
    req: Request<Incoming>,
    who: Identity,
    router: &Router,
    reloader: &Reloader,
) -> Response<Body> {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().trim_start_matches(PREFIX).to_string();
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let operator = who
        .sub
        .as_deref()
        .unwrap_or("anonymous (loopback)")
        .to_string();
    match (&parts.method, segments.as_slice()) {
        (&Method::GET, ["backends"]) => {
            let backends: Vec<Value> = router.upstreams().iter().map(|u| u.status()).collect();
            json_response(StatusCode::OK, &json!({"backends": backends}))
        }
        (&Method::POST, ["reload"]) => {
            tracing::warn!(by = %operator, "operator asked for a configuration reload");
            match reloader.reload("admin API").await {
                Ok(s) => json_response(
                    StatusCode::OK,
                    &json!({"result": "success", "added": s.added, "changed": s.changed, "removed": s.removed, "unchanged": s.unchanged}),
                ),
                Err(e) => json_response(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    &json!({"result": "failure", "error": e.to_string()}),
                ),
            }
        }
        (&Method::POST, ["backends", name, "tools", tool, "circuit"]) => {
            let Some(u) = router.upstreams().get(name).cloned() else {
                return error(StatusCode::NOT_FOUND, format!("no backend named {name:?}"));
            };
            let body = match read(body).await {
                Ok(b) => b,
                Err(r) => return r,
            };
            let Some(value) = body.get("state").and_then(Value::as_str) else {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!("expected a JSON body with \"state\", such as {}", example("circuit")),
                );
            };
            let wanted: CircuitOverride = match value.parse() {
                Ok(w) => w,
                Err(e) => return error(StatusCode::BAD_REQUEST, format!("state: {e}")),
            };
            if u.set_tool_circuit(tool, wanted).is_none() {
                return error(
                    StatusCode::NOT_FOUND,
                    format!("backend {name:?} lists no tool {tool:?} (or per-tool breakers are off: circuitBreaker.perTool)"),
                );
            }
            tracing::warn!(backend = %name, tool = %tool, by = %operator, state = value, "operator set a tool's circuit");
            crate::upstream::traced::decision("operator set a tool's circuit", true, || {
                vec![
                    opentelemetry::KeyValue::new("mcp.backend.name", name.to_string()),
                    opentelemetry::KeyValue::new("gen_ai.tool.name", tool.to_string()),
                    opentelemetry::KeyValue::new("hale.circuit.to", value.to_string()),
                    opentelemetry::KeyValue::new("hale.operator", operator.to_string()),
                ]
            });
            json_response(StatusCode::OK, &u.status())
        }
        (&Method::POST, ["backends", name, action @ ("circuit" | "mode")]) => {
            let Some(u) = router.upstreams().get(name).cloned() else {
                return error(StatusCode::NOT_FOUND, format!("no backend named {name:?}"));
            };
            let body = match read(body).await {
                Ok(b) => b,
                Err(r) => return r,
            };
            let field = if *action == "circuit" { "state" } else { "mode" };
            let Some(value) = body.get(field).and_then(Value::as_str) else {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!("expected a JSON body with {field:?}, such as {}", example(action)),
                );
            };
            if *action == "circuit" {
                let wanted: CircuitOverride = match value.parse() {
                    Ok(w) => w,
                    Err(e) => return error(StatusCode::BAD_REQUEST, format!("{field}: {e}")),
                };
                tracing::warn!(backend = %name, by = %operator, state = value, "operator set the circuit");
                crate::upstream::traced::decision("operator set the circuit", true, || {
                    vec![
                        opentelemetry::KeyValue::new("mcp.backend.name", name.to_string()),
                        opentelemetry::KeyValue::new("hale.circuit.to", value.to_string()),
                        opentelemetry::KeyValue::new("hale.operator", operator.to_string()),
                    ]
                });
                u.set_circuit(wanted);
            } else {
                let mode: Mode = match value.parse() {
                    Ok(m) => m,
                    Err(e) => return error(StatusCode::BAD_REQUEST, format!("{field}: {e}")),
                };
                let before = u.set_mode(mode);
                tracing::warn!(backend = %name, by = %operator, from = before.as_str(), to = mode.as_str(), "operator set the backend's mode");
                crate::upstream::traced::decision("operator set the backend's mode", true, || {
                    vec![
                        opentelemetry::KeyValue::new("mcp.backend.name", name.to_string()),
                        opentelemetry::KeyValue::new("hale.mode.from", before.as_str()),
                        opentelemetry::KeyValue::new("hale.mode.to", mode.as_str()),
                        opentelemetry::KeyValue::new("hale.operator", operator.to_string()),
                    ]
                });
            }
            json_response(StatusCode::OK, &u.status())
        }
        (
            _,
            ["backends"]
            | ["reload"]
            | ["backends", _, "circuit" | "mode"]
            | ["backends", _, "tools", _, "circuit"],
        ) => {
            error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed here".into())
        }
        _ => error(
            StatusCode::NOT_FOUND,
            "not found: the admin API has GET backends, POST backends/NAME/circuit, POST backends/NAME/tools/TOOL/circuit, POST backends/NAME/mode and POST reload".into(),
        ),
    }
}

fn example(action: &str) -> &'static str {
    if action == "circuit" {
        r#"{"state": "open"} (open, closed or auto)"#
    } else {
        r#"{"mode": "draining"} (active, draining or maintenance)"#
    }
}

/// A small JSON body, read within a second.
async fn read(body: Incoming) -> Result<Value, Response<Body>> {
    let collected = tokio::time::timeout(
        Duration::from_secs(5),
        Limited::new(body, 64 * 1024).collect(),
    )
    .await;
    let bytes: Bytes = match collected {
        Ok(Ok(c)) => c.to_bytes(),
        _ => {
            return Err(error(
                StatusCode::BAD_REQUEST,
                "the body could not be read (at most 64 KiB, within 5 s)".into(),
            ));
        }
    };
    serde_json::from_slice(&bytes).map_err(|e| {
        error(
            StatusCode::BAD_REQUEST,
            format!("the body is not JSON: {e}"),
        )
    })
}

fn error(status: StatusCode, message: String) -> Response<Body> {
    json_response(status, &json!({"error": message}))
}
