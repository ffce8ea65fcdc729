//! An issuer's signing keys, cached: fetched at start (retried with backoff until they
//! come), refreshed every [`REFRESH_EVERY`], and fetched again when a token names a key
//! the cache lacks, at most once per [`ON_DEMAND_EVERY`] however many such tokens
//! arrive. A request never waits for a fetch except that one on-demand refresh.

use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::fetch::Fetcher;
use super::jwt::KeySet;

/// Keys are fetched again this often even when nothing asks (keys removed by the issuer
/// stop being trusted within this time).
pub(crate) const REFRESH_EVERY: Duration = Duration::from_secs(15 * 60);
/// A token with an unknown key triggers a fetch at most this often.
pub(crate) const ON_DEMAND_EVERY: Duration = Duration::from_secs(10);
/// Retries after a failed fetch start here and double up to a minute.
const RETRY_FIRST: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(60);

/// The key cache of one issuer.
#[derive(Debug)]
pub(crate) struct Jwks {
    issuer: String,
    /// Configured, or `None`: found through the issuer's discovery document.
    jwks_url: Option<String>,
    fetcher: Fetcher,
    keys: RwLock<Option<Arc<KeySet>>>,
    last_error: RwLock<Option<String>>,
    /// When the last on-demand fetch started; held while it runs, so concurrent requests
    /// with the same new key wait for one fetch instead of starting many.
    on_demand: tokio::sync::Mutex<Option<Instant>>,
    on_demand_every: Duration,
    /// True once the first fetch (at start) has ended, however it ended.
    first_attempt: tokio::sync::watch::Sender<bool>,
}

impl Jwks {
    pub(crate) fn new(issuer: &str, jwks_url: Option<&str>, fetcher: Fetcher) -> Self {
        Jwks {
            issuer: issuer.to_string(),
            jwks_url: jwks_url.map(str::to_string),
            fetcher,
            keys: RwLock::new(None),
            last_error: RwLock::new(None),
            on_demand: tokio::sync::Mutex::new(None),
            on_demand_every: ON_DEMAND_EVERY,
            first_attempt: tokio::sync::watch::Sender::new(false),
        }
    }

    /// Waits until the first fetch at start has ended (a request that arrives while the
    /// keys are on their way waits for them instead of getting 503).
    pub(crate) async fn first_attempt(&self) {
        let mut ended = self.first_attempt.subscribe();
        let _ = ended.wait_for(|ended| *ended).await;
    }

    /// The same cache with another on-demand limit (tests).
    #[cfg(test)]
    pub(crate) fn with_on_demand_every(mut self, every: Duration) -> Self {
        self.on_demand_every = every;
        self
    }

    /// The keys, once fetched.
    pub(crate) fn keys(&self) -> Option<Arc<KeySet>> {
        self.keys
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Why the keys are not there (the last fetch's error), if they are not.
    pub(crate) fn unavailable_because(&self) -> String {
        self.last_error
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .unwrap_or_else(|| "the JWKS has not been fetched yet".into())
    }

    /// Keys that include `kid`, fetching them if the rate limit allows; `None` if the
    /// key is still unknown (or the fetch failed).
    pub(crate) async fn refresh_for(&self, kid: &str) -> Option<Arc<KeySet>> {
        let mut last = self.on_demand.lock().await;
        // A request before us may have fetched it while we waited.
        if let Some(keys) = self.keys().filter(|k| k.has_kid(kid)) {
            return Some(keys);
        }
        if last.is_some_and(|t| t.elapsed() < self.on_demand_every) {
            return None;
        }
        *last = Some(Instant::now());
        tracing::info!(
            kid,
            "a token names a key not in the cached JWKS: fetching it again"
        );
        self.fetch().await.ok().filter(|k| k.has_kid(kid))
    }

    /// Fetches and caches the keys; on failure the old keys stay.
    pub(crate) async fn fetch(&self) -> Result<Arc<KeySet>, String> {
        let result = async {
            let url = match &self.jwks_url {
                Some(url) => url.clone(),
                None => self.discover().await?,
            };
            let document = self.fetcher.json(&url).await?;
            KeySet::from_jwks(&document)
                .map(Arc::new)
                .map_err(|e| format!("{url}: {e}"))
        }
        .await;
        let outcome = if result.is_ok() { "success" } else { "failure" };
        metrics::counter!("toolhive_vmcp_auth_jwks_fetches_total", "outcome" => outcome)
            .increment(1);
        match &result {
            Ok(keys) => {
                *self.keys.write().unwrap_or_else(PoisonError::into_inner) = Some(keys.clone());
                *self
                    .last_error
                    .write()
                    .unwrap_or_else(PoisonError::into_inner) = None;
            }
            Err(e) => {
                *self
                    .last_error
                    .write()
                    .unwrap_or_else(PoisonError::into_inner) =
                    Some(format!("cannot fetch the issuer's keys: {e}"));
            }
        }
        result
    }

    /// The `jwks_uri` of the issuer's OpenID discovery document (or, failing that, its
    /// RFC 8414 authorization server metadata), which must name the same issuer.
    async fn discover(&self) -> Result<String, String> {
        let base = self.issuer.trim_end_matches('/');
        let openid = format!("{base}/.well-known/openid-configuration");
        let document = match self.fetcher.json(&openid).await {
            Ok(d) => d,
            Err(first) => {
                let rfc8414 = rfc8414_url(base).ok_or(first.clone())?;
                self.fetcher
                    .json(&rfc8414)
                    .await
                    .map_err(|second| format!("{first}; {second}"))?
            }
        };
        let named = document
            .get("issuer")
            .and_then(|v| v.as_str())
            .unwrap_or_default();
        if named.trim_end_matches('/') != base {
            return Err(format!(
                "the discovery document names issuer {named:?}, not the configured {:?}",
                self.issuer
            ));
        }
        document
            .get("jwks_uri")
            .and_then(|v| v.as_str())
            .map(str::to_string)
            .ok_or_else(|| "the discovery document has no jwks_uri".into())
    }

    /// Fetches until the keys come (backing off), then refreshes them every
    /// [`REFRESH_EVERY`], until `stop`.
    pub(crate) async fn run(self: Arc<Self>, stop: CancellationToken) {
        let mut retry = RETRY_FIRST;
        let mut wait = Duration::ZERO;
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(wait) => {}
            }
            let had_keys = self.keys().is_some();
            let fetched = self.fetch().await;
            self.first_attempt.send_replace(true);
            match fetched {
                Ok(keys) => {
                    if !had_keys {
                        tracing::info!(issuer = %self.issuer, keys = keys.len(), "fetched the issuer's keys: authenticated requests are served");
                    }
                    retry = RETRY_FIRST;
                    wait = REFRESH_EVERY;
                }
                Err(e) => {
                    if had_keys {
                        tracing::warn!(error = %e, retry_in = ?retry, "cannot refresh the issuer's keys: the cached keys stay in use");
                    } else {
                        tracing::warn!(error = %e, retry_in = ?retry, "cannot fetch the issuer's keys: authenticated requests get 503 until they come");
                    }
                    wait = retry;
                    retry = (retry * 2).min(RETRY_MAX);
                }
            }
        }
    }
}

/// RFC 8414 §3: the well-known path goes between the host and the issuer's path.
fn rfc8414_url(issuer: &str) -> Option<String> {
    let uri: http::Uri = issuer.parse().ok()?;
    let path = uri.path().trim_end_matches('/');
    Some(format!(
        "{}://{}/.well-known/oauth-authorization-server{path}",
        uri.scheme_str()?,
        uri.authority()?
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use hale_testkit::TestIssuer;

    fn fetcher() -> Fetcher {
        Fetcher::new(None).unwrap_or_else(|e| panic!("{e}"))
    }

    #[tokio::test]
    async fn keys_are_found_through_discovery_and_a_new_kid_is_fetched_once() {
        let issuer = TestIssuer::start().await.unwrap_or_else(|e| panic!("{e}"));
        let jwks = Jwks::new(&issuer.issuer(), None, fetcher())
            .with_on_demand_every(Duration::from_millis(300));
        assert!(jwks.keys().is_none());
        assert!(jwks.fetch().await.is_ok(), "{}", jwks.unavailable_because());
        assert_eq!(issuer.jwks_fetches(), 1);
        assert!(
            jwks.keys()
                .is_some_and(|k| k.has_kid("a") && !k.has_kid("b"))
        );

        // The issuer rotates to b: the first token naming b fetches once and finds it.
        issuer.publish(&["a", "b"]);
        assert!(jwks.refresh_for("b").await.is_some_and(|k| k.has_kid("b")));
        assert_eq!(issuer.jwks_fetches(), 2);

        // A key nobody publishes: one fetch, then none per request within the limit.
        assert!(jwks.refresh_for("forged").await.is_none());
        assert_eq!(issuer.jwks_fetches(), 2, "fetched again within the limit");
        tokio::time::sleep(Duration::from_millis(350)).await;
        for _ in 0..50 {
            assert!(jwks.refresh_for("forged").await.is_none());
        }
        assert_eq!(
            issuer.jwks_fetches(),
            3,
            "50 tokens with an unknown kid: one fetch"
        );
        issuer.shutdown();
    }

    #[tokio::test]
    async fn an_unreachable_issuer_says_why_and_keeps_the_old_keys() {
        let issuer = TestIssuer::start().await.unwrap_or_else(|e| panic!("{e}"));
        let jwks = Jwks::new(&issuer.issuer(), Some(&issuer.jwks_url()), fetcher());
        assert!(jwks.unavailable_because().contains("not been fetched"));
        assert!(jwks.fetch().await.is_ok());
        issuer.shutdown();
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(jwks.fetch().await.is_err());
        assert!(
            jwks.keys().is_some(),
            "a failed refresh dropped the cached keys"
        );

        let nowhere = Jwks::new("http://127.0.0.1:9", None, fetcher());
        assert!(nowhere.fetch().await.is_err());
        let why = nowhere.unavailable_because();
        assert!(
            why.contains("127.0.0.1:9/.well-known/openid-configuration"),
            "{why}"
        );
    }

    #[test]
    fn rfc8414_puts_the_well_known_path_before_the_issuer_path() {
        assert_eq!(
            rfc8414_url("https://id.example/realms/x").as_deref(),
            Some("https://id.example/.well-known/oauth-authorization-server/realms/x")
        );
    }
}
