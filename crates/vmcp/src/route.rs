//! Routing: what a client's request becomes, the same in both protocol eras. Lists come
//! from the catalog (after a fan-out to backends not yet listed); a call goes to the
//! backend that owns the tool, resource or prompt, through its breaker, on the caller's
//! own backend session; what the backend sends meanwhile goes back to the caller alone.

use std::sync::Arc;

use bytes::Bytes;
use hale_core::HealthState;
use hale_mcp::{CallHooks, McpError, NotificationSink, ServerRequest, ServerRequestError, codes};
use serde_json::{Value, json};

use crate::aggregate::Catalog;
use crate::config::PartialFailureMode;
use crate::edge::ClientSession;
use crate::edge::message::{self, RpcError};
use crate::server::{CallError, State};

/// Who is asking, and where what comes before the answer goes.
pub(crate) struct Caller {
    /// The legacy client session (owner of backend sessions); `None` for a modern
    /// client, which has no session.
    pub(crate) session: Option<Arc<ClientSession>>,
    /// Messages for the client before the answer (the call's own stream).
    pub(crate) interim: tokio::sync::mpsc::UnboundedSender<Bytes>,
    /// Which log lines reach the caller: `None` all (a legacy client: its
    /// `logging/setLevel` already told its own backend sessions), `Some(None)` none, and
    /// `Some(Some(level))` those at or above `level` (a 2026-07-28 client opts in per
    /// request with `_meta["io.modelcontextprotocol/logLevel"]`).
    pub(crate) log_level: Option<Option<u8>>,
    /// A 2026-07-28 caller's call run by [`crate::bridge`]: the backend's requests go
    /// there, to become `input_required` rounds.
    pub(crate) asks: Option<tokio::sync::mpsc::UnboundedSender<crate::bridge::Ask>>,
    /// Who is asking (the token's `sub`), when the vMCP authenticates callers.
    pub(crate) sub: Option<Arc<str>>,
}

/// MCP's log levels, in RFC 5424 order.
const LEVELS: [&str; 8] = [
    "debug",
    "info",
    "notice",
    "warning",
    "error",
    "critical",
    "alert",
    "emergency",
];

/// A log level's rank (RFC 5424 order, as MCP uses it); unknown levels rank highest.
pub(crate) fn log_rank(level: &str) -> u8 {
    LEVELS
        .iter()
        .position(|l| *l == level)
        .unwrap_or(LEVELS.len()) as u8
}

/// The level of `rank`, if it is one.
pub(crate) fn log_level_name(rank: u8) -> Option<&'static str> {
    LEVELS.get(usize::from(rank)).copied()
}

/// Answers `method` for `caller`.
pub(crate) async fn handle(
    state: &Arc<State>,
    caller: &Caller,
    method: &str,
    params: Value,
) -> Result<Value, RpcError> {
    match method {
        "ping" => Ok(json!({})),
        "tools/list" => list(state, "tools", |c| c.tools.clone()).await,
        "resources/list" => list(state, "resources", |c| c.resources.clone()).await,
        "resources/templates/list" => {
            list(state, "resourceTemplates", |c| c.templates.clone()).await
        }
        "prompts/list" => list(state, "prompts", |c| c.prompts.clone()).await,
        "tools/call" => call_tool(state, caller, params).await,
        "resources/read" => {
            let uri = str_param(&params, "uri")?;
            let route = resource_route(state, &uri).await?;
            let forwarded = with_name(params, "uri", &route.original);
            forward(state, caller, &route.backend, "resources/read", forwarded).await
        }
        "prompts/get" => {
            let name = str_param(&params, "name")?;
            let route = state.catalog().await.prompt_routes.get(&name).cloned();
            let Some(route) = route else {
                return Err(RpcError::new(
                    codes::UNKNOWN_NAME,
                    format!("unknown prompt: {name}"),
                ));
            };
            let forwarded = with_name(params, "name", &route.original);
            forward(state, caller, &route.backend, "prompts/get", forwarded).await
        }
        "resources/subscribe" | "resources/unsubscribe" => {
            let uri = str_param(&params, "uri")?;
            let route = resource_route(state, &uri).await?;
            let subscribe = method == "resources/subscribe";
            if let (Some(session), Some(i)) = (&caller.session, state.index(&route.backend))
                && let Ok(client) = state.client_for(i, Some(session)).await
            {
                let (modern, own_session) = client.era().await;
                if modern || !own_session {
                    // No backend session of the caller's own (a 2026-07-28 backend has
                    // no resources/subscribe: its listen stream carries the URIs): the
                    // shared client asks for updates, and they are passed on to the
                    // sessions that subscribed.
                    if subscribe {
                        state.resource_watch.add(&uri, session);
                        client.subscribe_resource(&route.original).await
                    } else {
                        state.resource_watch.remove(&uri, session);
                        Ok(())
                    }
                    .map_err(|e| unavailable(state, i, false, &e.to_string()))?;
                    return Ok(json!({}));
                }
                if subscribe {
                    // Updates arrive on the backend session's GET stream, opened now.
                    client.listen().await;
                }
            }
            let forwarded = with_name(params, "uri", &route.original);
            forward(state, caller, &route.backend, method, forwarded)
                .await
                .map(|_| json!({}))
        }
        "logging/setLevel" => set_level(caller, params).await,
        "completion/complete" => {
            let reference = &params["ref"];
            let backend = match reference.get("type").and_then(Value::as_str) {
                Some("ref/prompt") => {
                    let name = reference
                        .get("name")
                        .and_then(Value::as_str)
                        .unwrap_or_default();
                    state
                        .catalog()
                        .await
                        .prompt_routes
                        .get(name)
                        .map(|r| (r.backend.clone(), "name", r.original.clone()))
                }
                Some("ref/resource") => {
                    let uri = reference
                        .get("uri")
                        .and_then(Value::as_str)
                        .unwrap_or_default();
                    state
                        .catalog()
                        .await
                        .route_resource(uri)
                        .map(|r| (r.backend, "uri", r.original))
                }
                _ => None,
            };
            let Some((backend, key, original)) = backend else {
                return Err(RpcError::new(-32602, "completion/complete: unknown ref"));
            };
            let mut forwarded = params;
            forwarded["ref"][key] = Value::String(original);
            forward(state, caller, &backend, "completion/complete", forwarded).await
        }
        other => Err(RpcError::new(-32601, format!("method not found: {other}"))),
    }
}

fn str_param(params: &Value, key: &str) -> Result<String, RpcError> {
    params
        .get(key)
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| RpcError::new(-32602, format!("params.{key} is required")))
}

/// `params` with `key` replaced by the backend's own name for the thing. The rest passes
/// as it is: `inputResponses` and `requestState` of an `input_required` retry, and the
/// caller's `_meta` (a 2026-07-28 caller's capabilities reach a 2026-07-28 backend, which
/// must not ask for what the caller cannot give).
fn with_name(mut params: Value, key: &str, original: &str) -> Value {
    params[key] = Value::String(original.to_string());
    params
}

async fn resource_route(state: &State, uri: &str) -> Result<crate::aggregate::Route, RpcError> {
    state.catalog().await.route_resource(uri).ok_or_else(|| {
        RpcError::new(-32602, format!("resource not found: {uri}")).with_data(json!({"uri": uri}))
    })
}

/// A list, after listing the backends not listed yet; `fail` / `best_effort` decide what
/// a failure among them does to the answer.
async fn list(
    state: &Arc<State>,
    field: &str,
    pick: impl Fn(&Catalog) -> Vec<Value>,
) -> Result<Value, RpcError> {
    let failures = state.fan_out().await;
    if !failures.is_empty() && state.config.partial_failure_mode == PartialFailureMode::Fail {
        let detail: Vec<String> = failures.iter().map(|(b, e)| format!("{b}: {e}")).collect();
        return Err(RpcError::new(
            codes::PARTIAL_FAILURE,
            format!("backends failed: {}", detail.join("; ")),
        )
        .with_data(json!({"failures": failures.iter().map(|(b, e)| json!({"backend": b, "error": e})).collect::<Vec<_>>()})));
    }
    state.rebuild_on_request().await;
    let catalog = state.catalog().await;
    let mut result = json!({ field: pick(&catalog) });
    if !failures.is_empty() {
        result["_meta"] = json!({"hale/partialFailures": failures.iter().map(|(b, e)| json!({"backend": b, "error": e})).collect::<Vec<_>>()});
    }
    Ok(result)
}

async fn call_tool(state: &Arc<State>, caller: &Caller, params: Value) -> Result<Value, RpcError> {
    let name = str_param(&params, "name")?;
    let lookup = |catalog: &Catalog| catalog.tool_routes.get(&name).cloned();
    let mut route = lookup(&*state.catalog().await);
    if route.is_none() {
        // Not advertised now. If its backend is routable, the catalog has not caught up
        // yet (it is rebuilt 50 ms after a change); if nobody offers it, a backend may not
        // have been listed yet. Either way, catch up once, asking only the backends never
        // listed: a client hammering a withdrawn or unknown tool must not turn into list
        // requests to every healthy backend.
        let owner = state.owner_of_tool(&name);
        let stale = owner
            .as_deref()
            .and_then(|b| state.index(b))
            .is_some_and(|i| state.backends[i].routable());
        // `catalog_behind`: lists arrived (the catalog task's) that the catalog was not
        // rebuilt from yet; rebuilding is local work, no backend is asked.
        if stale || state.catalog_behind() || (owner.is_none() && state.refresh_unlisted().await) {
            state.rebuild_on_request().await;
            route = lookup(&*state.catalog().await);
        }
    }
    let Some(route) = route else {
        // A withdrawn backend's tool: say whose it is and why, so the client knows it
        // will come back.
        if let Some(backend) = state.owner_of_tool(&name)
            && let Some(i) = state.index(&backend)
        {
            let b = &state.backends[i];
            return Err(unavailable(
                state,
                i,
                true,
                &format!(
                    "health {}, circuit {}",
                    b.health(),
                    b.breaker.snapshot().state
                ),
            ));
        }
        return Err(RpcError::new(
            codes::UNKNOWN_NAME,
            format!("unknown tool: {name}"),
        ));
    };
    let forwarded = with_name(params, "name", &route.original);
    forward(state, caller, &route.backend, "tools/call", forwarded).await
}

/// `logging/setLevel`: the caller's own backend sessions only, now and as they open.
async fn set_level(caller: &Caller, params: Value) -> Result<Value, RpcError> {
    let Some(session) = &caller.session else {
        return Err(RpcError::new(
            -32601,
            "logging/setLevel needs a session (2026-07-28 sets the level per request in _meta)",
        ));
    };
    let level = params.get("level").cloned().unwrap_or(Value::Null);
    *session
        .log_level
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(level.clone());
    let open: Vec<Arc<hale_mcp::McpClient>> = session
        .backends
        .iter()
        .filter_map(|c| c.get().cloned())
        .collect();
    futures_util::future::join_all(open.into_iter().map(|client| {
        let level = level.clone();
        async move {
            if client.server_info().await.has("logging") {
                let _ = client
                    .request("logging/setLevel", Some(json!({"level": level})))
                    .await;
            }
        }
    }))
    .await;
    // Stateless backends share one session: their level is everyone's, so it is left
    // as it is rather than set by one client for all.
    Ok(json!({}))
}

/// Sends a request to `backend` for `caller`, through its breaker, ending at once if the
/// backend is withdrawn meanwhile.
/// [`forward`] as a boxed future that owns what it needs (for a task of its own: the
/// bridge runs calls so, and a boxed future breaks the cycle forward → bridge → forward).
pub(crate) fn forward_owned(
    state: Arc<State>,
    caller: Caller,
    backend: String,
    method: String,
    params: Value,
) -> std::pin::Pin<Box<dyn Future<Output = Result<Value, RpcError>> + Send>> {
    Box::pin(async move { forward(&state, &caller, &backend, &method, params).await })
}

pub(crate) async fn forward(
    state: &Arc<State>,
    caller: &Caller,
    backend: &str,
    method: &str,
    params: Value,
) -> Result<Value, RpcError> {
    let Some(i) = state.index(backend) else {
        return Err(RpcError::new(-32602, format!("unknown backend {backend}")));
    };
    // A 2026-07-28 client's call to a handshake-era backend, which may ask the client
    // for input mid-call: run as input_required rounds.
    if caller.session.is_none()
        && caller.asks.is_none()
        && matches!(method, "tools/call" | "prompts/get")
        && (crate::bridge::is_retry(&params) || state.speaks_handshake(i).await)
    {
        return crate::bridge::call(state, caller, backend, method, params).await;
    }
    if caller.session.is_none()
        && let Some(Some(rank)) = caller.log_level
    {
        state.lower_shared_log_level(i, rank).await;
    }
    let b = &state.backends[i];
    // Health from the cache; the breaker itself refuses (lock-free while closed).
    let health = b.health();
    if matches!(
        health,
        HealthState::Unhealthy | HealthState::Unauthenticated
    ) {
        let circuit = b.breaker.snapshot().state;
        return Err(unavailable(
            state,
            i,
            true,
            &format!("health {health}, circuit {circuit}"),
        ));
    }
    let hooks = hooks(caller, &caller.interim, backend);
    let withdrawn = b.withdrawn.notified();
    tokio::pin!(withdrawn);
    withdrawn.as_mut().enable();
    let call = state.call(i, caller.session.as_ref(), method, params, Some(&hooks));
    let result = tokio::select! {
        result = call => result,
        () = withdrawn => {
            return Err(unavailable(state, i, false, &format!(
                "withdrawn while the call was in flight (health {}, circuit {})",
                b.health(),
                b.breaker.snapshot().state
            )));
        }
    };
    match result {
        Ok(v) => Ok(v),
        // The backend answered with an error of its own: the client gets it as it is.
        Err(CallError::Backend(McpError::Rpc {
            code,
            message,
            data,
            ..
        })) => Err(RpcError {
            code,
            message,
            data,
        }),
        Err(e) => Err(unavailable(state, i, false, &e.to_string())),
    }
}

/// Where what the backend sends during the call goes: to this caller's stream only.
fn hooks(
    caller: &Caller,
    interim: &tokio::sync::mpsc::UnboundedSender<Bytes>,
    backend: &str,
) -> CallHooks {
    let to_client = interim.clone();
    let name = backend.to_string();
    let log_level = caller.log_level;
    let notifications: NotificationSink = Arc::new(move |note: hale_mcp::Notification| {
        let mut params = note.params.unwrap_or_else(|| json!({}));
        if note.method == "notifications/message"
            && let Some(wanted) = log_level
        {
            let level = params
                .get("level")
                .and_then(Value::as_str)
                .unwrap_or("info");
            if wanted.is_none_or(|min| log_rank(level) < min) {
                return; // not asked for: 2026-07-28 sends log lines on opt-in only
            }
        }
        if note.method == "notifications/message" && params.get("logger").is_none() {
            // Say which backend spoke, unless it named its logger itself.
            params["logger"] = Value::String(name.clone());
        }
        let _ = to_client.send(message::notification(&note.method, &params));
    });
    let requests = caller.session.clone().map(|session| {
        let to_client = interim.clone();
        Arc::new(move |request: ServerRequest| {
            let (session, to_client) = (session.clone(), to_client.clone());
            Box::pin(async move {
                let (id, answer) = session.ask();
                let params = request.params.unwrap_or_else(|| json!({}));
                if to_client
                    .send(message::request(&id, &request.method, &params))
                    .is_err()
                {
                    session.forget(&id);
                    return Err(ServerRequestError {
                        code: -32603,
                        message: "the client's stream is gone".into(),
                    });
                }
                let forget = Forget {
                    session: session.clone(),
                    id,
                };
                let answer = answer.await;
                drop(forget);
                answer.unwrap_or_else(|_| {
                    Err(ServerRequestError {
                        code: -32603,
                        message: "the client did not answer".into(),
                    })
                })
            }) as hale_mcp::ServerRequestFuture
        }) as hale_mcp::ServerRequestHandler
    });
    let requests = requests.or_else(|| {
        // A 2026-07-28 client's bridged call: the request becomes an input_required round.
        let asks = caller.asks.clone()?;
        Some(Arc::new(move |request: ServerRequest| {
            let asks = asks.clone();
            Box::pin(async move {
                let (reply, answer) = tokio::sync::oneshot::channel();
                let ask = crate::bridge::Ask {
                    method: request.method,
                    params: request.params.unwrap_or_else(|| json!({})),
                    reply,
                };
                if asks.send(ask).is_err() {
                    return Err(ServerRequestError {
                        code: -32603,
                        message: "the client's call is gone".into(),
                    });
                }
                answer.await.unwrap_or_else(|_| {
                    Err(ServerRequestError {
                        code: -32603,
                        message: "the client did not answer".into(),
                    })
                })
            }) as hale_mcp::ServerRequestFuture
        }) as hale_mcp::ServerRequestHandler)
    });
    CallHooks {
        requests: requests.or_else(|| {
            // A modern client has no stream for our requests: decline clearly.
            Some(Arc::new(|request: ServerRequest| {
                Box::pin(async move {
                    Err(ServerRequestError {
                        code: -32601,
                        message: format!(
                            "{} cannot be relayed to a 2026-07-28 client here (only during tools/call and prompts/get, as input_required rounds)",
                            request.method
                        ),
                    })
                }) as hale_mcp::ServerRequestFuture
            }) as hale_mcp::ServerRequestHandler)
        }),
        notifications: Some(notifications),
    }
}

/// Forgets a request of ours to the client when its call ends, however it ends.
struct Forget {
    session: Arc<ClientSession>,
    id: String,
}

impl Drop for Forget {
    fn drop(&mut self) {
        self.session.forget(&self.id);
    }
}

/// The error for a call to a known backend that cannot take it now. `refused`: the call
/// was not sent (counted as a rejection when the circuit is open).
pub(crate) fn unavailable(state: &State, i: usize, refused: bool, why: &str) -> RpcError {
    let b = &state.backends[i];
    let snap = b.breaker.snapshot();
    if refused && snap.state == hale_core::BreakerState::Open {
        metrics::counter!("toolhive_vmcp_backend_circuit_rejections_total", "backend" => b.config.name.clone()).increment(1);
    }
    let retry = snap.retry_at.map(|at| {
        at.saturating_duration_since(std::time::Instant::now())
            .as_secs()
    });
    RpcError::new(
        codes::BACKEND_UNAVAILABLE,
        format!("backend '{}' is unavailable: {why}", b.config.name),
    )
    .with_data(json!({
        "backend": b.config.name,
        "health": b.health().as_str(),
        "circuit": snap.state.as_str(),
        "retryAfterSeconds": retry,
    }))
}
