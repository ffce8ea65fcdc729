//! Legacy-era client sessions: what `initialize` opens and `Mcp-Session-Id` names.
//!
//! A session holds what its client negotiated, the stream its notifications go to (the
//! GET stream), the requests hale asked it and awaits (sampling, elicitation), and the
//! resources it watches through shared clients. It is the [`Owner`] of its backend
//! sessions, which each upstream keeps (opened on first use). Nothing here is shared
//! between clients: one client's lock never slows another's call.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hale_mcp::{Notification, ServerRequestError};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

use crate::message;
use crate::store::{Event, RedisStore, Resumable};
use crate::upstream::{BackendSession, Owner};

/// The answer a client gave to one of our requests.
pub(crate) type Answer = Result<Value, ServerRequestError>;

/// One client session.
pub(crate) struct ClientSession {
    pub(crate) id: String,
    pub(crate) protocol_version: String,
    pub(crate) capabilities: Value,
    /// Its capabilities as a profile: what backends list to it.
    pub(crate) profile: crate::upstream::Profile,
    /// Who holds it, for the per-identity share of the session limit: the caller's
    /// `sub`, or an anonymous caller's address.
    pub(crate) identity: Arc<str>,
    pub(crate) client_info: Value,
    /// The caller who opened it (`None`: anonymous); requests from anyone else are
    /// answered as if the session did not exist.
    pub(crate) owner: Option<Arc<str>>,
    log_level: Mutex<Option<Value>>,
    /// The GET stream's sender, while one is open.
    stream: Mutex<Option<mpsc::Sender<Bytes>>>,
    /// Our requests to this client awaiting its answer, by our request id.
    asked: Mutex<HashMap<String, oneshot::Sender<Answer>>>,
    /// Its requests in progress, by their id (as JSON text): what its
    /// `notifications/cancelled` stops.
    calls: Mutex<HashMap<String, tokio_util::sync::CancellationToken>>,
    next_ask: AtomicU64,
    /// When the client last sent anything (ms since `epoch`).
    last_seen: AtomicU64,
    epoch: Instant,
    /// Resources it subscribed to through shared clients (by the URI it knows).
    watched: Mutex<HashSet<String>>,
    /// Its backend sessions, by backend (what the store keeps).
    backends: Mutex<std::collections::BTreeMap<String, BackendSession>>,
    /// The shared store, when sessions outlive this replica.
    store: Option<Arc<RedisStore>>,
    /// When its TTL in the store was last renewed (ms since `epoch`).
    renewed: AtomicU64,
}

impl std::fmt::Debug for ClientSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientSession")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// A client request in progress on its session (see [`ClientSession::start_call`]).
pub(crate) struct InProgress {
    session: Arc<ClientSession>,
    key: String,
    token: tokio_util::sync::CancellationToken,
}

impl InProgress {
    /// Resolves when the client cancels this request.
    pub(crate) async fn cancelled(&self) {
        self.token.cancelled().await;
    }
}

impl Drop for InProgress {
    fn drop(&mut self) {
        // (Request ids are unique among a session's requests in progress.)
        lock(&self.session.calls).remove(&self.key);
    }
}

/// How long a backend's request outside any call waits for the client's answer.
const ASK_PATIENCE: std::time::Duration = std::time::Duration::from_secs(60);

/// How many notifications may wait for a slow GET stream before new ones are dropped.
const STREAM_QUEUE: usize = 256;

impl ClientSession {
    pub(crate) fn new(
        protocol_version: String,
        capabilities: Value,
        client_info: Value,
        owner: Option<Arc<str>>,
    ) -> Self {
        Self::with_id(new_id(), protocol_version, capabilities, client_info, owner)
    }

    fn with_id(
        id: String,
        protocol_version: String,
        capabilities: Value,
        client_info: Value,
        owner: Option<Arc<str>>,
    ) -> Self {
        let epoch = Instant::now();
        ClientSession {
            id,
            protocol_version,
            profile: crate::upstream::Profile::of(&capabilities),
            identity: Arc::from(owner.as_deref().unwrap_or("-")),
            capabilities,
            client_info,
            owner,
            log_level: Mutex::new(None),
            stream: Mutex::new(None),
            asked: Mutex::new(HashMap::new()),
            calls: Mutex::default(),
            next_ask: AtomicU64::new(1),
            last_seen: AtomicU64::new(0),
            epoch,
            watched: Mutex::new(HashSet::new()),
            backends: Mutex::default(),
            store: None,
            renewed: AtomicU64::new(0),
        }
    }

    /// Registers request `id` as in progress: the returned call ends when the client
    /// cancels it (`notifications/cancelled`), and unregisters itself when dropped.
    pub(crate) fn start_call(self: &Arc<Self>, id: &Value) -> InProgress {
        let key = id.to_string();
        let token = tokio_util::sync::CancellationToken::new();
        lock(&self.calls).insert(key.clone(), token.clone());
        InProgress {
            session: self.clone(),
            key,
            token,
        }
    }

    /// The client cancelled request `id` (if it is still in progress here).
    pub(crate) fn cancel_call(&self, id: &Value) {
        if let Some(token) = lock(&self.calls).remove(&id.to_string()) {
            token.cancel();
        }
    }

    /// The session held by `identity` (see [`ClientSession::identity`]).
    pub(crate) fn held_by(mut self, identity: Arc<str>) -> Self {
        self.identity = identity;
        self
    }

    /// Whether it may be ended to make room: no request of it in progress, and no GET
    /// stream open (its client is there, listening).
    fn evictable(&self) -> bool {
        lock(&self.calls).is_empty()
            && lock(&self.stream)
                .as_ref()
                .is_none_or(mpsc::Sender::is_closed)
    }

    /// The session kept in `store` (its TTL renewed as it is used, its backend sessions
    /// recorded as they open).
    pub(crate) fn stored_in(mut self, store: Option<Arc<RedisStore>>) -> Self {
        self.store = store;
        self
    }

    /// Session `id` as another replica (or this one before a restart) left it.
    pub(crate) fn resumed(id: &str, state: Resumable, store: Arc<RedisStore>) -> Self {
        let mut s = Self::with_id(
            id.to_string(),
            state.protocol_version,
            state.capabilities,
            state.client_info,
            state.owner.map(Arc::from),
        );
        *lock(&s.log_level) = state.log_level;
        *lock(&s.watched) = state.subscriptions.into_iter().collect();
        *lock(&s.backends) = state.backend_sessions;
        s.store = Some(store);
        s
    }

    /// Its state as the store keeps it.
    pub(crate) fn state(&self) -> Resumable {
        Resumable {
            protocol_version: self.protocol_version.clone(),
            capabilities: self.capabilities.clone(),
            client_info: self.client_info.clone(),
            owner: self.owner.as_deref().map(str::to_string),
            log_level: lock(&self.log_level).clone(),
            backend_sessions: lock(&self.backends).clone(),
            subscriptions: lock(&self.watched).iter().cloned().collect(),
        }
    }

    /// Writes its state to the store (if any); the error if that failed.
    pub(crate) async fn persist(&self) -> Result<(), crate::store::StoreError> {
        match &self.store {
            Some(store) => store.save(&self.id, &self.state()).await,
            None => Ok(()),
        }
    }

    /// Whether it lives in a shared store.
    pub(crate) fn is_stored(&self) -> bool {
        self.store.is_some()
    }

    /// Marks the session as used now; in a shared store its TTL is renewed too (at
    /// most once per `every`, without waiting).
    pub(crate) fn touch(&self) {
        let ms = self.epoch.elapsed().as_millis() as u64;
        self.last_seen.store(ms, Ordering::Relaxed);
        if let Some(store) = &self.store {
            let every = (store.ttl().as_millis() as u64 / 10).max(1000);
            let last = self.renewed.load(Ordering::Relaxed);
            if ms.saturating_sub(last) >= every
                && self
                    .renewed
                    .compare_exchange(last, ms.max(1), Ordering::AcqRel, Ordering::Relaxed)
                    .is_ok()
            {
                let (store, id) = (store.clone(), self.id.clone());
                tokio::spawn(async move {
                    let _ = store.touch(&id).await;
                });
                // (A missing key makes the store ask for every held session to be
                // written again: `Edge::rewrite_sessions`.)
            }
        }
    }

    /// When it was last used, in ms on one clock for every session (for ordering).
    /// How long ago the session began (here: a session taken over from another
    /// replica counts from then).
    pub(crate) fn age(&self) -> Duration {
        self.epoch.elapsed()
    }

    fn epoch_ms(&self) -> u64 {
        static ORIGIN: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
        let origin = *ORIGIN.get_or_init(Instant::now);
        self.epoch.saturating_duration_since(origin).as_millis() as u64
    }

    fn idle_for(&self, now: Instant) -> Duration {
        let seen = self.epoch + Duration::from_millis(self.last_seen.load(Ordering::Relaxed));
        now.saturating_duration_since(seen)
    }

    /// Opens the GET stream: notifications go there from now on (a second GET replaces
    /// the first).
    pub(crate) fn open_stream(&self) -> mpsc::Receiver<Bytes> {
        let (tx, rx) = mpsc::channel(STREAM_QUEUE);
        *lock(&self.stream) = Some(tx);
        rx
    }

    /// Sends a message on the GET stream; false when none is open (or it is full).
    pub(crate) fn send(&self, message: Bytes) -> bool {
        let mut stream = lock(&self.stream);
        match stream.as_ref().map(|tx| tx.try_send(message)) {
            Some(Ok(())) => true,
            Some(Err(mpsc::error::TrySendError::Closed(_))) => {
                *stream = None;
                false
            }
            _ => false,
        }
    }

    /// A new id for a request of ours to this client, and where its answer will arrive.
    pub(crate) fn ask(&self) -> (String, oneshot::Receiver<Answer>) {
        let id = format!("hale-{}", self.next_ask.fetch_add(1, Ordering::Relaxed));
        let (tx, rx) = oneshot::channel();
        lock(&self.asked).insert(id.clone(), tx);
        (id, rx)
    }

    /// Forgets a request of ours that nobody waits for any more.
    pub(crate) fn forget(&self, id: &str) {
        lock(&self.asked).remove(id);
    }

    /// Delivers the client's answer to request `id`; false if nobody asked.
    pub(crate) fn answered(&self, id: &Value, outcome: Result<Value, Value>) -> bool {
        let Some(id) = id.as_str() else { return false };
        let Some(tx) = lock(&self.asked).remove(id) else {
            return false;
        };
        let answer = outcome.map_err(|e| ServerRequestError {
            code: e.get("code").and_then(Value::as_i64).unwrap_or(-32603),
            message: e
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("the client refused")
                .to_string(),
        });
        tx.send(answer).is_ok()
    }

    /// Whether it watches `uri` through a shared client.
    pub(crate) fn watches(&self, uri: &str) -> bool {
        lock(&self.watched).contains(uri)
    }

    /// The session's resumable state, with `backend_sessions` as the backends have
    /// them now.
    pub(crate) fn resumable(
        &self,
        backend_sessions: std::collections::BTreeMap<String, BackendSession>,
    ) -> Resumable {
        Resumable {
            backend_sessions,
            ..self.state()
        }
    }
}

impl Owner for ClientSession {
    fn ask_outside_calls(
        self: Arc<Self>,
        request: hale_mcp::ServerRequest,
    ) -> hale_mcp::ServerRequestFuture {
        Box::pin(async move {
            let (id, answer) = self.ask();
            let params = request.params.unwrap_or_else(|| serde_json::json!({}));
            if !self.send(message::request(&id, &request.method, &params)) {
                self.forget(&id);
                return Err(ServerRequestError {
                    code: -32603,
                    message: format!(
                        "{}: the client has no stream open to be asked on",
                        request.method
                    ),
                });
            }
            let answer = tokio::time::timeout(ASK_PATIENCE, answer).await;
            self.forget(&id);
            match answer {
                Ok(Ok(answer)) => answer,
                _ => Err(ServerRequestError {
                    code: -32603,
                    message: format!("the client did not answer {}", request.method),
                }),
            }
        })
    }

    fn id(&self) -> &str {
        &self.id
    }

    fn capabilities(&self) -> &Value {
        &self.capabilities
    }

    fn client_info(&self) -> &Value {
        &self.client_info
    }

    fn log_level(&self) -> Option<Value> {
        lock(&self.log_level).clone()
    }

    fn set_log_level(&self, level: Value) {
        *lock(&self.log_level) = Some(level);
        self.save_later();
    }

    fn watch_shared(&self, uri: &str, on: bool) {
        {
            let mut watched = lock(&self.watched);
            if on {
                watched.insert(uri.to_string());
            } else {
                watched.remove(uri);
            }
        }
        self.save_later();
    }

    fn notify(&self, note: Notification) {
        let params = note.params.unwrap_or_else(|| serde_json::json!({}));
        let message = message::notification(&note.method, &params);
        if self.send(message.clone()) {
            return;
        }
        // Its stream may be open on another replica: tell them all.
        if let Some(store) = &self.store {
            let event = Event::Notify {
                session: self.id.clone(),
                message: serde_json::from_slice(&message).unwrap_or_default(),
                from: store.replica.clone(),
            };
            let store = store.clone();
            tokio::spawn(async move {
                let _ = store.publish(&event).await;
            });
        }
    }

    fn resumed<'a>(
        &'a self,
        backend: &'a str,
    ) -> futures_util::future::BoxFuture<'a, Option<BackendSession>> {
        Box::pin(async move {
            // Only a session in the shared store has backend sessions elsewhere.
            let store = self.store.as_ref()?;
            if let Some(known) = lock(&self.backends).get(backend) {
                return Some(known.clone());
            }
            // Another replica may have opened one since this copy was made: the store
            // knows (one read, only when this replica is about to open its own).
            let stored = store.load(&self.id).await.ok()??;
            let found = stored.backend_sessions.get(backend).cloned()?;
            lock(&self.backends).insert(backend.to_string(), found.clone());
            Some(found)
        })
    }

    fn opened(
        &self,
        backend: &str,
        session: BackendSession,
    ) -> futures_util::future::BoxFuture<'_, ()> {
        let changed =
            lock(&self.backends).insert(backend.to_string(), session.clone()) != Some(session);
        Box::pin(async move {
            // Before the call that opened it answers: the client's next request may go to
            // any replica, which must find this backend session.
            if !changed {
                return;
            }
            // This copy may not know backend sessions other replicas recorded since:
            // keep theirs for the other backends.
            if let Some(store) = &self.store
                && let Ok(Some(stored)) = store.load(&self.id).await
            {
                let mut backends = lock(&self.backends);
                for (name, session) in stored.backend_sessions {
                    backends.entry(name).or_insert(session);
                }
            }
            let _ = self.persist().await;
        })
    }
}

impl ClientSession {
    /// Saves its state in the background (a change nobody waits for).
    fn save_later(&self) {
        if let Some(store) = &self.store {
            let (store, id, state) = (store.clone(), self.id.clone(), self.state());
            tokio::spawn(async move {
                let _ = store.save(&id, &state).await;
            });
        }
    }
}

/// Every open client session, by id.
#[derive(Default)]
pub(crate) struct Sessions {
    map: RwLock<HashMap<String, Arc<ClientSession>>>,
}

impl Sessions {
    #[cfg(test)]
    pub(crate) fn insert(&self, session: Arc<ClientSession>) {
        write(&self.map).insert(session.id.clone(), session);
    }

    /// Inserts `session` unless one with its id is held already; the one held.
    pub(crate) fn insert_or_get(&self, session: Arc<ClientSession>) -> Arc<ClientSession> {
        write(&self.map)
            .entry(session.id.clone())
            .or_insert(session)
            .clone()
    }

    pub(crate) fn get(&self, id: &str) -> Option<Arc<ClientSession>> {
        read(&self.map).get(id).cloned()
    }

    pub(crate) fn remove(&self, id: &str) -> Option<Arc<ClientSession>> {
        write(&self.map).remove(id)
    }

    /// Every session, for notifications that go to all.
    pub(crate) fn all(&self) -> Vec<Arc<ClientSession>> {
        read(&self.map).values().cloned().collect()
    }

    pub(crate) fn len(&self) -> usize {
        read(&self.map).len()
    }

    /// Removes and returns the sessions idle for `idle` or longer at `now`.
    /// Holds `session` within `max_identity` sessions per identity and `max_total` in
    /// all, in one step: at either limit the idlest session that may go (its own
    /// caller's first, for the share) is taken out and returned with the limit that took
    /// it, for the caller to end; `Err(limit)` (and not held) when every session that
    /// would have to go is busy.
    pub(crate) fn make_room_for(
        &self,
        session: Arc<ClientSession>,
        max_total: usize,
        max_identity: usize,
    ) -> Result<Vec<(Arc<ClientSession>, &'static str)>, &'static str> {
        let now = Instant::now();
        let identity = session.identity.clone();
        let identity = identity.as_ref();
        let mut map = write(&self.map);
        let mut out = Vec::new();
        let idlest = |map: &HashMap<String, Arc<ClientSession>>, mine: bool| {
            map.iter()
                .filter(|(_, s)| !mine || &*s.identity == identity)
                .filter(|(_, s)| s.evictable())
                .max_by_key(|(_, s)| s.idle_for(now))
                .map(|(id, _)| id.clone())
        };
        let held = map.values().filter(|s| &*s.identity == identity).count();
        if held >= max_identity {
            let limit = "operational.maxSessionsPerIdentity";
            let id = idlest(&map, true).ok_or(limit)?;
            out.extend(map.remove(&id).map(|s| (s, limit)));
        }
        if map.len() >= max_total {
            let limit = "operational.maxClientSessions";
            let id = idlest(&map, false).ok_or(limit)?;
            out.extend(map.remove(&id).map(|s| (s, limit)));
        }
        map.insert(session.id.clone(), session);
        Ok(out)
    }

    pub(crate) fn expire(&self, now: Instant, idle: Duration) -> Vec<Arc<ClientSession>> {
        let mut map = write(&self.map);
        let expired: Vec<String> = map
            .iter()
            .filter(|(_, s)| s.idle_for(now) >= idle)
            .map(|(id, _)| id.clone())
            .collect();
        expired.iter().filter_map(|id| map.remove(id)).collect()
    }

    /// Removes and returns the `n` sessions idle longest.
    pub(crate) fn evict_idlest(&self, n: usize) -> Vec<Arc<ClientSession>> {
        let mut map = write(&self.map);
        let mut by_idle: Vec<(u64, String)> = map
            .iter()
            .map(|(id, s)| {
                (
                    s.last_seen.load(Ordering::Relaxed) + s.epoch_ms(),
                    id.clone(),
                )
            })
            .collect();
        by_idle.sort_unstable();
        by_idle
            .into_iter()
            .take(n)
            .filter_map(|(_, id)| map.remove(&id))
            .collect()
    }

    /// Removes every session (shutdown).
    pub(crate) fn drain(&self) -> Vec<Arc<ClientSession>> {
        write(&self.map).drain().map(|(_, s)| s).collect()
    }
}

/// 128 random bits from the operating system, as 32 hex digits.
fn new_id() -> String {
    let mut bytes = [0u8; 16];
    if getrandom::fill(&mut bytes).is_err() {
        // No OS randomness: still unique, though guessable; say so loudly.
        tracing::error!("no random numbers from the operating system: session ids are guessable");
        let n = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        bytes = n.to_le_bytes();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn read<T>(m: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    m.read().unwrap_or_else(PoisonError::into_inner)
}

fn write<T>(m: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    m.write().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_128_random_bits_and_differ() {
        let a = ClientSession::new("2025-06-18".into(), Value::Null, Value::Null, None);
        let b = ClientSession::new("2025-06-18".into(), Value::Null, Value::Null, None);
        assert_eq!(a.id.len(), 32);
        assert!(a.id.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a.id, b.id);
    }

    #[test]
    fn idle_sessions_expire_and_used_ones_stay() {
        let sessions = Sessions::default();
        let idle = Arc::new(ClientSession::new(
            "v".into(),
            Value::Null,
            Value::Null,
            None,
        ));
        let busy = Arc::new(ClientSession::new(
            "v".into(),
            Value::Null,
            Value::Null,
            None,
        ));
        sessions.insert(idle.clone());
        sessions.insert(busy.clone());
        let later = Instant::now() + Duration::from_secs(120);
        busy.last_seen.store(110_000, Ordering::Relaxed);
        let expired = sessions.expire(later, Duration::from_secs(60));
        assert_eq!(expired.len(), 1);
        assert_eq!(expired[0].id, idle.id);
        assert!(sessions.get(&busy.id).is_some());
    }

    #[test]
    fn the_idlest_copies_go_first() {
        let sessions = Sessions::default();
        let all: Vec<_> = (0..4)
            .map(|_| {
                Arc::new(ClientSession::new(
                    "v".into(),
                    Value::Null,
                    Value::Null,
                    None,
                ))
            })
            .collect();
        for (i, s) in all.iter().enumerate() {
            sessions.insert(s.clone());
            s.last_seen.store(1000 * (i as u64 + 1), Ordering::Relaxed);
        }
        // The first was used last.
        all[0].last_seen.store(60_000, Ordering::Relaxed);
        let gone: Vec<String> = sessions
            .evict_idlest(2)
            .into_iter()
            .map(|s| s.id.clone())
            .collect();
        assert_eq!(gone, [all[1].id.clone(), all[2].id.clone()]);
        assert_eq!(sessions.len(), 2);
        assert!(sessions.get(&all[0].id).is_some());
    }

    #[tokio::test]
    async fn a_clients_answer_reaches_the_request_that_asked() {
        let s = ClientSession::new("v".into(), Value::Null, Value::Null, None);
        let (id, rx) = s.ask();
        assert!(s.answered(&Value::String(id), Ok(serde_json::json!({"ok": true}))));
        assert_eq!(rx.await.unwrap().unwrap()["ok"], true);
        assert!(!s.answered(&Value::String("hale-99".into()), Ok(Value::Null)));
    }
}
