//! MCP 2026-07-28 as hale-testkit serves it: no session, every request carries its
//! version in `_meta` and mirrors it in headers; `server/discover`; `resultType` on every
//! result, `ttlMs`/`cacheScope` on lists; `subscriptions/listen` for list changes.

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, StatusCode, header};
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc};

use crate::body::{self, ResponseBody};
use crate::catalog::Outbound;

pub(crate) const VERSION: &str = "2026-07-28";
const META_VERSION: &str = "io.modelcontextprotocol/protocolVersion";
const META_CAPABILITIES: &str = "io.modelcontextprotocol/clientCapabilities";
const META_SUBSCRIPTION: &str = "io.modelcontextprotocol/subscriptionId";

/// Which protocol eras a testkit server speaks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Era {
    /// Both: `initialize` and sessions, and 2026-07-28 requests without a session.
    Both,
    /// Only the handshake era (before 2026-07-28). The library's default, so that a
    /// test that needs sessions (and hale-mcp, which prefers 2026-07-28) gets them.
    #[default]
    Legacy,
    /// Only 2026-07-28: `initialize` is refused with 400 and -32022.
    Modern,
}

impl std::str::FromStr for Era {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "both" => Ok(Era::Both),
            "legacy" => Ok(Era::Legacy),
            "modern" => Ok(Era::Modern),
            other => Err(format!(
                "unknown era {other:?}: expected both, legacy or modern"
            )),
        }
    }
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Whether a request without a session speaks 2026-07-28.
pub(crate) fn is_modern(headers: &HeaderMap, message: &Value) -> bool {
    header(headers, "mcp-protocol-version") == Some(VERSION)
        || message
            .pointer("/params/_meta")
            .and_then(|m| m.get(META_VERSION))
            .is_some()
}

/// 400 with -32022: what a 2026-07-28-only server answers a legacy request.
pub(crate) fn unsupported(requested: &str) -> http::Response<ResponseBody> {
    json_response(
        StatusCode::BAD_REQUEST,
        &json!({"jsonrpc": "2.0", "id": null, "error": {"code": -32022,
            "message": "Unsupported protocol version",
            "data": {"supported": [VERSION], "requested": requested}}}),
    )
}

fn json_response(status: StatusCode, body: &Value) -> http::Response<ResponseBody> {
    http::Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(body::full(body.to_string()))
        .unwrap_or_default()
}

fn error(status: StatusCode, id: &Value, code: i64, message: &str) -> http::Response<ResponseBody> {
    json_response(
        status,
        &json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}}),
    )
}

/// What a 2026-07-28 answer needs of the server it is part of.
pub(crate) trait Host: Send + Sync + 'static {
    /// The server's configuration.
    fn config(&self) -> &crate::ServerConfig;
    /// Its tools, resources and prompts.
    fn catalog(&self) -> &crate::catalog::Catalog;
    /// Requests of ours to clients waiting for their answers.
    fn waiting(&self) -> crate::catalog::Waiting;
    /// Its notifications as they are sent.
    fn subscribe_notifications(&self) -> broadcast::Receiver<Value>;
    /// Answers `method` on `stream` (progress and log lines first, then the answer).
    fn answer_on_stream(
        self: Arc<Self>,
        method: String,
        params: Value,
        id: Value,
        stream: mpsc::UnboundedSender<Bytes>,
    ) -> impl Future<Output = ()> + Send;
}

/// Answers one 2026-07-28 request.
pub(crate) async fn answer<H: Host>(
    shared: &Arc<H>,
    headers: &HeaderMap,
    message: Value,
) -> http::Response<ResponseBody> {
    let id = message.get("id").cloned().unwrap_or(Value::Null);
    let method = message
        .get("method")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let params = message.get("params").cloned().unwrap_or_else(|| json!({}));
    if id.is_null() {
        return http::Response::builder()
            .status(StatusCode::ACCEPTED)
            .body(body::full(Bytes::new()))
            .unwrap_or_default();
    }
    let meta = params.get("_meta");
    let Some(version) = meta
        .and_then(|m| m.get(META_VERSION))
        .and_then(Value::as_str)
    else {
        return error(
            StatusCode::BAD_REQUEST,
            &id,
            -32602,
            "Invalid params: _meta protocolVersion is required",
        );
    };
    if meta.is_none_or(|m| m.get(META_CAPABILITIES).is_none()) {
        return error(
            StatusCode::BAD_REQUEST,
            &id,
            -32602,
            "Invalid params: _meta clientCapabilities is required",
        );
    }
    if header(headers, "mcp-protocol-version") != Some(version) {
        return error(
            StatusCode::BAD_REQUEST,
            &id,
            -32020,
            "Header mismatch: MCP-Protocol-Version",
        );
    }
    if version != VERSION {
        return json_response(
            StatusCode::BAD_REQUEST,
            &json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32022,
                "message": "Unsupported protocol version",
                "data": {"supported": [VERSION], "requested": version}}}),
        );
    }
    if header(headers, "mcp-method") != Some(method.as_str()) {
        return error(
            StatusCode::BAD_REQUEST,
            &id,
            -32020,
            "Header mismatch: Mcp-Method",
        );
    }
    let named = match method.as_str() {
        "tools/call" | "prompts/get" => params.get("name").and_then(Value::as_str),
        "resources/read" => params.get("uri").and_then(Value::as_str),
        _ => None,
    };
    if let Some(name) = named
        && header(headers, "mcp-name") != Some(name)
    {
        return error(
            StatusCode::BAD_REQUEST,
            &id,
            -32020,
            "Header mismatch: Mcp-Name",
        );
    }
    if let Some(answer) = crate::mrtr::answer(&method, &params) {
        return answered(&method, &id, answer);
    }
    match method.as_str() {
        "server/discover" => {
            let mut supported = vec![VERSION];
            if shared.config().era == Era::Both {
                supported.extend(crate::catalog::PROTOCOL_VERSIONS);
            }
            let result = json!({
                "resultType": "complete",
                "supportedVersions": supported,
                "capabilities": {"tools": {"listChanged": true}, "resources": {"subscribe": true, "listChanged": true}, "prompts": {"listChanged": true}},
                "_meta": {"io.modelcontextprotocol/serverInfo": {"name": "hale-testkit", "version": env!("CARGO_PKG_VERSION")}},
                "ttlMs": 0,
                "cacheScope": "public",
            });
            json_response(
                StatusCode::OK,
                &json!({"jsonrpc": "2.0", "id": id, "result": result}),
            )
        }
        "subscriptions/listen" => listen(shared, id, &params),
        "initialize"
        | "ping"
        | "logging/setLevel"
        | "resources/subscribe"
        | "resources/unsubscribe" => error(
            StatusCode::NOT_FOUND,
            &id,
            -32601,
            &format!("Method not found: {method}"),
        ),
        "tools/list"
        | "tools/call"
        | "resources/list"
        | "resources/templates/list"
        | "resources/read"
        | "prompts/list"
        | "prompts/get"
        | "completion/complete"
            if !shared.config().json_response =>
        {
            // Progress and log lines ride the request's own stream, then the answer.
            let (frames, rx) = mpsc::unbounded_channel();
            tokio::spawn(shared.clone().answer_on_stream(method, params, id, frames));
            http::Response::builder()
                .header(header::CONTENT_TYPE, "text/event-stream")
                .header(header::CACHE_CONTROL, "no-cache")
                .body(body::stream(rx))
                .unwrap_or_default()
        }
        "tools/list"
        | "tools/call"
        | "resources/list"
        | "resources/templates/list"
        | "resources/read"
        | "prompts/list"
        | "prompts/get"
        | "completion/complete" => {
            let out = Outbound {
                stream: None,
                waiting: shared.waiting(),
                session: None,
            };
            answered(
                &method,
                &id,
                shared.catalog().answer(&method, &params, &out).await,
            )
        }
        _ => error(
            StatusCode::NOT_FOUND,
            &id,
            -32601,
            &format!("Method not found: {method}"),
        ),
    }
}

/// What every 2026-07-28 result carries: `resultType`, and on lists `ttlMs`/`cacheScope`.
pub(crate) fn decorate(method: &str, result: &mut Value) {
    if let Value::Object(m) = result {
        m.entry("resultType").or_insert_with(|| json!("complete"));
        if method.ends_with("/list") || method == "resources/read" {
            m.insert("ttlMs".into(), json!(0));
            m.insert("cacheScope".into(), json!("public"));
        }
    }
}

/// `subscriptions/listen`: the acknowledgement, then list changes as they happen.
/// A 2026-07-28 answer as JSON: the result decorated for its era, or the error.
fn answered(
    method: &str,
    id: &Value,
    answer: Result<Value, (i64, String)>,
) -> http::Response<ResponseBody> {
    match answer {
        Ok(mut result) => {
            decorate(method, &mut result);
            json_response(
                StatusCode::OK,
                &json!({"jsonrpc": "2.0", "id": id, "result": result}),
            )
        }
        Err((code, message)) => error(StatusCode::OK, id, code, &message),
    }
}

fn listen<H: Host>(shared: &Arc<H>, id: Value, params: &Value) -> http::Response<ResponseBody> {
    let wants = |k: &str| {
        params
            .pointer(&format!("/notifications/{k}"))
            .and_then(Value::as_bool)
            == Some(true)
    };
    let mut honoured = serde_json::Map::new();
    for k in [
        "toolsListChanged",
        "promptsListChanged",
        "resourcesListChanged",
    ] {
        if wants(k) {
            honoured.insert(k.into(), Value::Bool(true));
        }
    }
    // Resource subscriptions: each subscribed resource "changes" at once, as the
    // handshake era's resources/subscribe does here.
    let resources: Vec<Value> = params
        .pointer("/notifications/resourceSubscriptions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if !resources.is_empty() {
        honoured.insert(
            "resourceSubscriptions".into(),
            Value::Array(resources.clone()),
        );
    }
    let (tx, rx) = mpsc::unbounded_channel();
    let ack = json!({"jsonrpc": "2.0", "method": "notifications/subscriptions/acknowledged",
        "params": {"_meta": {META_SUBSCRIPTION: id}, "notifications": honoured}});
    let _ = tx.send(body::sse_message(&ack));
    if !resources.is_empty() {
        let (tx, id) = (tx.clone(), id.clone());
        tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            for uri in resources {
                let note = json!({"jsonrpc": "2.0", "method": "notifications/resources/updated",
                    "params": {"uri": uri, "_meta": {META_SUBSCRIPTION: id}}});
                let _ = tx.send(body::sse_message(&note));
            }
        });
    }
    let mut notes = shared.subscribe_notifications();
    let tools = wants("toolsListChanged");
    tokio::spawn(async move {
        loop {
            tokio::select! {
                () = tx.closed() => return,
                note = notes.recv() => match note {
                    Ok(mut note) => {
                        if note["method"] == "notifications/tools/list_changed" && tools {
                            note["params"] = json!({"_meta": {META_SUBSCRIPTION: id}});
                            if tx.send(body::sse_message(&note)).is_err() {
                                return;
                            }
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => return,
                },
            }
        }
    });
    http::Response::builder()
        .header(header::CONTENT_TYPE, "text/event-stream")
        .header(header::CACHE_CONTROL, "no-cache")
        .body(body::stream(rx))
        .unwrap_or_default()
}
