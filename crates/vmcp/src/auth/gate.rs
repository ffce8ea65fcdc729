//! The door every request passes: which rule guards which path, what a refused caller is
//! told (RFC 6750 challenges pointing at RFC 9728 metadata), and the metadata document.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use http::{HeaderMap, HeaderValue, Response, StatusCode, header};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::fetch::Fetcher;
use super::jwks::Jwks;
use super::jwt::{Rejection, Rules};
use super::tokens::StaticTokens;
use super::verified::{self, VerifiedTokens};
use crate::body::{Body, full};
use crate::config::IncomingAuth;
use crate::config::VmcpConfig;

/// The RFC 9728 document's path (and its path-suffixed form for `/mcp`).
pub(crate) const METADATA_PATH: &str = "/.well-known/oauth-protected-resource";

/// Who a request speaks for, once admitted.
#[derive(Clone, Debug, Default)]
pub(crate) struct Identity {
    /// The token's `sub` (oidc) or the token's name (static); `None` when anonymous.
    pub(crate) sub: Option<Arc<str>>,
    /// When the token stops being valid (seconds since the epoch, clock skew included):
    /// a stream opened with it ends then. `None`: never (anonymous, static tokens).
    pub(crate) expires: Option<u64>,
}

/// How a request reached the vMCP: the `Host` it named, and whether that name is
/// certainly this server's own ([`hale_core::HostPolicy::names_self`]).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Reached<'a> {
    pub(crate) host: Option<&'a str>,
    pub(crate) names_self: bool,
}

/// Why a request was not admitted.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Denied {
    /// No bearer token.
    NoToken,
    /// Credentials in another scheme than `Bearer` (what was there, for the
    /// description): RFC 6750 §3.1 asks for a challenge without an error code, as for
    /// none at all — the client may not know a token is needed.
    OtherScheme(String),
    /// A token that is not accepted: the kind of reason (the log's rate limit is per
    /// kind) and the reason (for the log and the description).
    Invalid(&'static str, String),
    /// A valid token without these scopes.
    Scope(Vec<String>),
    /// Tokens cannot be checked now (the issuer's keys are not there yet).
    Unavailable(String),
}

/// One rule: who may pass.
#[derive(Clone, Debug)]
enum Rule {
    Open,
    Oidc(Arc<Oidc>),
    Static(Arc<StaticTokens>),
}

#[derive(Debug)]
struct Oidc {
    rules: Rules,
    jwks: Arc<Jwks>,
    verified: VerifiedTokens,
}

/// The vMCP's door: the rule for `/mcp`, the rule for the status endpoints, and what
/// refused callers are told.
#[derive(Debug)]
pub(crate) struct Gate {
    mcp: Rule,
    status: Rule,
    /// The admin API's rule; `None`: the API is off.
    admin: Option<Rule>,
    /// `resourceUrl`, if configured (else from `Host`).
    resource_url: Option<String>,
    issuer: Option<String>,
    scopes: Vec<String>,
    /// The audiences configured for `/mcp` (the resource a request is told of is
    /// accepted too, when it is this server's own).
    audience: Vec<String>,
    name: String,
    /// The refusal log's limit, per kind of reason: a burst of one kind (clients
    /// without a token) cannot hide the one expired token an operator looks for.
    refusals: Mutex<Vec<(&'static str, hale_core::RateLimitedLog)>>,
    /// Resources told to clients that tokens for them cannot pass (a `Host` that does
    /// not name this server, not in `audience`): warned of once each (at most 32).
    unmet: Mutex<Vec<String>>,
}

impl Gate {
    /// The gate `config` asks for. Fails only on an unusable `caFile`.
    pub(crate) fn new(config: &VmcpConfig) -> Result<Self, String> {
        let mcp = rule(config.incoming_auth.as_ref())?;
        let status = match &config.status_auth {
            Some(a) => rule(Some(a))?,
            None => mcp.clone(),
        };
        let admin = match &config.admin {
            Some(a) => Some(rule(Some(a))?),
            None => None,
        };
        let (resource_url, issuer, scopes, audience) = match &config.incoming_auth {
            Some(IncomingAuth::Oidc(o)) => (
                o.resource_url.clone(),
                Some(o.issuer.clone()),
                o.required_scopes.clone(),
                o.audience.clone(),
            ),
            Some(IncomingAuth::Static(s)) => (s.resource_url.clone(), None, Vec::new(), Vec::new()),
            _ => (None, None, Vec::new(), Vec::new()),
        };
        Ok(Gate {
            mcp,
            status,
            admin,
            resource_url,
            issuer,
            scopes,
            audience,
            name: config.name.clone(),
            refusals: Mutex::new(Vec::new()),
            unmet: Mutex::new(Vec::new()),
        })
    }

    /// True if `/mcp` callers are authenticated (answers then depend on who asks, as far
    /// as any cache in between can know).
    pub(crate) fn authenticates(&self) -> bool {
        !matches!(self.mcp, Rule::Open)
    }

    /// Starts the auth counters at zero, so that their series exist before the first
    /// refusal or fetch (a rate over a series that appears late misses its first step).
    pub(crate) fn register_metrics() {
        for status in ["401", "403", "503"] {
            metrics::counter!("toolhive_vmcp_auth_refusals_total", "status" => status).increment(0);
        }
        for outcome in ["success", "failure"] {
            metrics::counter!("toolhive_vmcp_auth_jwks_fetches_total", "outcome" => outcome)
                .increment(0);
        }
    }

    /// Keeps the issuers' keys fresh until `stop` (one task per issuer).
    pub(crate) fn key_refreshers(
        &self,
        stop: &CancellationToken,
    ) -> Vec<impl Future<Output = ()> + use<>> {
        let mut caches: Vec<Arc<Jwks>> = Vec::new();
        for r in [Some(&self.mcp), Some(&self.status), self.admin.as_ref()]
            .into_iter()
            .flatten()
        {
            if let Rule::Oidc(o) = r
                && !caches.iter().any(|c| Arc::ptr_eq(c, &o.jwks))
            {
                caches.push(o.jwks.clone());
            }
        }
        caches.into_iter().map(|c| c.run(stop.clone())).collect()
    }

    /// What `/status` says about who may call: each rule, and for an issuer its keys
    /// (how many, or why there are none).
    pub(crate) fn describe(&self) -> Value {
        let rule = |r: &Rule| match r {
            Rule::Open => json!({"type": "anonymous"}),
            Rule::Static(_) => json!({"type": "static"}),
            Rule::Oidc(o) => {
                let keys = o.jwks.keys();
                json!({
                    "type": "oidc",
                    "issuer": o.rules.issuer,
                    "keys": keys.as_ref().map(|k| k.len()),
                    "keysError": keys.is_none().then(|| o.jwks.unavailable_because()),
                })
            }
        };
        json!({
            "mcp": rule(&self.mcp),
            "status": rule(&self.status),
            "admin": self.admin.as_ref().map(rule),
        })
    }

    /// Admits a request to `/mcp`. Besides the configured audiences, a token for the
    /// resource this request is told of (RFC 9728 `resource`) passes: `resourceUrl`, or
    /// the URL the client reached the vMCP by when it is certainly this server's own.
    pub(crate) async fn admit_mcp(
        &self,
        headers: &HeaderMap,
        reached: Reached<'_>,
    ) -> Result<Identity, Denied> {
        let own = self.own_resource(reached);
        self.admit(&self.mcp, headers, own.as_deref()).await
    }

    /// Admits a request to `/status`, `/api/backends/health` or `/metrics`.
    pub(crate) async fn admit_status(&self, headers: &HeaderMap) -> Result<Identity, Denied> {
        self.admit(&self.status, headers, None).await
    }

    /// Admits a request to the admin API; `None` when the API is off.
    pub(crate) async fn admit_admin(
        &self,
        headers: &HeaderMap,
    ) -> Option<Result<Identity, Denied>> {
        Some(self.admit(self.admin.as_ref()?, headers, None).await)
    }

    async fn admit(
        &self,
        rule: &Rule,
        headers: &HeaderMap,
        own: Option<&str>,
    ) -> Result<Identity, Denied> {
        match rule {
            Rule::Open => Ok(Identity::default()),
            Rule::Static(tokens) => match tokens.admit(bearer(headers)?) {
                Some(name) => Ok(Identity {
                    sub: Some(name),
                    expires: None,
                }),
                None => Err(Denied::Invalid(
                    "unknown_token",
                    "the token is not one of incomingAuth.tokensFile's".into(),
                )),
            },
            Rule::Oidc(oidc) => oidc.admit(bearer(headers)?, own).await,
        }
    }

    /// The resource a request is told of, when a token for it is a token for this
    /// server: `resourceUrl`, or the URL built from a `Host` that names this server.
    fn own_resource(&self, reached: Reached<'_>) -> Option<std::borrow::Cow<'_, str>> {
        match &self.resource_url {
            Some(url) => Some(url.as_str().into()),
            None => reached
                .names_self
                .then(|| self.resource(reached.host).into()),
        }
    }

    /// Says once (per resource, for the first 32) that clients reaching the vMCP by
    /// this URL are told of a resource whose tokens it cannot accept, and what to set.
    fn warn_if_unmet(&self, reached: Reached<'_>) {
        if self.resource_url.is_some() || reached.names_self || self.audience.is_empty() {
            return;
        }
        let resource = self.resource(reached.host);
        if self.audience.contains(&resource) {
            return;
        }
        let mut unmet = self.unmet.lock().unwrap_or_else(PoisonError::into_inner);
        if unmet.len() >= 32 || unmet.contains(&resource) {
            return;
        }
        tracing::warn!(
            resource = %resource,
            "clients reaching the vMCP by this URL are told it is the resource (RFC 9728) and get tokens for it, but it is not one of incomingAuth.audience and its Host does not name this server: set incomingAuth.resourceUrl to the URL clients use (behind an ingress or a port mapping), or add it to incomingAuth.audience or its host to allowedHosts"
        );
        unmet.push(resource);
    }

    /// Whether a refusal of `kind` may be logged at `now` (`Some`: how many of that kind
    /// were held back since the last line).
    fn log_due(&self, kind: &'static str, now: Instant) -> Option<u64> {
        let mut limits = self.refusals.lock().unwrap_or_else(PoisonError::into_inner);
        let at = match limits.iter().position(|(k, _)| *k == kind) {
            Some(at) => at,
            None => {
                let limit = hale_core::RateLimitedLog::new(Duration::from_millis(100));
                limits.push((kind, limit));
                limits.len() - 1
            }
        };
        limits[at].1.due(now)
    }

    /// The answer to a refused request, logged (at most ten lines a second for each kind
    /// of reason).
    pub(crate) fn refuse(
        &self,
        denied: &Denied,
        reached: Reached<'_>,
        path: &str,
    ) -> Response<Body> {
        let kind = match denied {
            Denied::NoToken => "no_token",
            Denied::OtherScheme(_) => "other_scheme",
            Denied::Invalid(kind, _) => kind,
            Denied::Scope(_) => "insufficient_scope",
            Denied::Unavailable(_) => "unavailable",
        };
        if let Some(suppressed) = self.log_due(kind, Instant::now()) {
            match denied {
                Denied::NoToken => {
                    tracing::debug!(path, "refused a request without a bearer token (401)")
                }
                Denied::OtherScheme(what) => tracing::info!(
                    path,
                    reason = %what,
                    suppressed,
                    "refused a request: no bearer token (401)"
                ),
                Denied::Invalid(_, reason) => tracing::info!(
                    path,
                    reason,
                    suppressed,
                    "refused a request: invalid token (401)"
                ),
                Denied::Scope(missing) => {
                    tracing::info!(path, missing = %missing.join(" "), suppressed, "refused a request: insufficient scope (403)")
                }
                Denied::Unavailable(reason) => {
                    tracing::warn!(path, reason, suppressed, "cannot check tokens (503)")
                }
            }
        }
        if path == "/mcp" && matches!(denied, Denied::Invalid("audience", _)) {
            self.warn_if_unmet(reached);
        }
        let metadata = self.metadata_url(reached.host);
        let (status, challenge, error, description) = match denied {
            Denied::NoToken => (
                StatusCode::UNAUTHORIZED,
                self.challenge(&metadata, None, None),
                "invalid_request",
                "a bearer token is required (Authorization: Bearer …)".to_string(),
            ),
            Denied::OtherScheme(what) => (
                StatusCode::UNAUTHORIZED,
                self.challenge(&metadata, None, None),
                "invalid_request",
                format!("{what}; a bearer token is required (Authorization: Bearer …)"),
            ),
            Denied::Invalid(_, reason) => (
                StatusCode::UNAUTHORIZED,
                self.challenge(&metadata, Some(("invalid_token", reason)), None),
                "invalid_token",
                reason.clone(),
            ),
            Denied::Scope(missing) => {
                // Every scope the request needs, in one challenge (MCP 2026-07-28: the
                // client unions it with what it has); the description names the missing.
                let description = format!("the token lacks the scope(s) {}", missing.join(" "));
                (
                    StatusCode::FORBIDDEN,
                    self.challenge(
                        &metadata,
                        Some(("insufficient_scope", &description)),
                        Some(&self.scopes.join(" ")),
                    ),
                    "insufficient_scope",
                    description,
                )
            }
            Denied::Unavailable(reason) => (
                StatusCode::SERVICE_UNAVAILABLE,
                String::new(),
                "temporarily_unavailable",
                format!("tokens cannot be checked right now: {reason}"),
            ),
        };
        metrics::counter!("toolhive_vmcp_auth_refusals_total", "status" => status.as_str().to_string()).increment(1);
        let mut r = Response::new(full(
            json!({"error": error, "error_description": description}).to_string(),
        ));
        *r.status_mut() = status;
        let h = r.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if let Ok(v) = HeaderValue::from_str(&challenge)
            && !challenge.is_empty()
        {
            h.insert(header::WWW_AUTHENTICATE, v);
        }
        if status == StatusCode::SERVICE_UNAVAILABLE {
            h.insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        }
        r
    }

    /// `Bearer resource_metadata="…"` with the error and scope when there are.
    fn challenge(
        &self,
        metadata: &str,
        error: Option<(&str, &str)>,
        scope: Option<&str>,
    ) -> String {
        let mut parts = Vec::new();
        if let Some((code, description)) = error {
            parts.push(format!("error=\"{code}\""));
            parts.push(format!("error_description=\"{}\"", quotable(description)));
        }
        let scope = scope
            .map(str::to_string)
            .or_else(|| (!self.scopes.is_empty()).then(|| self.scopes.join(" ")));
        if let Some(scope) = scope {
            parts.push(format!("scope=\"{}\"", quotable(&scope)));
        }
        // The document exists only when /mcp authenticates (statusAuth alone has none).
        if self.authenticates() {
            parts.push(format!("resource_metadata=\"{}\"", quotable(metadata)));
        }
        format!("Bearer {}", parts.join(", "))
    }

    /// The MCP endpoint's URL, as RFC 9728's `resource` (a URL's host is lower case).
    fn resource(&self, host: Option<&str>) -> String {
        match &self.resource_url {
            Some(url) => url.clone(),
            None => format!(
                "http://{}/mcp",
                host.unwrap_or("localhost").trim().to_ascii_lowercase()
            ),
        }
    }

    /// Where the metadata document of [`Self::resource`] is (RFC 9728 §3.1: the
    /// well-known path between the host and the resource's path).
    fn metadata_url(&self, host: Option<&str>) -> String {
        let resource = self.resource(host);
        match resource.parse::<http::Uri>() {
            Ok(uri) if uri.authority().is_some() => format!(
                "{}://{}{METADATA_PATH}{}",
                uri.scheme_str().unwrap_or("http"),
                uri.authority().map(|a| a.as_str()).unwrap_or_default(),
                uri.path().trim_end_matches('/')
            ),
            _ => format!("http://{}{METADATA_PATH}/mcp", host.unwrap_or("localhost")),
        }
    }

    /// The RFC 9728 protected resource metadata; `None` when `/mcp` is open to anyone.
    pub(crate) fn metadata(&self, reached: Reached<'_>) -> Option<Value> {
        if !self.authenticates() {
            return None;
        }
        self.warn_if_unmet(reached);
        let mut doc = json!({
            "resource": self.resource(reached.host),
            "bearer_methods_supported": ["header"],
            "resource_name": self.name,
        });
        if let Some(issuer) = &self.issuer {
            doc["authorization_servers"] = json!([issuer]);
        }
        if !self.scopes.is_empty() {
            doc["scopes_supported"] = json!(self.scopes);
        }
        Some(doc)
    }
}

impl Oidc {
    /// Admits `token` if the rules pass with `own` (the resource the request was told
    /// of, when it is this server's) as one more accepted audience.
    async fn admit(&self, token: &str, own: Option<&str>) -> Result<Identity, Denied> {
        let keys = match self.jwks.keys() {
            Some(keys) => keys,
            None => {
                // Just started: the keys may be on their way (a fetch takes at most 10 s).
                let _ =
                    tokio::time::timeout(Duration::from_secs(11), self.jwks.first_attempt()).await;
                self.jwks
                    .keys()
                    .ok_or_else(|| Denied::Unavailable(self.jwks.unavailable_because()))?
            }
        };
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        // A token passed for one resource is not thereby known for another.
        let digest = verified::digest(token, own);
        if let Some((sub, until)) = self.verified.get(&digest, &keys, now) {
            return Ok(Identity {
                sub,
                expires: Some(until),
            });
        }
        let (verdict, keys) = match self.rules.verify(token, &keys, now, own) {
            Err(Rejection::UnknownKey(Some(kid))) => match self.jwks.refresh_for(&kid).await {
                Some(keys) => (self.rules.verify(token, &keys, now, own), keys),
                None => (Err(Rejection::UnknownKey(Some(kid))), keys),
            },
            other => (other, keys),
        };
        match verdict {
            Ok(v) => {
                let until = v.exp.saturating_add(self.rules.clock_skew);
                self.verified.put(digest, v.sub.clone(), until, keys, now);
                Ok(Identity {
                    sub: v.sub,
                    expires: Some(until),
                })
            }
            Err(Rejection::InsufficientScope(missing)) => Err(Denied::Scope(missing)),
            Err(e) => Err(Denied::Invalid(e.kind(), e.to_string())),
        }
    }
}

fn rule(auth: Option<&IncomingAuth>) -> Result<Rule, String> {
    Ok(match auth {
        None | Some(IncomingAuth::Anonymous) => Rule::Open,
        Some(IncomingAuth::Static(s)) => Rule::Static(s.tokens.clone()),
        Some(IncomingAuth::Oidc(o)) => {
            let fetcher = Fetcher::new(o.ca_file.as_deref())
                .map_err(|e| format!("incomingAuth.caFile: {e}"))?;
            Rule::Oidc(Arc::new(Oidc {
                rules: Rules {
                    issuer: o.issuer.clone(),
                    audience: o.audience.clone(),
                    required_scopes: o.required_scopes.clone(),
                    clock_skew: o.clock_skew.as_secs(),
                },
                jwks: Arc::new(Jwks::new(&o.issuer, o.jwks_url.as_deref(), fetcher)),
                verified: VerifiedTokens::default(),
            }))
        }
    })
}

/// The bearer token of `Authorization` (RFC 6750 §2.1); tokens in the URL are not
/// accepted (MCP forbids them).
fn bearer(headers: &HeaderMap) -> Result<&str, Denied> {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Err(Denied::NoToken);
    };
    if values.next().is_some() {
        return Err(Denied::Invalid(
            "header",
            "more than one Authorization header".into(),
        ));
    }
    let text = value
        .to_str()
        .map_err(|_| Denied::Invalid("header", "the Authorization header is not text".into()))?;
    let (scheme, token) = text.split_once(' ').unwrap_or((text, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        // Name the scheme only if it looks like one: a bare token must not be logged.
        let named = if scheme.len() <= 16 && scheme.chars().all(|c| c.is_ascii_alphabetic()) {
            format!("the {scheme:?} scheme")
        } else {
            "no scheme".into()
        };
        return Err(Denied::OtherScheme(format!(
            "expected Authorization: Bearer <token>, got {named}"
        )));
    }
    let token = token.trim();
    if token.is_empty() {
        return Err(Denied::NoToken);
    }
    Ok(token)
}

/// A header parameter value: no quotes or backslashes, no control characters.
fn quotable(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '"' => '\'',
            '\\' => '/',
            c if c.is_control() => ' ',
            c => c,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gate(extra: &str) -> Gate {
        let yaml = format!(
            "backends:\n  - {{name: kit, url: \"http://127.0.0.1:1/mcp\"}}\nincomingAuth: {{type: oidc, issuer: \"https://id.example\", audience: a, requiredScopes: [files:read, files:write]{extra}}}\n"
        );
        let config = VmcpConfig::from_yaml("t.yaml", &yaml).unwrap_or_else(|e| panic!("{e}"));
        Gate::new(&config).unwrap_or_else(|e| panic!("{e}"))
    }

    fn challenge(r: &Response<Body>) -> String {
        r.headers()
            .get(header::WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    }

    #[test]
    fn a_missing_scope_is_challenged_with_every_scope_the_request_needs() {
        let g = gate("");
        let r = g.refuse(
            &Denied::Scope(vec!["files:write".into()]),
            at("h:1"),
            "/mcp",
        );
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        assert_eq!(
            challenge(&r),
            "Bearer error=\"insufficient_scope\", error_description=\"the token lacks the scope(s) files:write\", scope=\"files:read files:write\", resource_metadata=\"http://h:1/.well-known/oauth-protected-resource/mcp\""
        );
        let r = g.refuse(&Denied::NoToken, at("h:1"), "/mcp");
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert!(!challenge(&r).contains("error="), "{}", challenge(&r));
    }

    fn at(host: &str) -> Reached<'_> {
        Reached {
            host: Some(host),
            names_self: false,
        }
    }

    #[test]
    fn a_burst_of_one_kind_of_refusal_cannot_hide_another_kind() {
        let g = gate("");
        let now = Instant::now();
        assert_eq!(g.log_due("no_token", now), Some(0));
        for _ in 0..1000 {
            assert_eq!(g.log_due("no_token", now), None);
        }
        assert_eq!(g.log_due("expired", now), Some(0), "its own limit");
        assert_eq!(
            g.log_due("no_token", now + Duration::from_millis(150)),
            Some(1000),
            "the held-back count is said with the next line"
        );
    }

    #[test]
    fn another_scheme_is_challenged_without_an_error_code_as_rfc_6750_asks() {
        let g = gate("");
        let mut h = HeaderMap::new();
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Basic dXNlcjpwdw=="),
        );
        let denied = bearer(&h).err().unwrap_or(Denied::NoToken);
        let r = g.refuse(&denied, at("h:1"), "/mcp");
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        let c = challenge(&r);
        assert!(c.starts_with("Bearer ") && !c.contains("error="), "{c}");
        assert!(c.contains("resource_metadata="), "{c}");
    }

    #[test]
    fn the_resource_told_is_accepted_when_the_host_names_this_server() {
        let g = gate("");
        let own = Reached {
            host: Some("LocalHost:4490"),
            names_self: true,
        };
        assert_eq!(
            g.own_resource(own).as_deref(),
            Some("http://localhost:4490/mcp")
        );
        assert_eq!(
            g.metadata(own).unwrap_or_default()["resource"],
            "http://localhost:4490/mcp"
        );
        assert_eq!(
            g.own_resource(at("10.9.9.9:80")),
            None,
            "a Host that only passes"
        );
        let g = gate(", resourceUrl: \"https://mcp.example.com/team/mcp\"");
        assert_eq!(
            g.own_resource(at("10.9.9.9:80")).as_deref(),
            Some("https://mcp.example.com/team/mcp"),
            "resourceUrl is always this server's"
        );
    }

    #[test]
    fn behind_an_ingress_the_metadata_follows_the_configured_resource_url() {
        let g = gate(", resourceUrl: \"https://mcp.example.com/team/mcp\"");
        assert_eq!(
            g.metadata_url(Some("10.0.0.7:4483")),
            "https://mcp.example.com/.well-known/oauth-protected-resource/team/mcp"
        );
        let doc = g.metadata(at("10.0.0.7:4483")).unwrap_or_default();
        assert_eq!(doc["resource"], "https://mcp.example.com/team/mcp");
        assert_eq!(doc["authorization_servers"][0], "https://id.example");
    }

    #[test]
    fn a_token_without_the_bearer_scheme_is_refused_without_being_repeated() {
        let mut h = HeaderMap::new();
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("s3cr3t-token-value"),
        );
        let Err(Denied::OtherScheme(why)) = bearer(&h) else {
            panic!("a bare token was accepted");
        };
        assert!(!why.contains("s3cr3t"), "{why}");
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Basic dXNlcjpwdw=="),
        );
        assert!(
            matches!(bearer(&h), Err(Denied::OtherScheme(w)) if w.contains("\"Basic\"") && !w.contains("dXNl"))
        );
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("bearer abc"),
        );
        assert_eq!(bearer(&h), Ok("abc"));
        h.append(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer def"),
        );
        assert!(matches!(bearer(&h), Err(Denied::Invalid("header", _))));
        assert_eq!(bearer(&HeaderMap::new()), Err(Denied::NoToken));
    }
}
