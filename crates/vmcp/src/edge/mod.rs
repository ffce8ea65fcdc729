//! The client edge: `/mcp` in both protocol eras at once, written on hyper.
//!
//! A request is read whole (4 MiB at most, within `operational.readTimeout`), parsed once, and
//! judged by what it carries: an `Mcp-Session-Id` or an `initialize` is the legacy era (a
//! session, a GET stream, DELETE at the end); a `MCP-Protocol-Version: 2026-07-28` header
//! or `_meta` version is the modern era (no session; headers checked against the body;
//! `server/discover` and `subscriptions/listen` answered here). Either way the request
//! then goes to [`crate::route`], and its answer is plain JSON unless something must reach
//! the client before it ([`call`]). See `docs/decisions/0003-vmcp-edge-on-hyper.md`.
//!
//! The parts: `session` (legacy client sessions), `modern` (2026-07-28 rules), `listeners`
//! (listen streams), `relay` (what flows back to clients: list changes, resource updates,
//! a backend's requests), `bridge` (a 2026-07-28 client's call to a handshake-era backend
//! as `input_required` rounds), `call` (JSON or SSE, decided late), `stream` (GET and
//! listen streams).

mod bridge;
pub(crate) mod call;
mod listeners;
pub(crate) mod modern;
mod relay;
mod session;
mod stream;
mod traced;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use hale_mcp::codes;
use http::request::Parts;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use crate::store::Resumable;
pub(crate) use listeners::Listeners;
pub(crate) use relay::Clients;
pub(crate) use session::ClientSession;

use crate::auth::Identity;
use crate::body::{Body, full};
use crate::config::VmcpConfig;
use crate::message::{self, Incoming as Message, RpcError};
use crate::route::{Caller, Router};
use crate::store::{Event, RedisStore, StoreError};
use crate::upstream::Owner;

/// With sessions in a shared store, at most this many are held here at once.
pub(crate) const LOCAL_SESSIONS: usize = 10_000;

/// Request bodies larger than this get 413.
pub(crate) const MAX_BODY: usize = 4 * 1024 * 1024;

const SESSION: &str = "mcp-session-id";

/// What the edge needs from the configuration.
#[derive(Clone, Debug)]
pub(crate) struct EdgeSettings {
    /// The vMCP's name (`serverInfo`).
    pub(crate) name: String,
    /// How long a request body may take to arrive.
    pub(crate) read_timeout: Duration,
    /// A legacy session unused this long is ended.
    pub(crate) session_idle_timeout: Duration,
    /// Client sessions held at once, and per identity.
    pub(crate) max_client_sessions: u32,
    pub(crate) max_sessions_per_identity: u32,
}

impl EdgeSettings {
    pub(crate) fn of(config: &VmcpConfig) -> Self {
        EdgeSettings {
            name: config.name.clone(),
            read_timeout: config.read_timeout,
            session_idle_timeout: config.session_idle_timeout,
            max_client_sessions: config.max_client_sessions,
            max_sessions_per_identity: config.max_sessions_per_identity,
        }
    }
}

/// `/mcp` for both eras.
pub(crate) struct Edge {
    pub(crate) settings: EdgeSettings,
    pub(crate) router: Arc<Router>,
    /// Where notifications go: legacy sessions and listen streams.
    pub(crate) clients: Arc<Clients>,
    /// 2026-07-28 clients' calls to handshake-era backends waiting for their next round.
    pub(crate) bridge: Arc<bridge::Bridge>,
    /// One token per request being answered: shutdown waits for them.
    pub(crate) in_flight: TaskTracker,
    pub(crate) draining: AtomicBool,
    /// Ends the long-lived streams (GET, listen) at shutdown.
    pub(crate) closing: CancellationToken,
    /// Answers depend on who asks (the caller is authenticated): `cacheScope: private`.
    pub(crate) private_answers: bool,
    /// Where legacy sessions live beyond this replica (`sessionStorage: redis`).
    pub(crate) store: Option<Arc<RedisStore>>,
    /// What the client-session limits did (`maxClientSessions`,
    /// `maxSessionsPerIdentity`).
    pub(crate) session_limits: [crate::limits::LimitHits; 2],
    /// What the request body limit and the bound on this replica's session copies did.
    pub(crate) body_limit: crate::limits::LimitHits,
    pub(crate) copies_limit: crate::limits::LimitHits,
}

/// The address a request came from (put in the request's extensions by the listener):
/// an anonymous caller's identity for the per-identity session share.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Peer(pub(crate) std::net::IpAddr);

impl std::fmt::Debug for Edge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Edge")
            .field("name", &self.settings.name)
            .finish_non_exhaustive()
    }
}

impl Edge {
    pub(crate) fn new(settings: EdgeSettings, router: Arc<Router>) -> Self {
        Edge {
            settings,
            router,
            clients: Arc::new(Clients::default()),
            bridge: Arc::default(),
            in_flight: TaskTracker::new(),
            draining: AtomicBool::new(false),
            closing: CancellationToken::new(),
            private_answers: false,
            store: None,
            session_limits: [
                crate::limits::LimitHits::new("operational.maxClientSessions"),
                crate::limits::LimitHits::new("operational.maxSessionsPerIdentity"),
            ],
            body_limit: crate::limits::LimitHits::new("request body size (4 MiB)"),
            copies_limit: crate::limits::LimitHits::new(
                "session copies held by a replica (10,000)",
            ),
        }
    }

    /// What the client-session limits did, for `/status`.
    pub(crate) fn limit_status(&self) -> Value {
        let held = self.clients.sessions.len() as u32;
        json!({
            "clientSessions": self.session_limits[0].status(self.settings.max_client_sessions, held),
            "sessionsPerIdentity": self.session_limits[1].status(self.settings.max_sessions_per_identity, 0),
            "requestBody": self.body_limit.status(MAX_BODY as u32, 0),
            "callsWaitingForInput": self.bridge.limit.status(10_000, self.bridge.len() as u32),
            "sessionCopies": self.copies_limit.status(LOCAL_SESSIONS as u32, held),
        })
    }

    /// Holds `session` if the client-session limits leave room for it: the idlest that
    /// may go are ended to make it (as if their clients had sent DELETE; a client that
    /// comes back gets 404 and initializes again). `Err` with the refusal when every one
    /// that would have to go is busy.
    async fn admit(&self, session: Arc<ClientSession>) -> Result<(), RpcError> {
        let (max_total, max_identity) = (
            self.settings.max_client_sessions,
            self.settings.max_sessions_per_identity,
        );
        let which = |limit: &str| usize::from(limit != "operational.maxClientSessions");
        match self.clients.sessions.make_room_for(
            session,
            max_total as usize,
            max_identity as usize,
        ) {
            Ok(evicted) => {
                for (session, limit) in evicted {
                    let max = if which(limit) == 0 {
                        max_total
                    } else {
                        max_identity
                    };
                    self.session_limits[which(limit)].hit("vmcp", max, "evicted");
                    self.end_session(&session, "evicted").await;
                }
                Ok(())
            }
            Err(limit) => {
                let max = if which(limit) == 0 {
                    max_total
                } else {
                    max_identity
                };
                self.session_limits[which(limit)].hit("vmcp", max, "refused");
                Err(RpcError::new(
                    codes::LIMIT_REACHED,
                    format!("{limit} reached ({max} sessions), every one busy right now; try again in a moment"),
                )
                .with_data(json!({"limit": limit, "max": max, "retryAfterSeconds": 1})))
            }
        }
    }

    /// Ends `session` (taken out of the map already): its backend sessions, wherever
    /// they were opened, and the store's record; counted as `event`.
    async fn end_session(&self, session: &ClientSession, event: &'static str) {
        if let Some(telemetry) = hale_telemetry::get() {
            telemetry.session_ended(session.age().as_secs_f64(), &session.protocol_version);
        }
        match &self.store {
            None => self.router.close_sessions_of(&session.id, event).await,
            Some(store) => {
                // Its backend sessions, wherever they were opened, end with it; so does
                // every replica's copy.
                let recorded = session.state().backend_sessions;
                self.router
                    .end_recorded_sessions(&session.id, &recorded)
                    .await;
                let _ = store.delete(&session.id).await;
                let _ = store
                    .publish(&Event::Ended {
                        session: session.id.clone(),
                        from: store.replica.clone(),
                    })
                    .await;
            }
        }
    }

    /// Serves one `/mcp` request from a caller the gate admitted.
    pub(crate) async fn serve(&self, req: Request<Incoming>, who: Identity) -> Response<Body> {
        match *req.method() {
            Method::POST => self.post(req, who).await,
            Method::GET => self.get(req.headers(), &who).await,
            Method::DELETE => self.delete(req.headers(), &who).await,
            _ => status_only(StatusCode::METHOD_NOT_ALLOWED),
        }
    }

    /// Client session `sid`, if it exists and `who` opened it: a session id is no
    /// credential, so another caller's request gets the same 404 as an unknown id.
    fn session(&self, sid: &str, who: &Identity) -> Option<Arc<ClientSession>> {
        self.clients
            .sessions
            .get(sid)
            .filter(|s| s.owner.as_deref() == who.sub.as_deref())
    }

    /// Client session `sid` for `who`: held here, or (sessions in a shared store)
    /// resumed from the store as another replica, or this one before a restart, left it.
    async fn find_session(
        &self,
        sid: &str,
        who: &Identity,
    ) -> Result<Option<Arc<ClientSession>>, StoreError> {
        if let Some(session) = self.session(sid, who) {
            return Ok(Some(session));
        }
        let Some(store) = &self.store else {
            return Ok(None);
        };
        if self.clients.sessions.get(sid).is_some() {
            return Ok(None); // held here, and someone else's
        }
        let Some(state) = store.load(sid).await? else {
            return Ok(None);
        };
        if state.owner.as_deref() != who.sub.as_deref() {
            return Ok(None);
        }
        let resumed = Arc::new(ClientSession::resumed(sid, state, store.clone()));
        let session = self.clients.sessions.insert_or_get(resumed);
        self.bound_local_copies();
        metrics::counter!("toolhive_vmcp_client_sessions_resumed_total").increment(1);
        tracing::debug!(session = %sid, "client session resumed from the session store");
        Ok(Some(session))
    }

    async fn post(&self, req: Request<Incoming>, who: Identity) -> Response<Body> {
        let draining = self.draining.load(Ordering::Acquire);
        let hold = self.in_flight.token();
        let (parts, body) = req.into_parts();
        let body = match read_body(body, self.settings.read_timeout).await {
            Ok(b) => b,
            Err(r) => {
                if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    self.body_limit.hit("vmcp", MAX_BODY as u32, "refused");
                }
                return r;
            }
        };
        if draining {
            // A request gets HTTP 200 with a JSON-RPC error for its id (MCP clients end
            // their session on a 5xx); anything else 503. Either way the connection
            // closes after the answer.
            let shutting_down = RpcError::new(codes::SHUTTING_DOWN, "the vMCP is shutting down");
            let mut r = match message::parse(&body) {
                Ok(Message::Request { id, .. }) => {
                    error_response(StatusCode::OK, &id, &shutting_down)
                }
                _ => error_response(
                    StatusCode::SERVICE_UNAVAILABLE,
                    &Value::Null,
                    &shutting_down,
                ),
            };
            r.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            return r;
        }
        let message = match message::parse(&body) {
            Ok(m) => m,
            Err(e) => return error_response(e.status, &Value::Null, &e.error),
        };
        let session_id = header(&parts.headers, SESSION);
        match message {
            Message::Request { id, method, params } => {
                if let Some(sid) = session_id {
                    let session = match self.find_session(sid, &who).await {
                        Ok(Some(session)) => session,
                        Ok(None) => return session_not_found(&id),
                        Err(e) => return store_unavailable(&id, &e),
                    };
                    session.touch();
                    if method == "initialize" {
                        return error_response(
                            StatusCode::BAD_REQUEST,
                            &id,
                            &RpcError::new(-32600, "this session is initialized already"),
                        );
                    }
                    // The session is the caller's own (checked above): its owner is `who`.
                    self.legacy(&parts, session, id, method, params, hold).await
                } else if method == "initialize"
                    && header(&parts.headers, "mcp-protocol-version") != Some(modern::VERSION)
                {
                    let peer = parts.extensions.get::<Peer>().map(|p| p.0);
                    self.initialize(&id, &params, who, peer).await
                } else if modern::is_modern(&parts.headers, &params) {
                    self.modern(&parts, who, id, method, params, hold).await
                } else {
                    error_response(
                        StatusCode::BAD_REQUEST,
                        &id,
                        &RpcError::new(
                            -32600,
                            "Bad Request: no valid session: send initialize first (or speak 2026-07-28 with its headers)",
                        ),
                    )
                }
            }
            Message::Notification { method, params } => {
                // `notifications/cancelled` stops the request it names (the backend is
                // told under its own id, on the same backend session); closing a
                // request's stream cancels it too. `notifications/initialized`,
                // `…/roots/list_changed`: nothing for the vMCP to do.
                tracing::trace!(%method, "client notification");
                if let Some(sid) = session_id {
                    match self.find_session(sid, &who).await {
                        Ok(Some(session)) => {
                            session.touch();
                            if method == "notifications/cancelled"
                                && let Some(request) = params.get("requestId")
                            {
                                session.cancel_call(request);
                            }
                        }
                        Ok(None) => return session_not_found(&Value::Null),
                        Err(e) => return store_unavailable(&Value::Null, &e),
                    }
                }
                status_only(StatusCode::ACCEPTED)
            }
            Message::Response { id, outcome } => {
                let session = match session_id {
                    Some(sid) => match self.find_session(sid, &who).await {
                        Ok(s) => s,
                        Err(e) => return store_unavailable(&Value::Null, &e),
                    },
                    None => None,
                };
                match session {
                    Some(session) => {
                        session.touch();
                        session.answered(&id, outcome);
                        status_only(StatusCode::ACCEPTED)
                    }
                    None => session_not_found(&Value::Null),
                }
            }
        }
    }

    /// `initialize`: a new session, with nothing asked of any backend (kept in the
    /// shared store before the answer, if there is one: the client's next request may
    /// go to any replica).
    async fn initialize(
        &self,
        id: &Value,
        params: &Value,
        who: Identity,
        peer: Option<std::net::IpAddr>,
    ) -> Response<Body> {
        // Who holds it, for the per-identity share: the caller, or (anonymous) its
        // address.
        let identity: Arc<str> = match (&who.sub, peer) {
            (Some(sub), _) => Arc::from(format!("sub:{sub}")),
            (None, Some(ip)) => Arc::from(format!("address:{ip}")),
            (None, None) => Arc::from("anonymous"),
        };
        let requested = params
            .get("protocolVersion")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let version = if modern::LEGACY_VERSIONS.contains(&requested) {
            requested
        } else {
            modern::LEGACY_VERSIONS[0]
        };
        let session = Arc::new(
            ClientSession::new(
                version.to_string(),
                params
                    .get("capabilities")
                    .cloned()
                    .unwrap_or_else(|| json!({})),
                params
                    .get("clientInfo")
                    .cloned()
                    .unwrap_or_else(|| json!({})),
                who.sub,
            )
            .held_by(identity)
            .stored_in(self.store.clone()),
        );
        session.touch();
        let sid = session.id.clone();
        // Admitted and held in one step, so that concurrent initializes cannot all see
        // room that only one of them may take.
        if let Err(refused) = self.admit(session.clone()).await {
            return error_response(StatusCode::OK, id, &refused);
        }
        if let Err(e) = session.persist().await {
            self.clients.sessions.remove(&sid);
            return store_unavailable(id, &e);
        }
        self.bound_local_copies();
        let result = json!({
            "protocolVersion": version,
            "capabilities": {
                "tools": {"listChanged": true},
                "resources": {"listChanged": true, "subscribe": true},
                "prompts": {"listChanged": true},
                "logging": {},
                "completions": {},
            },
            "serverInfo": {"name": self.settings.name, "version": env!("CARGO_PKG_VERSION")},
        });
        let mut r = call::json(StatusCode::OK, message::answer(id, &Ok(result)));
        if let Ok(v) = HeaderValue::from_str(&sid) {
            r.headers_mut().insert(SESSION, v);
        }
        r
    }

    async fn legacy(
        &self,
        parts: &Parts,
        session: Arc<ClientSession>,
        id: Value,
        method: String,
        params: Value,
        hold: tokio_util::task::task_tracker::TaskTrackerToken,
    ) -> Response<Body> {
        let streams_ok = accepts_streams(&parts.headers);
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let who = Identity {
            sub: session.owner.clone(),
            expires: None,
        };
        let caller = Caller {
            requests: relay::to_session(session.clone(), tx.clone()),
            profile: Some(session.profile.clone()),
            personal: Default::default(),
            session: Some(session.clone() as Arc<dyn Owner>),
            interim: tx,
            log_level: None,
        };
        let router = self.router.clone();
        let in_progress = session.start_call(&id);
        let traced = traced::Traced::start(
            parts,
            &id,
            &method,
            &params,
            Some((&session.id, &session.protocol_version)),
        );
        let work: call::Work = Box::pin(async move {
            let asked = Asked::new("legacy", &method, &params, &who);
            // Cancelled by the client: the backend call is dropped (and so cancelled at
            // the backend); the client expects no answer, and gets an error only if it
            // is still listening.
            let handled =
                traced::Traced::run(traced.as_ref(), router.handle(&caller, &method, params));
            let outcome = tokio::select! {
                outcome = handled => outcome,
                () = in_progress.cancelled() => Err(RpcError::new(codes::CANCELLED, "the client cancelled the request")),
            };
            if let Some(asked) = asked {
                asked.log(&outcome);
            }
            if let Some(traced) = traced {
                traced.finish(&method, &outcome);
            }
            message::answer(&id, &outcome)
        });
        call::respond(work, rx, streams_ok, hold).await
    }

    async fn modern(
        &self,
        parts: &Parts,
        who: Identity,
        id: Value,
        method: String,
        params: Value,
        hold: tokio_util::task::task_tracker::TaskTrackerToken,
    ) -> Response<Body> {
        if let Err((status, e)) = modern::validate(&parts.headers, &method, &params) {
            return error_response(status, &id, &e);
        }
        match method.as_str() {
            "server/discover" => {
                let result = modern::discover(&self.settings.name, None, self.router.ttl_ms());
                return call::json(StatusCode::OK, message::answer(&id, &Ok(result)));
            }
            "subscriptions/listen" => {
                drop(hold); // a stream that lasts until the client leaves is not drained
                return self.listen(id, &params, &who);
            }
            // Gone in 2026-07-28: liveness is any request; the level rides in `_meta`;
            // resource updates come through subscriptions/listen.
            "initialize"
            | "ping"
            | "logging/setLevel"
            | "resources/subscribe"
            | "resources/unsubscribe" => {
                return error_response(
                    StatusCode::NOT_FOUND,
                    &id,
                    &RpcError::new(-32601, format!("method not found in 2026-07-28: {method}")),
                );
            }
            _ => {}
        }
        let streams_ok = accepts_streams(&parts.headers);
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let log_level = params
            .pointer("/_meta/io.modelcontextprotocol~1logLevel")
            .and_then(Value::as_str)
            .map(crate::route::log_rank);
        let list = method.ends_with("/list");
        if !matches!(
            method.as_str(),
            "tools/list"
                | "resources/list"
                | "resources/templates/list"
                | "prompts/list"
                | "tools/call"
                | "resources/read"
                | "prompts/get"
                | "completion/complete"
        ) {
            return error_response(
                StatusCode::NOT_FOUND,
                &id,
                &RpcError::new(-32601, format!("method not found: {method}")),
            );
        }
        // Behind authentication, no cache may share answers between callers (§12).
        let scope = if self.private_answers {
            "private"
        } else {
            "public"
        };
        // A call to a handshake-era backend, which may ask the client for input
        // mid-call, runs as input_required rounds.
        let bridged = if matches!(method.as_str(), "tools/call" | "prompts/get") {
            if bridge::is_retry(&params) {
                Some(Duration::ZERO) // a retry: the parked call keeps its own deadline
            } else {
                self.router.may_ask(&method, &params).await
            }
        } else {
            None
        };
        let router = self.router.clone();
        let edge_bridge = bridged.map(|timeout| (self.bridge.clone(), timeout));
        let traced = traced::Traced::start(parts, &id, &method, &params, None);
        let work: call::Work = Box::pin(async move {
            let asked = Asked::new("2026-07-28", &method, &params, &who);
            let log_level = Some(log_level);
            let mut personal = false;
            let handled = async {
                match edge_bridge {
                    Some((bridge, timeout)) => {
                        let asker = bridge::Asker {
                            interim: tx,
                            log_level,
                            sub: who.sub.clone(),
                        };
                        bridge.call(&router, asker, &method, params, timeout).await
                    }
                    None => {
                        let caller = Caller {
                            session: None,
                            interim: tx,
                            log_level,
                            requests: relay::declined(),
                            profile: Some(modern::profile(&params)),
                            personal: Default::default(),
                        };
                        let outcome = router.handle(&caller, &method, params).await;
                        personal = caller.personal.load(Ordering::Relaxed);
                        outcome
                    }
                }
            };
            let outcome = traced::Traced::run(traced.as_ref(), handled).await;
            // What depends on the caller's own capabilities is its own, too.
            let scope = if personal { "private" } else { scope };
            let outcome = outcome.map(|mut result| {
                if let Value::Object(m) = &mut result {
                    m.entry("resultType").or_insert_with(|| json!("complete")); // a backend's `input_required` passes through
                    if list {
                        m.insert("ttlMs".into(), json!(router.ttl_ms()));
                        m.insert("cacheScope".into(), json!(scope));
                    } else if method == "resources/read" {
                        // A resource's content is its backend's: a 2026-07-28 backend's
                        // own hints stand; one of the handshake era said nothing, and
                        // content nobody vouched for is not shared between callers
                        // (absent, clients treat it as private too).
                        let ttl = router.ttl_ms();
                        m.entry("ttlMs").or_insert_with(|| json!(ttl));
                        m.entry("cacheScope").or_insert_with(|| json!("private"));
                    }
                }
                result
            });
            if let Some(asked) = asked {
                asked.log(&outcome);
            }
            if let Some(traced) = traced {
                traced.finish(&method, &outcome);
            }
            message::answer(&id, &outcome)
        });
        call::respond(work, rx, streams_ok, hold).await
    }

    /// `subscriptions/listen`: the acknowledgement with the honoured subset first, then
    /// the notifications asked for, tagged with the subscription id.
    fn listen(&self, id: Value, params: &Value, who: &Identity) -> Response<Body> {
        let filter = modern::Filter::from_params(params);
        let ends = self.stream_end(who);
        let (tx, rx) = tokio::sync::mpsc::channel(256);
        let registration = Listeners::add(&self.clients.listeners, id.clone(), filter.clone(), tx);
        let ack = message::notification(
            "notifications/subscriptions/acknowledged",
            &modern::tagged(json!({"notifications": filter.to_value()}), &id),
        );
        let last = message::answer(
            &id,
            &Ok(json!({"resultType": "complete", "_meta": {modern::META_SUBSCRIPTION: id}})),
        );
        if !filter.resource_uris.is_empty() {
            let router = self.router.clone();
            tokio::spawn(async move { router.subscribe_shared(&filter.resource_uris).await });
        }
        stream::NotificationStream::response(
            Some(ack),
            rx,
            ends.clone(),
            Some(last),
            Box::new((registration, ends.drop_guard())),
        )
    }

    /// Ends a long-lived stream at shutdown, or when the token that opened it expires (a
    /// stream never outlives its credentials: the client opens another with a fresh one).
    fn stream_end(&self, who: &Identity) -> CancellationToken {
        let ends = self.closing.child_token();
        if let Some(expires) = who.expires {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            let left = Duration::from_secs(expires.saturating_sub(now));
            let end = ends.clone();
            tokio::spawn(async move {
                tokio::select! {
                    () = end.cancelled() => {}
                    () = tokio::time::sleep(left) => end.cancel(),
                }
            });
        }
        ends
    }

    /// GET: a legacy session's stream for notifications and our requests.
    async fn get(&self, headers: &HeaderMap, who: &Identity) -> Response<Body> {
        let Some(sid) = header(headers, SESSION) else {
            if header(headers, "mcp-protocol-version") == Some(modern::VERSION) {
                return status_only(StatusCode::METHOD_NOT_ALLOWED);
            }
            return error_response(
                StatusCode::BAD_REQUEST,
                &Value::Null,
                &RpcError::new(
                    -32600,
                    "Bad Request: a GET stream needs a session (Mcp-Session-Id)",
                ),
            );
        };
        let session = match self.find_session(sid, who).await {
            Ok(Some(session)) => session,
            Ok(None) => return session_not_found(&Value::Null),
            Err(e) => return store_unavailable(&Value::Null, &e),
        };
        if !header(headers, "accept").is_some_and(|a| a.contains("text/event-stream")) {
            return status_only(StatusCode::NOT_ACCEPTABLE);
        }
        session.touch();
        let rx = session.open_stream();
        let ends = self.stream_end(who);
        stream::NotificationStream::response(
            None,
            rx,
            ends.clone(),
            None,
            Box::new(ends.drop_guard()),
        )
    }

    /// DELETE: the client ends its session, and with it its backend sessions.
    async fn delete(&self, headers: &HeaderMap, who: &Identity) -> Response<Body> {
        let Some(sid) = header(headers, SESSION) else {
            return status_only(StatusCode::METHOD_NOT_ALLOWED);
        };
        match self.find_session(sid, who).await {
            Ok(Some(_)) => {}
            Ok(None) => return session_not_found(&Value::Null),
            Err(e) => return store_unavailable(&Value::Null, &e),
        }
        let Some(session) = self.clients.sessions.remove(sid) else {
            return session_not_found(&Value::Null);
        };
        self.end_session(&session, "closed").await;
        status_only(StatusCode::NO_CONTENT)
    }

    /// Writes every session this replica holds to the store again whenever the store
    /// may have lost them (Redis reachable again after failing, or a session's key found
    /// missing), until `stop`: a session that goes on here stays shared, and a replica
    /// that joins later can serve it.
    pub(crate) async fn rewrite_sessions(&self, stop: CancellationToken) {
        let Some(store) = self.store.clone() else {
            return;
        };
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                () = store.rewrite.notified() => {}
            }
            // A burst of signals (every touch that found its key gone) is one sweep.
            tokio::time::sleep(Duration::from_millis(200)).await;
            let held = self.clients.sessions.all();
            let mut written = 0usize;
            for session in &held {
                if session.is_stored() && session.persist().await.is_ok() {
                    written += 1;
                }
            }
            tracing::info!(
                written,
                held = held.len(),
                "sessions written to the session store again"
            );
        }
    }

    /// With a shared store, this replica's copies of sessions are a cache: past
    /// [`LOCAL_SESSIONS`] the idlest tenth are let go (not ended: the store keeps them).
    fn bound_local_copies(&self) {
        if self.store.is_none() || self.clients.sessions.len() <= LOCAL_SESSIONS {
            return;
        }
        self.copies_limit
            .hit("vmcp", LOCAL_SESSIONS as u32, "evicted");
        for session in self.clients.sessions.evict_idlest(LOCAL_SESSIONS / 10) {
            self.router.forget_sessions_of(&session.id);
        }
    }

    /// What another replica said: a notification for a session whose stream is open
    /// here, or a session that ended.
    pub(crate) fn heard(&self, event: Event) {
        let me = self.store.as_ref().map(|s| s.replica.as_str());
        let (session, from) = match &event {
            Event::Notify { session, from, .. } | Event::Ended { session, from } => (session, from),
        };
        if Some(from.as_str()) == me {
            return; // its own
        }
        match &event {
            Event::Notify { message, .. } => {
                if let Some(s) = self.clients.sessions.get(session) {
                    s.send(Bytes::from(message.to_string()));
                }
            }
            Event::Ended { .. } => {
                if self.clients.sessions.remove(session).is_some() {
                    self.router.forget_sessions_of(session);
                }
            }
        }
    }

    /// Ends the sessions idle for `sessionIdleTimeout`, and their backend sessions.
    pub(crate) async fn expire_idle(&self) {
        let idle = self.settings.session_idle_timeout;
        for session in self
            .clients
            .sessions
            .expire(std::time::Instant::now(), idle)
        {
            if session.is_stored() {
                // Idle here, maybe busy at another replica: only this copy goes (the
                // store's TTL ends the session itself).
                self.router.forget_sessions_of(&session.id);
                continue;
            }
            tracing::debug!(session = %session.id, ?idle, "client session expired");
            self.router.close_sessions_of(&session.id, "expired").await;
        }
    }

    /// Ends every session (shutdown); with a shared store, only lets go of them: they go
    /// on at the other replicas, or at this one after its restart.
    pub(crate) async fn close_all(&self) {
        self.clients.sessions.drain();
        if self.store.is_some() {
            self.router.forget_all_sessions();
        } else {
            self.router.close_all_sessions().await;
        }
    }

    /// Client session `id`'s resumable state: what another replica would need to go on
    /// serving it (negotiated version, capabilities, client info, log level, backend
    /// session ids).
    pub(crate) async fn resumable(&self, id: &str) -> Option<Resumable> {
        let session = self.clients.sessions.get(id)?;
        Some(session.resumable(self.router.backend_sessions_of(id).await))
    }

    /// 2026-07-28 calls parked between `input_required` rounds.
    pub(crate) fn calls_waiting_for_input(&self) -> usize {
        self.bridge.len()
    }
}

/// One request's line in the log (debug level, target `hale_vmcp::request`): era,
/// method, tool or prompt name, caller, outcome and time taken.
struct Asked {
    era: &'static str,
    method: String,
    name: Option<String>,
    who: Identity,
    started: std::time::Instant,
}

impl Asked {
    /// Only when the line would be written: otherwise a request pays nothing for it.
    fn new(era: &'static str, method: &str, params: &Value, who: &Identity) -> Option<Self> {
        if !tracing::enabled!(target: "hale_vmcp::request", tracing::Level::DEBUG) {
            return None;
        }
        Some(Asked {
            era,
            method: method.to_string(),
            name: params
                .get("name")
                .and_then(Value::as_str)
                .map(str::to_string),
            who: who.clone(),
            started: std::time::Instant::now(),
        })
    }

    fn log(self, outcome: &Result<Value, RpcError>) {
        let error = outcome.as_ref().err().map(|e| e.code);
        tracing::debug!(
            target: "hale_vmcp::request",
            era = %self.era,
            method = %self.method,
            name = %self.name.as_deref().unwrap_or("-"),
            sub = %self.who.sub.as_deref().unwrap_or("-"),
            ms = self.started.elapsed().as_secs_f64() * 1000.0,
            error,
            "request"
        );
    }
}

async fn read_body(body: Incoming, within: Duration) -> Result<Bytes, Response<Body>> {
    let read = tokio::time::timeout(within, Limited::new(body, MAX_BODY).collect());
    match read.await {
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e))
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            Err(error_response(
                StatusCode::PAYLOAD_TOO_LARGE,
                &Value::Null,
                &RpcError::new(
                    codes::LIMIT_REACHED,
                    format!("request body larger than {MAX_BODY} bytes"),
                ),
            ))
        }
        Ok(Err(_)) => Err(status_only(StatusCode::BAD_REQUEST)),
        Err(_) => Err(error_response(
            StatusCode::REQUEST_TIMEOUT,
            &Value::Null,
            &RpcError::new(
                codes::TIMEOUT,
                format!("the request body did not arrive within {within:?}"),
            ),
        )),
    }
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn accepts_streams(headers: &HeaderMap) -> bool {
    header(headers, "accept").is_some_and(|a| a.contains("text/event-stream") || a.contains("*/*"))
}

/// The session store could not answer in time: HTTP 200 with a JSON-RPC error for a
/// request (the session is not lost, and MCP clients end theirs on a 5xx), 503 otherwise.
fn store_unavailable(id: &Value, e: &StoreError) -> Response<Body> {
    let status = if id.is_null() {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    let mut r = error_response(
        status,
        id,
        &RpcError::new(
            codes::SESSION_STORE_UNAVAILABLE,
            format!("{e} is unavailable: the session is kept; retry shortly"),
        )
        .with_data(json!({"retryAfterSeconds": 1})),
    );
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    r
}

fn session_not_found(id: &Value) -> Response<Body> {
    error_response(
        StatusCode::NOT_FOUND,
        id,
        &RpcError::new(-32600, "session not found: initialize a new one"),
    )
}

/// An HTTP error status with a JSON-RPC error body.
pub(crate) fn error_response(status: StatusCode, id: &Value, e: &RpcError) -> Response<Body> {
    call::json(status, message::answer(id, &Err(e.clone())))
}

fn status_only(status: StatusCode) -> Response<Body> {
    let mut r = Response::new(full(Bytes::new()));
    *r.status_mut() = status;
    r
}
