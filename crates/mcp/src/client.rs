//! One MCP client per backend URL: initialize, requests with deadlines, pagination, and
//! one transparent re-initialization when the server has lost the session.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::{RwLock, broadcast};

use crate::McpError;
use crate::http::{self as h, HttpClient};
use crate::jsonrpc::Notification;
use crate::server_requests::{CallHooks, ServerRequestHandler};
use crate::transport::{LegacySse, StreamableHttp, Transport, TransportKind};

/// Protocol versions we speak, newest first. 2024-11-05 is the legacy SSE era.
pub const PROTOCOL_VERSIONS: [&str; 4] = ["2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"];

/// How to reach a backend and how patient to be.
#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// Streamable HTTP or legacy SSE.
    pub transport: TransportKind,
    /// Deadline of each request (initialize included).
    pub request_timeout: Duration,
    /// The `clientInfo.name` we announce.
    pub client_name: String,
    /// Declare `sampling` and `elicitation` in initialize: set by a gateway that relays
    /// such requests to its own clients (see [`McpClient::request_answering`]).
    pub relays_client_features: bool,
    /// Capabilities to declare in initialize instead (a gateway opening a session on
    /// behalf of its client declares that client's); overrides `relays_client_features`.
    pub capabilities: Option<Value>,
    /// `clientInfo` to send instead of hale's own (a gateway's client's).
    pub client_info: Option<Value>,
    /// Hold the session's GET stream open for server notifications (default). A gateway
    /// with many sessions per backend opens it only where it needs it
    /// ([`McpClient::listen`]).
    pub listen: bool,
    /// HTTP connections to share with other clients of the same backend (a session is a
    /// header, not a connection); `None`: a pool of this client's own.
    pub pool: Option<Pool>,
    /// Which protocol era to speak: the handshake (default), 2026-07-28 when the server
    /// offers it (`Auto`: `server/discover` first, `initialize` if not), or only 2026-07-28.
    pub era: Era,
    /// At most this many items in one list (all pages): a server that lists more is
    /// refused with a protocol error instead of filling memory. A page of more than 8 KiB
    /// per allowed item is refused before it is parsed.
    pub max_list_items: Option<usize>,
    /// Headers and a bearer token sent with every request (a backend that wants
    /// credentials); never printed.
    pub credentials: Option<crate::Credentials>,
    /// How an `https://` server is reached (CA bundle, client certificate, name), when
    /// `pool` is `None`; a pool has its own (see [`Pool::with_tls`]). `None`: Mozilla's
    /// roots, no client certificate.
    pub tls: Option<crate::Tls>,
    /// Answers the server's requests that arrive outside any request of ours (on the
    /// session's GET stream: server-everything asks for roots there) when no single
    /// request in flight has a handler of its own; `None`: they are declined.
    pub standalone_requests: Option<StandaloneRequests>,
    /// How many notifications may wait for a slow reader of
    /// [`McpClient::notifications`] before the oldest are dropped (default 32). Each
    /// slot is memory held for the client's life: a gateway with thousands of quiet
    /// sessions keeps it small.
    pub notification_buffer: usize,
}

/// A handler for a server's requests outside any request (see
/// [`ClientOptions::standalone_requests`]).
#[derive(Clone)]
pub struct StandaloneRequests(pub crate::ServerRequestHandler);

impl std::fmt::Debug for StandaloneRequests {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StandaloneRequests")
    }
}

/// Which MCP protocol era a client speaks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Era {
    /// 2026-07-28 if the server answers `server/discover` with it, else the handshake
    /// (what hale uses towards backends).
    Auto,
    /// The handshake era only (`initialize`, sessions, the GET stream): the default, for
    /// a client that needs a session and its notifications.
    #[default]
    Legacy,
    /// 2026-07-28 only: a server that does not speak it is a protocol failure.
    Modern,
}

/// The session-less protocol revision hale speaks to backends that offer it.
pub const MODERN_PROTOCOL_VERSION: &str = "2026-07-28";

/// Keep-alive HTTP connections, shared by every client given a clone of it.
#[derive(Clone, Debug)]
pub struct Pool(HttpClient);

impl Pool {
    /// A new, empty pool.
    pub fn new() -> Self {
        Pool(h::client())
    }

    /// `n` pools, one per thread of a host that runs a single-threaded runtime on each:
    /// `select` says which pool the calling thread uses (modulo `n`; `None`, a thread
    /// that is none of them: the last). A request then never hands its connection's work
    /// to another thread.
    pub fn per_thread(n: usize, select: fn() -> Option<usize>) -> Self {
        Pool(HttpClient::per_thread(n, select))
    }

    /// The pool's connections to an `https://` server use `tls` (a new pool, before any
    /// connection is made).
    #[must_use]
    pub fn with_tls(self, tls: crate::Tls) -> Self {
        Pool(self.0.with_tls(tls))
    }
}

impl Default for Pool {
    fn default() -> Self {
        Pool::new()
    }
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            transport: TransportKind::StreamableHttp,
            request_timeout: Duration::from_secs(30),
            client_name: "hale".into(),
            relays_client_features: false,
            capabilities: None,
            client_info: None,
            listen: true,
            pool: None,
            max_list_items: None,
            credentials: None,
            tls: None,
            era: Era::Legacy,
            standalone_requests: None,
            notification_buffer: 32,
        }
    }
}

/// What the server told us in its initialize answer.
#[derive(Clone, Debug, PartialEq)]
pub struct ServerInfo {
    /// The negotiated protocol version.
    pub protocol_version: String,
    /// The server's `capabilities` object.
    pub capabilities: Value,
    /// The server's `serverInfo` object.
    pub server_info: Value,
    /// The server's `instructions`, if any.
    pub instructions: Option<String>,
}

impl ServerInfo {
    /// Whether this connection speaks 2026-07-28 (no session).
    pub fn is_modern(&self) -> bool {
        self.protocol_version == MODERN_PROTOCOL_VERSION
    }

    /// Whether the server declared capability `name` (`tools`, `resources`, `prompts`…).
    pub fn has(&self, name: &str) -> bool {
        self.capabilities.get(name).is_some_and(|v| !v.is_null())
    }
}

/// A client session with one MCP server.
///
/// Requests may run concurrently. When the server answers that the session is gone (404,
/// or a 400 saying "not initialized" / "missing session"; the SSE stream closing), the
/// client initializes a new session and retries the request once before reporting
/// [`McpError::SessionLost`].
#[derive(Debug)]
pub struct McpClient {
    url: String,
    uri: http::Uri,
    options: ClientOptions,
    http: HttpClient,
    next_id: AtomicU64,
    session: RwLock<Session>,
    notifications: broadcast::Sender<Notification>,
    /// Sessions the server lost and this client replaced.
    replaced: AtomicU64,
    /// Resources this client asked updates about on a 2026-07-28 server (kept across
    /// reconnections).
    watched: std::sync::Mutex<std::collections::BTreeSet<String>>,
    /// Requests under way now, and when the last one started or ended (ms since `born`):
    /// how busy and how idle it is, for a gateway that must let one of many go.
    in_flight: std::sync::atomic::AtomicU32,
    last_used: AtomicU64,
    born: std::time::Instant,
    /// What it declares at each handshake (taken out of `options`, shared with every
    /// client that declares the same).
    declared: Declared,
}

/// The capabilities and `clientInfo` a client declares, shared (see [`interned`]).
#[derive(Debug)]
struct Declared {
    capabilities: Arc<Value>,
    client_info: Arc<Value>,
}

impl Declared {
    /// What `options` say to declare; they keep no copy of their own.
    fn take_from(options: &mut ClientOptions) -> Declared {
        let capabilities = match options.capabilities.take() {
            Some(c) => c,
            None if options.relays_client_features => json!({"sampling": {}, "elicitation": {}}),
            None => json!({}),
        };
        let client_info = options.client_info.take().unwrap_or_else(
            || json!({"name": options.client_name, "version": env!("CARGO_PKG_VERSION")}),
        );
        Declared {
            capabilities: interned_value(capabilities),
            client_info: interned_value(client_info),
        }
    }
}

/// Counts a request as under way while it lives.
struct Busy<'a>(&'a McpClient);

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
        self.0.touch();
    }
}

#[derive(Debug)]
struct Session {
    transport: Transport,
    /// Shared with every session whose server said the same (see [`interned`]).
    info: Arc<ServerInfo>,
    /// Bumped per new session, so concurrent callers re-initialize only once.
    epoch: u64,
}

impl McpClient {
    /// Connects to `url` and initializes a session.
    pub async fn connect(url: &str, mut options: ClientOptions) -> Result<Self, McpError> {
        let uri = h::parse_url(url)?;
        // From here on `url` only names the server in messages: never with its secrets.
        let url = &crate::redact_url(url);
        let http = http_for(&options);
        let (notifications, _) = broadcast::channel(options.notification_buffer.max(1));
        let next_id = AtomicU64::new(1);
        let declared = Declared::take_from(&mut options);
        let session = open(
            url,
            &uri,
            &options,
            &declared,
            &http,
            &notifications,
            &next_id,
            0,
        )
        .await?;
        Ok(McpClient {
            url: url.to_string(),
            uri,
            options,
            http,
            next_id,
            session: RwLock::new(session),
            notifications,
            replaced: AtomicU64::new(0),
            watched: std::sync::Mutex::default(),
            in_flight: std::sync::atomic::AtomicU32::new(0),
            last_used: AtomicU64::new(0),
            born: std::time::Instant::now(),
            declared,
        })
    }

    /// A client of backend session `session_id`, opened earlier by another process
    /// (another replica) with the handshake `info` describes: no `initialize` is sent,
    /// requests carry the session from the first. If the server no longer knows it, the
    /// client initializes a new one on its own, as after any lost session. Streamable
    /// HTTP only: a legacy SSE session is its stream and cannot move.
    pub async fn resume(
        url: &str,
        mut options: ClientOptions,
        session_id: &str,
        info: ServerInfo,
    ) -> Result<Self, McpError> {
        let uri = h::parse_url(url)?;
        let url = &crate::redact_url(url);
        if options.transport != TransportKind::StreamableHttp {
            return Err(McpError::Protocol {
                url: url.to_string(),
                method: "resume".into(),
                detail: "only a streamable HTTP session can be resumed".into(),
            });
        }
        let http = http_for(&options);
        let (notifications, _) = broadcast::channel(options.notification_buffer.max(1));
        let transport = streamable(url, &uri, &options, &http, &notifications);
        transport.adopt(session_id);
        transport.initialized(&info.protocol_version, options.listen);
        // Another replica may use the same session at the same time: its ids count from
        // 1, these from somewhere far away, so no two requests in the session share one.
        let first_id = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| (u64::from(d.subsec_nanos()) << 24) | 1);
        let declared = Declared::take_from(&mut options);
        Ok(McpClient {
            url: url.to_string(),
            uri,
            options,
            http,
            next_id: AtomicU64::new(first_id),
            session: RwLock::new(Session {
                transport,
                info: interned(info),
                epoch: 0,
            }),
            notifications,
            replaced: AtomicU64::new(0),
            watched: std::sync::Mutex::default(),
            in_flight: std::sync::atomic::AtomicU32::new(0),
            last_used: AtomicU64::new(0),
            born: std::time::Instant::now(),
            declared,
        })
    }

    /// The server URL, credentials redacted (user information and secret-looking query
    /// values), as every message of this client names it.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// What the server said when the current session was initialized.
    pub async fn server_info(&self) -> Arc<ServerInfo> {
        self.session.read().await.info.clone()
    }

    /// Notifications the server sends from now on (`notifications/tools/list_changed`…).
    pub fn notifications(&self) -> broadcast::Receiver<Notification> {
        self.notifications.subscribe()
    }

    /// Sends `method` with `params` and returns the result, within the request timeout.
    pub async fn request(&self, method: &str, params: Option<Value>) -> Result<Value, McpError> {
        self.request_within(method, params, self.options.request_timeout)
            .await
    }

    /// Like [`request`](Self::request), with the server's own requests made while it
    /// answers (sampling, elicitation, on this request's stream) passed to `answering`.
    pub async fn request_answering(
        &self,
        method: &str,
        params: Option<Value>,
        answering: &ServerRequestHandler,
    ) -> Result<Value, McpError> {
        let hooks = CallHooks {
            requests: Some(answering.clone()),
            notifications: None,
        };
        self.request_hooked(method, params, &hooks).await
    }

    /// Like [`request`](Self::request), with what the server sends on this request's
    /// stream while it answers (its requests, its notifications) passed to `hooks`.
    pub async fn request_hooked(
        &self,
        method: &str,
        params: Option<Value>,
        hooks: &CallHooks,
    ) -> Result<Value, McpError> {
        self.request_inner(method, params, self.options.request_timeout, Some(hooks))
            .await
    }

    /// Whether this client speaks 2026-07-28 to its server, and whether the server gave it
    /// a session: one look at the current session, no copy of what the server said (for
    /// a gateway's request path).
    pub async fn era(&self) -> (bool, bool) {
        let session = self.session.read().await;
        (session.info.is_modern(), session.transport.has_session())
    }

    /// Whether the server gave this client a session (`Mcp-Session-Id`): a stateless
    /// server did not, and any client may share this one.
    pub async fn has_session(&self) -> bool {
        self.session.read().await.transport.has_session()
    }

    /// How many times the server lost this client's session and a new one replaced it.
    pub fn sessions_replaced(&self) -> u64 {
        self.replaced.load(Ordering::Relaxed)
    }

    /// The session id the server gave this client, if any (streamable HTTP).
    pub async fn session_id(&self) -> Option<String> {
        self.session.read().await.transport.session_id()
    }

    /// Holds the session's GET stream open for server notifications from now on (for a
    /// client made with `listen: false`).
    pub async fn listen(&self) {
        self.session.read().await.transport.listen();
    }

    /// Asks for `notifications/resources/updated` about `uri` (they arrive on
    /// [`notifications`](Self::notifications)): `resources/subscribe` on a session (with
    /// its GET stream opened), or on a 2026-07-28 server the URI joins the
    /// `resourceSubscriptions` of the `subscriptions/listen` stream this client keeps
    /// open.
    pub async fn subscribe_resource(&self, uri: &str) -> Result<(), McpError> {
        self.resource_interest(uri, true).await
    }

    /// Stops the updates [`subscribe_resource`](Self::subscribe_resource) asked for.
    pub async fn unsubscribe_resource(&self, uri: &str) -> Result<(), McpError> {
        self.resource_interest(uri, false).await
    }

    async fn resource_interest(&self, uri: &str, on: bool) -> Result<(), McpError> {
        let (modern, _) = self.era().await;
        if !modern {
            let method = if on {
                "resources/subscribe"
            } else {
                "resources/unsubscribe"
            };
            self.request(method, Some(json!({"uri": uri}))).await?;
            if on {
                self.listen().await;
            }
            return Ok(());
        }
        let uris = {
            let mut watched = self
                .watched
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let changed = if on {
                watched.insert(uri.to_string())
            } else {
                watched.remove(uri)
            };
            if !changed {
                return Ok(());
            }
            watched.clone()
        };
        self.session.read().await.transport.watch_resources(uris);
        Ok(())
    }

    fn watched_now(&self) -> std::collections::BTreeSet<String> {
        self.watched
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Like [`request`](Self::request) with a deadline of its own.
    pub async fn request_within(
        &self,
        method: &str,
        params: Option<Value>,
        timeout: Duration,
    ) -> Result<Value, McpError> {
        self.request_inner(method, params, timeout, None).await
    }

    /// Whether a request of this client is under way now.
    pub fn busy(&self) -> bool {
        self.in_flight.load(Ordering::Acquire) > 0
    }

    /// How long since a request of this client last started or ended.
    pub fn idle_for(&self) -> Duration {
        let last = Duration::from_millis(self.last_used.load(Ordering::Relaxed));
        self.born.elapsed().saturating_sub(last)
    }

    fn touch(&self) {
        let now = self.born.elapsed().as_millis() as u64;
        self.last_used.store(now, Ordering::Relaxed);
    }

    async fn request_inner(
        &self,
        method: &str,
        params: Option<Value>,
        timeout: Duration,
        hooks: Option<&CallHooks>,
    ) -> Result<Value, McpError> {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.touch();
        let _busy = Busy(self);
        let deadline = tokio::time::Instant::now() + timeout;
        let timed_out = || McpError::Timeout {
            url: self.url.clone(),
            method: method.into(),
            after: timeout,
        };
        let first =
            tokio::time::timeout_at(deadline, self.send(method, params.clone(), hooks)).await;
        let epoch = match first {
            Err(_) => return Err(timed_out()),
            Ok(Err((e, epoch))) if e.is_session_lost() => epoch,
            Ok(result) => return result.map_err(|(e, _)| e),
        };
        tracing::debug!(url = %self.url, method, "session lost; initializing a new one");
        let retry = async {
            self.reinitialize(epoch).await?;
            self.send(method, params, hooks).await.map_err(|(e, _)| e)
        };
        tokio::time::timeout_at(deadline, retry)
            .await
            .unwrap_or_else(|_| Err(timed_out()))
    }

    async fn send(
        &self,
        method: &str,
        params: Option<Value>,
        hooks: Option<&CallHooks>,
    ) -> Result<Value, (McpError, u64)> {
        let session = self.session.read().await;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        // Dropped before the answer (the caller gave up: its client cancelled or went
        // away, or its deadline passed): the server is told, on this session, under
        // this request's own id.
        let mut unanswered = Unanswered(Some((session.transport.canceller(), id)));
        let result = session
            .transport
            .request(id, method, params, hooks)
            .await
            .map_err(|e| (e, session.epoch));
        unanswered.0 = None;
        result
    }

    /// Opens a new session unless another caller already replaced session `epoch`.
    async fn reinitialize(&self, epoch: u64) -> Result<(), McpError> {
        let mut session = self.session.write().await;
        if session.epoch != epoch {
            return Ok(());
        }
        let fresh = open(
            &self.url,
            &self.uri,
            &self.options,
            &self.declared,
            &self.http,
            &self.notifications,
            &self.next_id,
            epoch + 1,
        )
        .await?;
        let watched = self.watched_now();
        if fresh.info.is_modern() && !watched.is_empty() {
            fresh.transport.watch_resources(watched);
        }
        let old = std::mem::replace(&mut *session, fresh);
        self.replaced.fetch_add(1, Ordering::Relaxed);
        old.transport.close().await;
        Ok(())
    }

    /// `ping`: an empty answer proves the session is alive. 2026-07-28 has no `ping`
    /// (nor sessions): `server/discover` proves the server answers.
    pub async fn ping(&self) -> Result<(), McpError> {
        let modern = self.session.read().await.info.protocol_version == MODERN_PROTOCOL_VERSION;
        let method = if modern { "server/discover" } else { "ping" };
        self.request(method, None).await.map(drop)
    }

    /// Every tool, following `nextCursor` through all pages.
    pub async fn list_tools(&self) -> Result<Vec<Value>, McpError> {
        self.list_all("tools/list", "tools").await
    }

    /// Every resource.
    pub async fn list_resources(&self) -> Result<Vec<Value>, McpError> {
        self.list_all("resources/list", "resources").await
    }

    /// Every resource template.
    pub async fn list_resource_templates(&self) -> Result<Vec<Value>, McpError> {
        self.list_all("resources/templates/list", "resourceTemplates")
            .await
    }

    /// Every prompt.
    pub async fn list_prompts(&self) -> Result<Vec<Value>, McpError> {
        self.list_all("prompts/list", "prompts").await
    }

    /// Calls tool `name` with `arguments`; the result may carry `isError: true`.
    pub async fn call_tool(&self, name: &str, arguments: Value) -> Result<Value, McpError> {
        self.request(
            "tools/call",
            Some(json!({"name": name, "arguments": arguments})),
        )
        .await
    }

    /// Reads resource `uri`.
    pub async fn read_resource(&self, uri: &str) -> Result<Value, McpError> {
        self.request("resources/read", Some(json!({"uri": uri})))
            .await
    }

    /// Gets prompt `name` with `arguments`.
    pub async fn get_prompt(&self, name: &str, arguments: Value) -> Result<Value, McpError> {
        self.request(
            "prompts/get",
            Some(json!({"name": name, "arguments": arguments})),
        )
        .await
    }

    /// Every item of list `method` (`field` in each page) as a caller that declared
    /// `capabilities` is shown them (servers list some tools only to clients that can
    /// serve them: roots, sampling, elicitation). On a 2026-07-28 connection they go in
    /// each request's `_meta`; a session's were declared at its `initialize`, so on one
    /// this is the session's own list. `None`: as this client itself.
    pub async fn list_for(
        &self,
        method: &str,
        field: &str,
        capabilities: Option<&Value>,
    ) -> Result<Vec<Value>, McpError> {
        self.list_pages(method, field, capabilities).await
    }

    async fn list_all(&self, method: &str, field: &str) -> Result<Vec<Value>, McpError> {
        self.list_pages(method, field, None).await
    }

    async fn list_pages(
        &self,
        method: &str,
        field: &str,
        capabilities: Option<&Value>,
    ) -> Result<Vec<Value>, McpError> {
        /// A server that keeps handing out cursors is broken; stop rather than loop.
        const MAX_PAGES: usize = 1000;
        let mut items = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let mut params = cursor.take().map(|c| json!({"cursor": c}));
            if let Some(capabilities) = capabilities {
                params.get_or_insert_with(|| json!({}))["_meta"] =
                    json!({"io.modelcontextprotocol/clientCapabilities": capabilities});
            }
            let page = self.request(method, params).await?;
            match page.get(field) {
                Some(Value::Array(list)) => {
                    if let Some(max) = self.options.max_list_items
                        && items.len() + list.len() > max
                    {
                        return Err(McpError::Protocol {
                            url: self.url.clone(),
                            method: method.into(),
                            detail: format!(
                                "the server lists more than {max} items (at least {}); hale takes at most {max}",
                                items.len() + list.len()
                            ),
                        });
                    }
                    items.extend(list.iter().cloned())
                }
                None | Some(Value::Null) => {}
                Some(_) => {
                    return Err(McpError::Protocol {
                        url: self.url.clone(),
                        method: method.into(),
                        detail: format!("\"{field}\" is not an array"),
                    });
                }
            }
            match page.get("nextCursor").and_then(Value::as_str) {
                Some(next) if !next.is_empty() => cursor = Some(next.to_string()),
                _ => return Ok(items),
            }
        }
        Err(McpError::Protocol {
            url: self.url.clone(),
            method: method.into(),
            detail: format!("more than {MAX_PAGES} pages"),
        })
    }

    /// Ends the session (DELETE on streamable HTTP) and stops listening.
    pub async fn close(&self) {
        self.session.read().await.transport.close().await;
    }
}

/// A request sent and not answered yet: dropped in that state, it cancels the request
/// at the server.
struct Unanswered(Option<(crate::transport::Canceller, u64)>);

impl Drop for Unanswered {
    fn drop(&mut self) {
        if let Some((canceller, id)) = self.0.take() {
            canceller.cancel(id);
        }
    }
}

/// The HTTP connections a client uses: its pool's, or its own (with its TLS settings),
/// carrying its credentials.
fn http_for(options: &ClientOptions) -> HttpClient {
    match &options.pool {
        Some(pool) => pool.0.clone(),
        None => h::client().with_tls(options.tls.clone().unwrap_or_default()),
    }
    .with_credentials(options.credentials.clone())
}

/// A streamable HTTP transport to `url`, with the client's list budget.
fn streamable(
    url: &str,
    uri: &http::Uri,
    options: &ClientOptions,
    http: &HttpClient,
    notifications: &broadcast::Sender<Notification>,
) -> Transport {
    let t = StreamableHttp::new(url, uri.clone(), http.clone(), notifications.clone());
    if let Some(StandaloneRequests(handler)) = &options.standalone_requests {
        t.answer_standalone(handler.clone());
    }
    if let Some(max) = options.max_list_items {
        // A byte budget goes with the item budget, so that a page far over it is refused
        // before it is parsed (8 KiB an item: generous for a tool with a large schema).
        t.limit_lists(max.saturating_mul(8 * 1024).min(h::MAX_BODY));
    }
    Transport::Streamable(t)
}

/// Connects a transport and runs the initialize handshake on it.
#[allow(clippy::too_many_arguments)] // one call site per way a session opens
async fn open(
    url: &str,
    uri: &http::Uri,
    options: &ClientOptions,
    declared: &Declared,
    http: &HttpClient,
    notifications: &broadcast::Sender<Notification>,
    next_id: &AtomicU64,
    epoch: u64,
) -> Result<Session, McpError> {
    let handshake = async {
        let transport = match options.transport {
            TransportKind::StreamableHttp => streamable(url, uri, options, http, notifications),
            TransportKind::Sse => Transport::Sse(Box::new(
                LegacySse::connect(url, uri.clone(), http.clone(), notifications.clone()).await?,
            )),
        };
        let capabilities = (*declared.capabilities).clone();
        let client_info = (*declared.client_info).clone();
        if options.era != Era::Legacy {
            let meta = json!({
                "io.modelcontextprotocol/protocolVersion": MODERN_PROTOCOL_VERSION,
                "io.modelcontextprotocol/clientInfo": client_info,
                "io.modelcontextprotocol/clientCapabilities": capabilities,
            });
            if transport.modern(Some(meta)) {
                let id = next_id.fetch_add(1, Ordering::Relaxed);
                match transport
                    .request(id, "server/discover", Some(json!({})), None)
                    .await
                {
                    Ok(result) if speaks_modern(&result) => {
                        if options.listen {
                            transport.listen();
                        }
                        return Ok(Session {
                            transport,
                            info: interned(discovered(result)),
                            epoch,
                        });
                    }
                    // Not there, or failing: initialize would not fare better.
                    Err(e) if fails_either_way(&e) => return Err(e),
                    answer if options.era == Era::Modern => {
                        return Err(McpError::Protocol {
                            url: url.into(),
                            method: "server/discover".into(),
                            detail: format!(
                                "the server does not speak {MODERN_PROTOCOL_VERSION}: {answer:?}"
                            ),
                        });
                    }
                    // A handshake-era server: fall back to initialize.
                    _ => {
                        transport.modern(None);
                    }
                }
            }
        }
        let params = json!({
            "protocolVersion": PROTOCOL_VERSIONS[0],
            "capabilities": capabilities,
            "clientInfo": client_info,
        });
        let id = next_id.fetch_add(1, Ordering::Relaxed);
        let result = transport
            .request(id, "initialize", Some(params), None)
            .await
            .map_err(|e| match e {
                // The server answers but refuses the handshake (an unsupported protocol
                // version, say): reachable, yet unusable. That is a protocol failure,
                // never a healthy server.
                McpError::Rpc {
                    url, code, message, ..
                } => McpError::Protocol {
                    url,
                    method: "initialize".into(),
                    detail: format!(
                        "the server refused the handshake with JSON-RPC error {code}: {message}"
                    ),
                },
                other => other,
            })?;
        let info = server_info(url, result)?;
        transport.notify("notifications/initialized").await?;
        transport.initialized(&info.protocol_version, options.listen);
        if options.listen && capabilities.get("roots").is_some() {
            // Servers ask for roots right after the handshake, outside any request:
            // the stream they ask on must be there first.
            transport.stream_ready(Duration::from_secs(2)).await;
        }
        Ok(Session {
            transport,
            info: interned(info),
            epoch,
        })
    };
    tokio::time::timeout(options.request_timeout, handshake)
        .await
        .unwrap_or_else(|_| {
            Err(McpError::Timeout {
                url: url.into(),
                method: "initialize".into(),
                after: options.request_timeout,
            })
        })
}

/// Whether a failed `server/discover` says the server is not there or failing (so the
/// handshake would fail too), rather than that it speaks an older era.
fn fails_either_way(e: &McpError) -> bool {
    match e {
        McpError::ConnectionRefused { .. }
        | McpError::Connect { .. }
        | McpError::ConnectionReset { .. }
        | McpError::Timeout { .. }
        | McpError::Unauthorized { .. }
        | McpError::RateLimited { .. } => true,
        McpError::HttpStatus { status, .. } => *status >= 500,
        _ => false,
    }
}

/// Whether a `server/discover` answer offers 2026-07-28.
fn speaks_modern(result: &Value) -> bool {
    result
        .get("supportedVersions")
        .and_then(Value::as_array)
        .is_some_and(|v| v.iter().any(|v| v == MODERN_PROTOCOL_VERSION))
}

/// What a `server/discover` answer says, as the handshake's answer would.
fn discovered(result: Value) -> ServerInfo {
    answered(
        MODERN_PROTOCOL_VERSION.into(),
        result,
        "/_meta/io.modelcontextprotocol~1serverInfo",
    )
}

/// What a server's answer (handshake or discover) says: capabilities, identity (found
/// at `identity`), instructions.
fn answered(protocol_version: String, mut result: Value, identity: &str) -> ServerInfo {
    ServerInfo {
        protocol_version,
        capabilities: result
            .get_mut("capabilities")
            .map(Value::take)
            .unwrap_or(json!({})),
        server_info: result
            .pointer_mut(identity)
            .map(Value::take)
            .unwrap_or(json!({})),
        instructions: result
            .get("instructions")
            .and_then(Value::as_str)
            .map(str::to_string),
    }
}

/// One shared copy of each distinct value of a kind, by a text key: a gateway holds
/// thousands of sessions whose servers said, and whose clients declared, the same, and a
/// parsed JSON object costs hundreds of bytes a map.
struct Interner<T>(
    std::sync::OnceLock<std::sync::Mutex<std::collections::HashMap<String, std::sync::Weak<T>>>>,
);

impl<T> Interner<T> {
    const fn new() -> Self {
        Interner(std::sync::OnceLock::new())
    }

    /// The shared copy of `value`, known by `key`.
    fn get(&self, key: String, value: T) -> Arc<T> {
        let mut known = self
            .0
            .get_or_init(Default::default)
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(shared) = known.get(&key).and_then(std::sync::Weak::upgrade) {
            return shared;
        }
        if known.len() >= 1024 {
            known.retain(|_, w| w.strong_count() > 0);
        }
        let shared = Arc::new(value);
        known.insert(key, Arc::downgrade(&shared));
        shared
    }
}

/// The shared copy of a server's `ServerInfo`.
fn interned(info: ServerInfo) -> Arc<ServerInfo> {
    static KNOWN: Interner<ServerInfo> = Interner::new();
    let key = format!(
        "{}\u{0}{}\u{0}{}\u{0}{:?}",
        info.protocol_version, info.capabilities, info.server_info, info.instructions
    );
    KNOWN.get(key, info)
}

/// The shared copy of a value a client declares (capabilities, `clientInfo`).
fn interned_value(value: Value) -> Arc<Value> {
    static KNOWN: Interner<Value> = Interner::new();
    KNOWN.get(value.to_string(), value)
}

fn server_info(url: &str, result: Value) -> Result<ServerInfo, McpError> {
    let bad = |detail: String| McpError::Protocol {
        url: url.into(),
        method: "initialize".into(),
        detail,
    };
    let version = result
        .get("protocolVersion")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("the answer has no protocolVersion".into()))?
        .to_string();
    if !PROTOCOL_VERSIONS.contains(&version.as_str()) {
        return Err(bad(format!(
            "the server speaks protocol {version}; hale speaks {}",
            PROTOCOL_VERSIONS.join(", ")
        )));
    }
    Ok(answered(version, result, "/serverInfo"))
}
