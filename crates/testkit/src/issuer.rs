//! A test OAuth issuer: signs access tokens with fixed test keys and serves its discovery
//! document and JWKS over HTTP, counting JWKS fetches. Which keys the JWKS publishes can
//! be changed while it runs (key rotation).
//!
//! The keys in `crates/testkit/keys/` are published test keys: never use them for
//! anything but tests.
//!
//! ```
//! use hale_testkit::TestIssuer;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> std::io::Result<()> {
//! let issuer = TestIssuer::start().await?;
//! let token = issuer.token("alice", "hale-vmcp", &["mcp:tools"]);
//! assert_eq!(token.split('.').count(), 3);
//! println!("issuer {} (JWKS at {})", issuer.issuer(), issuer.jwks_url());
//! # Ok(()) }
//! ```
//!
//! | request | answer |
//! |---|---|
//! | `GET /.well-known/openid-configuration` | `{issuer, jwks_uri}` |
//! | `GET /jwks` | the published keys (counted) |
//! | `GET /token?sub=S&aud=A&scope=X+Y[&kid=K][&ttl=SECONDS]` | a signed token (test use only) |
//! | `POST /publish?kids=a,b` | publish these keys from now on |
//! | `POST /oauth/token` (client credentials, RFC 8707 `resource`) | `{access_token, …}` for the test client |

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use http::{Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::body::{self, ResponseBody};

/// The test keys: id, algorithm, PKCS#8 PEM.
const KEYS: &[(&str, Algorithm, &str)] = &[
    ("a", Algorithm::ES256, include_str!("../keys/ec-p256-a.pem")),
    ("b", Algorithm::ES256, include_str!("../keys/ec-p256-b.pem")),
    ("r", Algorithm::RS256, include_str!("../keys/rsa-2048.pem")),
];

/// A running test issuer. Dropping it does not stop it; [`TestIssuer::shutdown`] does.
#[derive(Clone, Debug)]
pub struct TestIssuer(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    addr: SocketAddr,
    published: Mutex<Vec<String>>,
    jwks_fetches: AtomicUsize,
    stop: CancellationToken,
    scheme: &'static str,
}

impl TestIssuer {
    /// Serves on a free loopback port, publishing key `a` only.
    pub async fn start() -> std::io::Result<Self> {
        Self::start_on(SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    /// Serves on `addr`, publishing key `a` only.
    pub async fn start_on(addr: SocketAddr) -> std::io::Result<Self> {
        Self::serve(addr, None).await
    }

    /// Serves HTTPS on a free loopback port, with a certificate for `127.0.0.1` signed by
    /// the test CA in [`TestIssuer::TEST_CA_PEM`] (which clients must be told to trust).
    pub async fn start_tls() -> std::io::Result<Self> {
        use rustls_pki_types::pem::PemObject as _;
        let invalid = |e: &dyn std::fmt::Display| {
            std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string())
        };
        let cert = rustls_pki_types::CertificateDer::from_pem_slice(include_bytes!(
            "../keys/tls-cert.pem"
        ))
        .map_err(|e| invalid(&e))?;
        let key =
            rustls_pki_types::PrivateKeyDer::from_pem_slice(include_bytes!("../keys/tls-key.pem"))
                .map_err(|e| invalid(&e))?;
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid(&e))?
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .map_err(|e| invalid(&e))?;
        Self::serve(
            SocketAddr::from(([127, 0, 0, 1], 0)),
            Some(tokio_rustls::TlsAcceptor::from(Arc::new(config))),
        )
        .await
    }

    /// The one OAuth client the test issuer knows (client credentials grant).
    pub const TEST_CLIENT_ID: &'static str = "hale-test-client";
    /// Its secret.
    pub const TEST_CLIENT_SECRET: &'static str = "hale-test-secret";

    /// The CA that signed [`TestIssuer::start_tls`]'s certificate (PEM).
    pub const TEST_CA_PEM: &'static str = include_str!("../keys/tls-ca.pem");

    async fn serve(
        addr: SocketAddr,
        tls: Option<tokio_rustls::TlsAcceptor>,
    ) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let issuer = TestIssuer(Arc::new(Inner {
            addr: listener.local_addr()?,
            published: Mutex::new(vec!["a".into()]),
            jwks_fetches: AtomicUsize::new(0),
            stop: CancellationToken::new(),
            scheme: if tls.is_some() { "https" } else { "http" },
        }));
        let served = issuer.clone();
        tokio::spawn(async move {
            loop {
                let stream = tokio::select! {
                    () = served.0.stop.cancelled() => return,
                    accepted = listener.accept() => match accepted {
                        Ok((stream, _)) => stream,
                        Err(_) => continue,
                    },
                };
                let issuer = served.clone();
                let stop = served.0.stop.clone();
                let tls = tls.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| {
                        let issuer = issuer.clone();
                        async move { Ok::<_, Infallible>(issuer.handle(req).await) }
                    });
                    let http = http1::Builder::new();
                    // Shutting down cuts open keep-alive connections too.
                    match tls {
                        None => {
                            let conn = http.serve_connection(TokioIo::new(stream), service);
                            tokio::select! {
                                () = stop.cancelled() => {}
                                _ = conn => {}
                            }
                        }
                        Some(tls) => {
                            let Ok(stream) = tls.accept(stream).await else {
                                return;
                            };
                            let conn = http.serve_connection(TokioIo::new(stream), service);
                            tokio::select! {
                                () = stop.cancelled() => {}
                                _ = conn => {}
                            }
                        }
                    }
                });
            }
        });
        Ok(issuer)
    }

    /// The issuer identifier (`iss`): `http://127.0.0.1:PORT` (`https://` with TLS).
    pub fn issuer(&self) -> String {
        format!("{}://{}", self.0.scheme, self.0.addr)
    }

    /// Where its JWKS is.
    pub fn jwks_url(&self) -> String {
        format!("{}/jwks", self.issuer())
    }

    /// How many times its JWKS was fetched.
    pub fn jwks_fetches(&self) -> usize {
        self.0.jwks_fetches.load(Ordering::SeqCst)
    }

    /// Publishes these keys (of `a`, `b`, `r`) from now on.
    pub fn publish(&self, kids: &[&str]) {
        *self.0.published.lock().unwrap_or_else(|e| e.into_inner()) =
            kids.iter().map(|k| k.to_string()).collect();
    }

    /// The JWKS document for `kids`.
    pub fn jwks(kids: &[&str]) -> Value {
        let keys: Vec<Jwk> = KEYS
            .iter()
            .filter(|(kid, _, _)| kids.contains(kid))
            .filter_map(|(kid, alg, pem)| {
                let mut jwk = Jwk::from_encoding_key(&encoding_key(*alg, pem)?, *alg).ok()?;
                jwk.common.key_id = Some((*kid).to_string());
                jwk.common.public_key_use = Some(jsonwebtoken::jwk::PublicKeyUse::Signature);
                Some(jwk)
            })
            .collect();
        serde_json::to_value(JwkSet { keys }).unwrap_or(Value::Null)
    }

    /// A token from this issuer for `sub`, audience `aud`, with `scopes`, valid for an
    /// hour, signed with key `a`.
    pub fn token(&self, sub: &str, aud: &str, scopes: &[&str]) -> String {
        let now = now();
        Self::sign(
            "a",
            &json!({
                "iss": self.issuer(), "sub": sub, "aud": aud, "scope": scopes.join(" "),
                "iat": now, "exp": now + 3600,
            }),
        )
    }

    /// `claims` signed with test key `kid` (`a`, `b` or `r`); the header names the kid.
    pub fn sign(kid: &str, claims: &Value) -> String {
        let Some((_, alg, pem)) = KEYS.iter().find(|(k, _, _)| *k == kid) else {
            return String::new();
        };
        let mut header = Header::new(*alg);
        header.kid = Some(kid.to_string());
        encoding_key(*alg, pem)
            .and_then(|key| jsonwebtoken::encode(&header, claims, &key).ok())
            .unwrap_or_default()
    }

    /// Stops serving: the listener and every open connection.
    pub fn shutdown(&self) {
        self.0.stop.cancel();
    }

    async fn handle(&self, req: Request<Incoming>) -> Response<ResponseBody> {
        if req.method() == Method::POST && req.uri().path() == "/oauth/token" {
            let (parts, body) = req.into_parts();
            let body = http_body_util::BodyExt::collect(body)
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            return self.client_credentials(&parts.headers, &String::from_utf8_lossy(&body));
        }
        self.answer(&req)
    }

    /// RFC 6749 §4.4 for the test client (`TEST_CLIENT_ID` / `TEST_CLIENT_SECRET`, basic
    /// or post): a token for `sub` = the client id, `aud` = the RFC 8707 `resource` asked
    /// for (else `hale-vmcp`), with the scope asked for.
    fn client_credentials(&self, headers: &http::HeaderMap, form: &str) -> Response<ResponseBody> {
        let field = |name: &str| {
            form.split('&').find_map(|kv| {
                let (k, v) = kv.split_once('=')?;
                (k == name).then(|| percent_decode(v))
            })
        };
        let basic = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Basic "))
            .and_then(|b| {
                use base64::Engine as _;
                base64::engine::general_purpose::STANDARD.decode(b).ok()
            })
            .and_then(|raw| String::from_utf8(raw).ok())
            .and_then(|pair| {
                let (id, secret) = pair.split_once(':')?;
                Some((percent_decode(id), percent_decode(secret)))
            });
        let (id, secret) = basic
            .or_else(|| Some((field("client_id")?, field("client_secret")?)))
            .unwrap_or_default();
        if field("grant_type").as_deref() != Some("client_credentials") {
            return json_reply(
                StatusCode::BAD_REQUEST,
                &json!({"error": "unsupported_grant_type"}),
            );
        }
        if id != Self::TEST_CLIENT_ID || secret != Self::TEST_CLIENT_SECRET {
            return json_reply(
                StatusCode::UNAUTHORIZED,
                &json!({"error": "invalid_client"}),
            );
        }
        let now = now();
        let scope = field("scope").unwrap_or_default();
        let claims = json!({
            "iss": self.issuer(), "sub": id,
            "aud": field("resource").unwrap_or_else(|| "hale-vmcp".into()),
            "scope": scope, "iat": now, "exp": now + 3600,
        });
        json_reply(
            StatusCode::OK,
            &json!({"access_token": Self::sign("a", &claims), "token_type": "Bearer",
                    "expires_in": 3600, "scope": scope}),
        )
    }

    fn answer(&self, req: &Request<Incoming>) -> Response<ResponseBody> {
        let query = req.uri().query().unwrap_or_default();
        let param = |name: &str| {
            query.split('&').find_map(|kv| {
                let (k, v) = kv.split_once('=')?;
                (k == name).then(|| v.replace('+', " ").replace("%20", " "))
            })
        };
        match (req.method().clone(), req.uri().path()) {
            (
                Method::GET,
                "/.well-known/openid-configuration" | "/.well-known/oauth-authorization-server",
            ) => json_reply(
                StatusCode::OK,
                &json!({
                    "issuer": self.issuer(), "jwks_uri": self.jwks_url(),
                    "token_endpoint": format!("{}/oauth/token", self.issuer()),
                    // RFC 8414 requires one; this test issuer has no user to send there.
                    "authorization_endpoint": format!("{}/oauth/authorize", self.issuer()),
                    "grant_types_supported": ["client_credentials"],
                    "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
                    "response_types_supported": ["code"],
                }),
            ),
            (Method::GET, "/jwks") => {
                self.0.jwks_fetches.fetch_add(1, Ordering::SeqCst);
                let published = self
                    .0
                    .published
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .clone();
                let kids: Vec<&str> = published.iter().map(String::as_str).collect();
                json_reply(StatusCode::OK, &Self::jwks(&kids))
            }
            (Method::GET, "/token") => {
                let now = now();
                let ttl: i64 = param("ttl").and_then(|t| t.parse().ok()).unwrap_or(3600);
                let claims = json!({
                    "iss": self.issuer(),
                    "sub": param("sub").unwrap_or_else(|| "tester".into()),
                    "aud": param("aud").unwrap_or_else(|| "hale-vmcp".into()),
                    "scope": param("scope").unwrap_or_default(),
                    "iat": now, "exp": now.saturating_add_signed(ttl),
                });
                let kid = param("kid").unwrap_or_else(|| "a".into());
                let token = Self::sign(&kid, &claims);
                if token.is_empty() {
                    return json_reply(StatusCode::BAD_REQUEST, &json!({"error": "unknown kid"}));
                }
                Response::new(body::full(token))
            }
            (Method::POST, "/publish") => {
                let kids = param("kids").unwrap_or_default();
                self.publish(
                    &kids
                        .split(',')
                        .filter(|k| !k.is_empty())
                        .collect::<Vec<_>>(),
                );
                json_reply(StatusCode::OK, &json!({"published": kids}))
            }
            _ => json_reply(StatusCode::NOT_FOUND, &json!({"error": "not found"})),
        }
    }
}

fn encoding_key(alg: Algorithm, pem: &str) -> Option<EncodingKey> {
    match alg {
        Algorithm::RS256 => EncodingKey::from_rsa_pem(pem.as_bytes()).ok(),
        _ => EncodingKey::from_ec_pem(pem.as_bytes()).ok(),
    }
}

/// `application/x-www-form-urlencoded` value decoding (`+` and `%XX`).
fn percent_decode(text: &str) -> String {
    let hex = |b: u8| (b as char).to_digit(16);
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%' && i + 2 < bytes.len())
            .then(|| Some(hex(bytes[i + 1])? * 16 + hex(bytes[i + 2])?))
            .flatten();
        match (bytes[i], escaped) {
            (b'%', Some(b)) => {
                out.push(b as u8);
                i += 2;
            }
            (b'+', _) => out.push(b' '),
            (b, _) => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn json_reply(status: StatusCode, value: &Value) -> Response<ResponseBody> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(body::full(value.to_string()))
        .unwrap_or_default()
}
