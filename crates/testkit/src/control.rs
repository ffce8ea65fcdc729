//! A small HTTP control endpoint, so tests and operators can switch faults on a testkit
//! server running as a separate process. It listens on its own port, so it stays
//! reachable while the MCP listener is down.
//!
//! | request | effect |
//! |---|---|
//! | `POST /fault` with body `down`, `hang`, `slow=250ms`, `status=503`, `malformed`, `flap=20s/10s` or `none` | sets the fault |
//! | `POST /forget-sessions` | forgets every session |
//! | `POST /tools/add?name=N`, `POST /tools/remove?name=N` | changes the tools, sending `list_changed` |
//! | `POST /require-token` with body `TOKEN` (empty: none) | MCP requests need `Authorization: Bearer TOKEN` |
//! | `GET /stats` | counters as JSON |

use std::convert::Infallible;
use std::net::SocketAddr;

use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::net::TcpListener;

use crate::body::{self, ResponseBody};
use crate::{Fault, TestServer};

/// Serves the control endpoint for `server` on `addr`; returns the bound address.
pub async fn serve(server: TestServer, addr: SocketAddr) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let server = server.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req| {
                    let server = server.clone();
                    async move { Ok::<_, Infallible>(handle(&server, req).await) }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(bound)
}

async fn handle(server: &TestServer, req: Request<Incoming>) -> Response<ResponseBody> {
    let name = req
        .uri()
        .query()
        .unwrap_or_default()
        .split('&')
        .find_map(|kv| kv.strip_prefix("name="))
        .map(str::to_string);
    let reply = |status: StatusCode, text: String| {
        Response::builder()
            .status(status)
            .body(body::full(text))
            .unwrap_or_default()
    };
    match (req.method().clone(), req.uri().path()) {
        (Method::POST, "/require-token") => {
            let token = text_of(req).await;
            server.require_token((!token.is_empty()).then_some(token.as_str()));
            reply(StatusCode::OK, "ok\n".into())
        }
        (Method::POST, "/fault") => {
            let spec = text_of(req).await;
            let fault = if spec == "none" || spec.is_empty() {
                None
            } else {
                match spec.parse::<Fault>() {
                    Ok(f) => Some(f),
                    Err(e) => return reply(StatusCode::BAD_REQUEST, e),
                }
            };
            server.set_fault(fault).await;
            reply(
                StatusCode::OK,
                format!("fault: {}", fault.map_or("none".into(), |f| f.to_string())),
            )
        }
        (Method::POST, "/forget-sessions") => {
            server.forget_sessions();
            reply(StatusCode::OK, "sessions forgotten".into())
        }
        (Method::POST, "/tools/add") | (Method::POST, "/tools/remove") => {
            let Some(name) = name else {
                return reply(StatusCode::BAD_REQUEST, "expected ?name=TOOL".into());
            };
            let changed = if req.uri().path() == "/tools/add" {
                server.add_tool(&name)
            } else {
                server.remove_tool(&name)
            };
            reply(
                StatusCode::OK,
                json!({"changed": changed, "tools": server.tool_names()}).to_string(),
            )
        }
        (Method::GET, "/stats") => {
            let s = server.stats();
            let body = json!({
                "requests": s.requests, "byMethod": s.by_method, "sessionsOpened": s.sessions_opened,
                "sessionsDeleted": s.sessions_deleted, "openSessions": s.open_sessions, "unauthorized": s.unauthorized,
                "fault": server.fault().map(|f| f.to_string()),
            });
            reply(StatusCode::OK, body.to_string())
        }
        _ => reply(StatusCode::NOT_FOUND, "unknown control request".into()),
    }
}

/// A request's body as trimmed text.
async fn text_of(req: Request<Incoming>) -> String {
    let bytes = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    String::from_utf8_lossy(&bytes).trim().to_string()
}
