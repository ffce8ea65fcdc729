//! Sessions in Redis: `GETEX`/`SET … EX`/`EXPIRE`/`DEL` on `{keyPrefix}session:{id}`, and
//! `PUBLISH`/`SUBSCRIBE` on `{keyPrefix}events`. Every operation is bounded by
//! `sessionStorage.timeout`; a Redis that is down or slow fails the operation, never
//! the process (the connection is made again in the background).

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{ConnectionAddr, IntoConnectionInfo, RedisConnectionInfo};
use tokio_util::sync::CancellationToken;

use super::{Event, Resumable, StoreError, decode, encode, record};
use crate::config::RedisSettings;

/// The shared store.
pub(crate) struct RedisStore {
    settings: RedisSettings,
    /// The sliding TTL of a session.
    ttl: Duration,
    client: redis::Client,
    connection: tokio::sync::OnceCell<ConnectionManager>,
    /// The first connection attempt is over (whatever came of it).
    tried: std::sync::atomic::AtomicBool,
    /// This replica, in the events it publishes.
    pub(crate) replica: String,
    /// The last operation failed (Redis unreachable, restarting, or slow).
    failing: std::sync::atomic::AtomicBool,
    /// Signalled when Redis may have lost sessions this replica holds (it is reachable
    /// again after failing, or a session's key was missing): they are written again.
    pub(crate) rewrite: tokio::sync::Notify,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("address", &self.settings.address)
            .finish_non_exhaustive()
    }
}

impl RedisStore {
    /// The store at `settings` (nothing is connected yet).
    pub(crate) fn new(settings: RedisSettings, ttl: Duration) -> Result<Arc<Self>, String> {
        let (host, port) = settings
            .address
            .rsplit_once(':')
            .and_then(|(h, p)| Some((h.trim_matches(['[', ']']).to_string(), p.parse().ok()?)))
            .ok_or_else(|| {
                format!(
                    "sessionStorage.address: expected host:port, got {:?}",
                    settings.address
                )
            })?;
        let mut redis = RedisConnectionInfo::default().set_db(i64::from(settings.db));
        if let Some(password) = &settings.password {
            redis = redis.set_password(&password.0);
        }
        let info = ConnectionAddr::Tcp(host, port)
            .into_connection_info()
            .map_err(|e| format!("sessionStorage.address: {e}"))?
            .set_redis_settings(redis);
        let client = redis::Client::open(info).map_err(|e| format!("sessionStorage: {e}"))?;
        let mut id = [0u8; 8];
        let _ = getrandom::fill(&mut id);
        Ok(Arc::new(RedisStore {
            settings,
            ttl,
            client,
            connection: tokio::sync::OnceCell::new(),
            tried: std::sync::atomic::AtomicBool::new(false),
            replica: id.iter().map(|b| format!("{b:02x}")).collect(),
            failing: std::sync::atomic::AtomicBool::new(false),
            rewrite: tokio::sync::Notify::new(),
        }))
    }

    /// Connects, retrying with a growing pause until it succeeds or `stop`: while Redis
    /// is unreachable, operations fail at once with a clear error.
    pub(crate) async fn connect(self: Arc<Self>, stop: CancellationToken) {
        let mut pause = Duration::from_millis(200);
        loop {
            let config = ConnectionManagerConfig::new()
                .set_connection_timeout(Some(self.settings.timeout))
                .set_response_timeout(Some(self.settings.timeout))
                .set_number_of_retries(2)
                // Back soon after Redis is: a restart must not refuse new sessions
                // (-31009) for seconds after it answers again.
                .set_max_delay(Duration::from_millis(500));
            let attempt = tokio::select! {
                a = self.client.get_connection_manager_with_config(config) => a,
                () = stop.cancelled() => return,
            };
            let done = |store: &Self| {
                store
                    .tried
                    .store(true, std::sync::atomic::Ordering::Release)
            };
            match attempt {
                Ok(manager) => {
                    let _ = self.connection.set(manager);
                    done(&self);
                    tracing::info!(address = %self.settings.address, "connected to the session store");
                    return;
                }
                Err(e) => {
                    done(&self);
                    tracing::warn!(address = %self.settings.address, error = %e, retry_in = ?pause, "cannot reach the session store; sessions stay on this replica until it can");
                }
            }
            tokio::select! {
                () = tokio::time::sleep(pause) => {}
                () = stop.cancelled() => return,
            }
            pause = (pause * 2).min(Duration::from_secs(10));
        }
    }

    fn key(&self, id: &str) -> String {
        format!("{}session:{id}", self.settings.key_prefix)
    }

    fn channel(&self) -> String {
        format!("{}events", self.settings.key_prefix)
    }

    fn ttl_secs(&self) -> u64 {
        self.ttl.as_secs().max(1)
    }

    /// Runs `cmd` within the timeout.
    async fn run<T: redis::FromRedisValue>(
        &self,
        op: &'static str,
        cmd: &redis::Cmd,
    ) -> Result<T, StoreError> {
        let started = Instant::now();
        let result = match self.connection.get() {
            None => Err(StoreError(format!(
                "Redis at {} is not reachable yet",
                self.settings.address
            ))),
            Some(manager) => {
                let mut manager = manager.clone();
                match tokio::time::timeout(
                    self.settings.timeout,
                    cmd.query_async::<T>(&mut manager),
                )
                .await
                {
                    Ok(Ok(v)) => Ok(v),
                    Ok(Err(e)) => Err(StoreError(format!(
                        "Redis at {}: {}",
                        self.settings.address, e
                    ))),
                    Err(_) => Err(StoreError(format!(
                        "Redis at {} did not answer within {:?}",
                        self.settings.address, self.settings.timeout
                    ))),
                }
            }
        };
        record(op, started, &result);
        let failed = result.is_err();
        let was = self
            .failing
            .swap(failed, std::sync::atomic::Ordering::AcqRel);
        if was && !failed {
            // It may have restarted empty: what this replica holds is written again.
            tracing::info!(address = %self.settings.address, "the session store is reachable again; the sessions this replica holds are written to it again");
            self.rewrite.notify_one();
        }
        result
    }

    /// Session `id`'s state, its TTL renewed (`GETEX`).
    pub(crate) async fn load(&self, id: &str) -> Result<Option<Resumable>, StoreError> {
        let text: Option<String> = self
            .run(
                "load",
                redis::cmd("GETEX")
                    .arg(self.key(id))
                    .arg("EX")
                    .arg(self.ttl_secs()),
            )
            .await?;
        text.map(|t| decode(&t)).transpose()
    }

    /// Stores session `id`'s state with a fresh TTL.
    pub(crate) async fn save(&self, id: &str, state: &Resumable) -> Result<(), StoreError> {
        self.run::<()>(
            "save",
            redis::cmd("SET")
                .arg(self.key(id))
                .arg(encode(state))
                .arg("EX")
                .arg(self.ttl_secs()),
        )
        .await
    }

    /// Renews session `id`'s TTL; false if its key is gone (Redis lost it: a restart
    /// without persistence, an eviction), and then every held session is written again.
    pub(crate) async fn touch(&self, id: &str) -> Result<bool, StoreError> {
        let renewed = self
            .run::<i64>(
                "touch",
                redis::cmd("EXPIRE").arg(self.key(id)).arg(self.ttl_secs()),
            )
            .await?
            == 1;
        if !renewed {
            tracing::info!(address = %self.settings.address, "a session's key was missing in the session store (Redis lost it); the sessions this replica holds are written again");
            self.rewrite.notify_one();
        }
        Ok(renewed)
    }

    /// Forgets session `id`.
    pub(crate) async fn delete(&self, id: &str) -> Result<(), StoreError> {
        self.run::<i64>("delete", redis::cmd("DEL").arg(self.key(id)))
            .await
            .map(drop)
    }

    /// Tells every replica.
    pub(crate) async fn publish(&self, event: &Event) -> Result<(), StoreError> {
        let text = serde_json::to_string(event).unwrap_or_default();
        self.run::<i64>(
            "publish",
            redis::cmd("PUBLISH").arg(self.channel()).arg(text),
        )
        .await
        .map(drop)
    }

    /// Hears what other replicas publish until `stop`, subscribing again after Redis
    /// comes back.
    pub(crate) async fn listen(
        self: Arc<Self>,
        on: impl Fn(Event) + Send,
        stop: CancellationToken,
    ) {
        let mut pause = Duration::from_millis(200);
        let mut lost = false;
        loop {
            let subscribed = async {
                let mut pubsub = self.client.get_async_pubsub().await?;
                pubsub.subscribe(self.channel()).await?;
                Ok::<_, redis::RedisError>(pubsub)
            };
            let subscribed = tokio::select! {
                s = tokio::time::timeout(self.settings.timeout.max(Duration::from_secs(2)), subscribed) => s,
                () = stop.cancelled() => return,
            };
            match subscribed {
                Ok(Ok(pubsub)) => {
                    pause = Duration::from_millis(200);
                    if std::mem::take(&mut lost) {
                        // The channel came back: Redis restarted (maybe empty) or the
                        // network healed. What this replica holds is written again now,
                        // not at each session's next renewal (minutes away).
                        tracing::info!(address = %self.settings.address, "the session store is reachable again; the sessions this replica holds are written to it again");
                        self.rewrite.notify_one();
                    }
                    let mut messages = pubsub.into_on_message();
                    loop {
                        let message = tokio::select! {
                            m = messages.next() => m,
                            () = stop.cancelled() => return,
                        };
                        let Some(message) = message else { break };
                        let Ok(text) = message.get_payload::<String>() else {
                            continue;
                        };
                        match serde_json::from_str::<Event>(&text) {
                            Ok(event) => on(event),
                            Err(e) => {
                                tracing::debug!(error = %e, "an event on the session channel could not be read")
                            }
                        }
                    }
                    tracing::warn!(address = %self.settings.address, "the session store's event channel closed; subscribing again");
                    lost = true;
                }
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, "cannot subscribe to the session store's events");
                    lost = true;
                }
                Err(_) => lost = true,
            }
            tokio::select! {
                () = tokio::time::sleep(pause) => {}
                () = stop.cancelled() => return,
            }
            pause = (pause * 2).min(Duration::from_secs(10));
        }
    }

    /// A session's sliding TTL.
    pub(crate) fn ttl(&self) -> Duration {
        self.ttl
    }

    /// The address, for `/status`.
    pub(crate) fn address(&self) -> &str {
        &self.settings.address
    }

    /// Whether the first connection attempt is over.
    pub(crate) fn tried(&self) -> bool {
        self.tried.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Whether a connection was made.
    pub(crate) fn connected(&self) -> bool {
        self.connection.get().is_some()
    }
}
