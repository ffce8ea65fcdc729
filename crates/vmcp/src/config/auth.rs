//! The auth keys of `vmcp.yaml`: `incomingAuth`, `operational.statusAuth`, and each
//! backend's `headers` and `auth`. Secrets are read (token files, environment variables)
//! while the file is checked, so a missing one stops start-up with the key that names it.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use hale_core::parse_go_duration;
use hale_mcp::Credentials;
use serde::Deserialize;
use serde_saphyr::Spanned;

use super::check::{Checker, ConfigFileError};
use crate::auth::StaticTokens;

/// Who may call: `incomingAuth` (and `operational.statusAuth`).
#[derive(Clone, Debug)]
pub enum IncomingAuth {
    /// Anyone who reaches the port.
    Anonymous,
    /// JWT access tokens from an OAuth/OIDC issuer.
    Oidc(OidcSettings),
    /// Bearer tokens listed in a file.
    Static(StaticSettings),
}

impl IncomingAuth {
    /// `anonymous`, `oidc` or `static`.
    pub fn kind(&self) -> &'static str {
        match self {
            IncomingAuth::Anonymous => "anonymous",
            IncomingAuth::Oidc(_) => "oidc",
            IncomingAuth::Static(_) => "static",
        }
    }
}

/// `incomingAuth: {type: oidc, …}`.
#[derive(Clone, Debug)]
pub struct OidcSettings {
    /// The issuer (`iss`), also where discovery starts.
    pub issuer: String,
    /// The audiences accepted: a token's `aud` must name one of them.
    pub audience: Vec<String>,
    /// The JWKS; found through the issuer's discovery document when not given.
    pub jwks_url: Option<String>,
    /// Scopes every token must carry (else 403 `insufficient_scope`).
    pub required_scopes: Vec<String>,
    /// Clock difference tolerated on `exp` and `nbf`.
    pub clock_skew: Duration,
    /// The MCP endpoint's public URL (RFC 9728 `resource`); by default from `Host`.
    pub resource_url: Option<String>,
    /// Extra CA certificates (PEM) to trust for the issuer's HTTPS.
    pub ca_file: Option<PathBuf>,
}

/// `incomingAuth: {type: static, tokensFile}`.
#[derive(Clone, Debug)]
pub struct StaticSettings {
    /// The file (re-read when it changes).
    pub tokens_file: PathBuf,
    /// The MCP endpoint's public URL (RFC 9728 `resource`); by default from `Host`.
    pub resource_url: Option<String>,
    pub(crate) tokens: Arc<StaticTokens>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct RawIncoming {
    #[serde(rename = "type")]
    kind: Spanned<String>,
    issuer: Option<Spanned<String>>,
    audience: Option<Spanned<OneOrMany>>,
    jwks_url: Option<Spanned<String>>,
    required_scopes: Option<Spanned<Vec<String>>>,
    clock_skew: Option<Spanned<String>>,
    resource_url: Option<Spanned<String>>,
    ca_file: Option<Spanned<String>>,
    tokens_file: Option<Spanned<String>>,
}

/// A string, or a list of them.
#[derive(Deserialize)]
#[serde(untagged)]
pub(crate) enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct RawOutgoing {
    #[serde(rename = "type")]
    kind: Spanned<String>,
    token_env: Option<Spanned<String>>,
    token_file: Option<Spanned<String>>,
}

/// Checks `incomingAuth` (or `statusAuth`) at `key`.
pub(crate) fn incoming(
    c: &Checker<'_>,
    key: &str,
    raw: RawIncoming,
) -> Result<IncomingAuth, ConfigFileError> {
    let line = Some(raw.kind.referenced.line());
    let field = |name: &str| format!("{key}.{name}");
    // Keys of one type written under another are mistakes, not decoration.
    let only = |present: bool, name: &str, kinds: &str| -> Result<(), ConfigFileError> {
        if present {
            c.error(
                &field(name),
                line,
                format!(
                    "{name} applies to type {kinds} only, not {}",
                    raw.kind.value
                ),
            )
        } else {
            Ok(())
        }
    };
    let oidc_keys = [
        (raw.issuer.is_some(), "issuer"),
        (raw.audience.is_some(), "audience"),
        (raw.jwks_url.is_some(), "jwksUrl"),
        (raw.required_scopes.is_some(), "requiredScopes"),
        (raw.clock_skew.is_some(), "clockSkew"),
        (raw.ca_file.is_some(), "caFile"),
    ];
    let resource_url = match &raw.resource_url {
        None => None,
        Some(u) => Some(url(c, &field("resourceUrl"), u)?),
    };
    match raw.kind.value.trim() {
        "anonymous" => {
            for (present, name) in oidc_keys {
                only(present, name, "oidc")?;
            }
            only(raw.tokens_file.is_some(), "tokensFile", "static")?;
            only(raw.resource_url.is_some(), "resourceUrl", "oidc or static")?;
            Ok(IncomingAuth::Anonymous)
        }
        "static" => {
            for (present, name) in oidc_keys {
                only(present, name, "oidc")?;
            }
            let Some(file) = raw.tokens_file else {
                return c.error(
                    &field("tokensFile"),
                    line,
                    "type static needs tokensFile: a file with one bearer token per line",
                );
            };
            let path = PathBuf::from(file.value.trim());
            let tokens = match StaticTokens::open(&path) {
                Ok(t) => t,
                Err(e) => return c.error(&field("tokensFile"), Some(file.referenced.line()), e),
            };
            Ok(IncomingAuth::Static(StaticSettings {
                tokens_file: path,
                resource_url,
                tokens: Arc::new(tokens),
            }))
        }
        "oidc" => {
            only(raw.tokens_file.is_some(), "tokensFile", "static")?;
            let Some(issuer) = raw.issuer else {
                return c.error(
                    &field("issuer"),
                    line,
                    "type oidc needs issuer: the URL tokens name in iss",
                );
            };
            let issuer_url = url(c, &field("issuer"), &issuer)?;
            let audience: Vec<String> = match raw.audience {
                Some(a) => {
                    let list = match a.value {
                        OneOrMany::One(one) => vec![one],
                        OneOrMany::Many(many) => many,
                    };
                    let list: Vec<String> = list.iter().map(|x| x.trim().to_string()).collect();
                    if list.is_empty() || list.iter().any(String::is_empty) {
                        return c.error(&field("audience"), Some(a.referenced.line()), "expected the audience tokens must name (aud), or a list of them, got an empty one");
                    }
                    list
                }
                None => return c.error(&field("audience"), line, "type oidc needs audience: what tokens for this server name in aud (often its URL), or a list of them"),
            };
            let jwks_url = match &raw.jwks_url {
                None => None,
                Some(u) => Some(url(c, &field("jwksUrl"), u)?),
            };
            let required_scopes = match raw.required_scopes {
                None => Vec::new(),
                Some(s) => {
                    if let Some(bad) = s
                        .value
                        .iter()
                        .find(|x| x.trim().is_empty() || x.contains(char::is_whitespace))
                    {
                        return c.error(
                            &field("requiredScopes"),
                            Some(s.referenced.line()),
                            format!("expected scope names without spaces, got {bad:?}"),
                        );
                    }
                    s.value
                }
            };
            let clock_skew = match raw.clock_skew {
                None => Duration::from_secs(60),
                Some(d) => {
                    let line = Some(d.referenced.line());
                    match parse_go_duration(d.value.trim()) {
                        Ok(d) if d <= Duration::from_secs(600) => d,
                        Ok(d) => {
                            return c.error(
                                &field("clockSkew"),
                                line,
                                format!("expected at most 10m, got {d:?}"),
                            );
                        }
                        Err(e) => return c.error(&field("clockSkew"), line, e.to_string()),
                    }
                }
            };
            let ca_file = match raw.ca_file {
                None => None,
                Some(f) => {
                    let path = PathBuf::from(f.value.trim());
                    if let Err(e) = std::fs::metadata(&path) {
                        return c.error(
                            &field("caFile"),
                            Some(f.referenced.line()),
                            format!("{}: cannot read it: {e}", path.display()),
                        );
                    }
                    Some(path)
                }
            };
            Ok(IncomingAuth::Oidc(OidcSettings {
                issuer: issuer_url,
                audience,
                jwks_url,
                required_scopes,
                clock_skew,
                resource_url,
                ca_file,
            }))
        }
        other => c.error(
            &field("type"),
            line,
            format!("expected anonymous, oidc or static, got {other:?}"),
        ),
    }
}

/// An `http(s)://` URL with a host.
fn url(c: &Checker<'_>, key: &str, value: &Spanned<String>) -> Result<String, ConfigFileError> {
    let text = value.value.trim();
    let ok = text
        .parse::<http::Uri>()
        .ok()
        .is_some_and(|u| matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some());
    if ok {
        Ok(text.to_string())
    } else {
        c.error(
            key,
            Some(value.referenced.line()),
            format!("expected an http:// or https:// URL, got {text:?}"),
        )
    }
}

/// A backend's `headers` and `auth` as the credentials its clients and probe send.
pub(crate) fn outgoing(
    c: &Checker<'_>,
    key: &str,
    headers: BTreeMap<String, Spanned<String>>,
    auth: Option<RawOutgoing>,
) -> Result<Credentials, ConfigFileError> {
    let mut builder = Credentials::builder();
    for (name, value) in headers {
        if name.eq_ignore_ascii_case("authorization") && auth.is_some() {
            return c.error(
                &format!("{key}.headers.{name}"),
                Some(value.referenced.line()),
                "give the token either as headers.Authorization or with auth, not both",
            );
        }
        builder = match builder.header(&name, &value.value) {
            Ok(b) => b,
            Err(e) => {
                return c.error(
                    &format!("{key}.headers.{name}"),
                    Some(value.referenced.line()),
                    e.to_string(),
                );
            }
        };
    }
    if let Some(auth) = auth {
        let line = Some(auth.kind.referenced.line());
        if auth.kind.value.trim() != "bearer" {
            return c.error(
                &format!("{key}.auth.type"),
                line,
                format!("expected bearer, got {:?}", auth.kind.value),
            );
        }
        builder = match (auth.token_env, auth.token_file) {
            (Some(var), None) => {
                let name = var.value.trim().to_string();
                let token = std::env::var(&name).unwrap_or_default();
                if token.trim().is_empty() {
                    return c.error(
                        &format!("{key}.auth.tokenEnv"),
                        Some(var.referenced.line()),
                        format!("the environment variable {name} is not set or empty"),
                    );
                }
                builder.bearer(&name, &token).or_else(|e| {
                    c.error(
                        &format!("{key}.auth.tokenEnv"),
                        Some(var.referenced.line()),
                        e.to_string(),
                    )
                })?
            }
            (None, Some(file)) => builder
                .bearer_file(std::path::Path::new(file.value.trim()))
                .or_else(|e| {
                    c.error(
                        &format!("{key}.auth.tokenFile"),
                        Some(file.referenced.line()),
                        e.to_string(),
                    )
                })?,
            _ => {
                return c.error(
                    &format!("{key}.auth"),
                    line,
                    "type bearer needs exactly one of tokenEnv (an environment variable's name) or tokenFile (a file holding the token)",
                );
            }
        };
    }
    Ok(builder.build())
}
