//! Credentials a client sends with every request to its server: fixed headers and a
//! bearer token, the token read from a file that may be rotated while hale runs.
//!
//! ```
//! use hale_mcp::Credentials;
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = std::env::temp_dir().join(format!("hale-doc-{}", std::process::id()));
//! std::fs::create_dir_all(&dir)?;
//! let file = dir.join("token");
//! std::fs::write(&file, "s3cret\n")?;
//! let credentials = Credentials::builder()
//!     .header("X-Tenant", "blue")?
//!     .bearer_file(&file)?
//!     .build();
//! // Values never show up in `Debug` output (nor in any message of hale-mcp).
//! assert!(!format!("{credentials:?}").contains("s3cret"));
//! # std::fs::remove_dir_all(&dir)?;
//! # Ok(()) }
//! ```

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use http::header::{AUTHORIZATION, HeaderName, HeaderValue};
use http::{HeaderMap, Request};

use crate::watched_file::WatchedFile;

/// What a client adds to each request. Cheap to clone; shared by every client of a
/// backend. Values are never printed.
#[derive(Clone, Default)]
pub struct Credentials(Arc<Inner>);

#[derive(Default)]
struct Inner {
    headers: HeaderMap,
    bearer: Option<Bearer>,
}

enum Bearer {
    Fixed(HeaderValue),
    File(WatchedFile<HeaderValue>),
}

/// Why credentials cannot be built. Messages name the header or file, never a value.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    /// Not a valid header name, or one hale sets itself.
    #[error("header {name:?}: {reason}")]
    HeaderName {
        /// The name as given.
        name: String,
        /// Why it is refused.
        reason: &'static str,
    },
    /// The value has characters a header cannot carry (a line break, say).
    #[error("header {name:?}: the value has characters an HTTP header cannot carry")]
    HeaderValue {
        /// The header's name.
        name: String,
    },
    /// The token file cannot be read, is empty or holds more than a token.
    #[error("token file {0}")]
    TokenFile(String),
    /// The token is empty or has characters a bearer token cannot have.
    #[error("{source_name}: {reason}")]
    Token {
        /// Where the token came from (an environment variable's name, a file).
        source_name: String,
        /// What is wrong.
        reason: &'static str,
    },
}

/// Builds [`Credentials`].
#[derive(Debug, Default)]
pub struct CredentialsBuilder {
    headers: HeaderMap,
    bearer: Option<BearerSource>,
}

#[derive(Debug)]
enum BearerSource {
    Fixed(HeaderValue),
    File(WatchedFile<HeaderValue>),
}

/// Headers a configured credential may not set: hale sets them itself, or they belong
/// to the connection.
const RESERVED: &[&str] = &[
    "host",
    "content-length",
    "content-type",
    "transfer-encoding",
    "connection",
    "accept",
    "mcp-session-id",
    "mcp-protocol-version",
    "mcp-method",
    "mcp-name",
    "last-event-id",
    "upgrade",
    "te",
    "trailer",
    "keep-alive",
    "proxy-connection",
];

impl Credentials {
    /// Starts building credentials.
    pub fn builder() -> CredentialsBuilder {
        CredentialsBuilder::default()
    }

    /// True if nothing is added to requests.
    pub fn is_empty(&self) -> bool {
        self.0.headers.is_empty() && self.0.bearer.is_none()
    }

    /// Adds the headers (and the current bearer token) to `request`.
    pub(crate) fn apply<B>(&self, request: &mut Request<B>) {
        let headers = request.headers_mut();
        for (name, value) in &self.0.headers {
            headers.insert(name.clone(), value.clone());
        }
        match &self.0.bearer {
            None => {}
            Some(Bearer::Fixed(value)) => {
                headers.insert(AUTHORIZATION, value.clone());
            }
            Some(Bearer::File(file)) => {
                headers.insert(AUTHORIZATION, file.get(Instant::now()));
            }
        }
    }

    /// True if `other` adds the same to requests: the same headers and values, and the
    /// same fixed token or token file (a configuration reload keeps a backend whose
    /// credentials did not change).
    pub fn same_as(&self, other: &Credentials) -> bool {
        self.0.headers == other.0.headers
            && match (&self.0.bearer, &other.0.bearer) {
                (None, None) => true,
                (Some(Bearer::Fixed(a)), Some(Bearer::Fixed(b))) => a == b,
                (Some(Bearer::File(a)), Some(Bearer::File(b))) => a.path() == b.path(),
                _ => false,
            }
    }

    /// What is configured, without values: header names, and where the token comes from.
    pub fn describe(&self) -> serde_json::Value {
        let headers: Vec<&str> = self.0.headers.keys().map(HeaderName::as_str).collect();
        let bearer = match &self.0.bearer {
            None => serde_json::Value::Null,
            Some(Bearer::Fixed(_)) => "bearer (fixed)".into(),
            Some(Bearer::File(f)) => format!("bearer (file {})", f.path().display()).into(),
        };
        serde_json::json!({"headers": headers, "auth": bearer})
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.0.headers.keys().map(HeaderName::as_str).collect();
        let bearer = match &self.0.bearer {
            None => "none",
            Some(Bearer::Fixed(_)) => "fixed",
            Some(Bearer::File(_)) => "file",
        };
        f.debug_struct("Credentials")
            .field("headers", &names)
            .field("bearer", &bearer)
            .finish()
    }
}

impl CredentialsBuilder {
    /// A header sent with every request. Refused: invalid names, headers hale or the
    /// connection sets (`Host`, `Mcp-Session-Id`, …), and values with line breaks.
    pub fn header(mut self, name: &str, value: &str) -> Result<Self, CredentialsError> {
        let refuse = |reason| CredentialsError::HeaderName {
            name: name.to_string(),
            reason,
        };
        let parsed = HeaderName::from_bytes(name.trim().as_bytes())
            .map_err(|_| refuse("not a valid HTTP header name"))?;
        if RESERVED.contains(&parsed.as_str()) {
            return Err(refuse(
                "hale sets this header itself; it cannot be configured",
            ));
        }
        let mut value =
            HeaderValue::from_str(value.trim()).map_err(|_| CredentialsError::HeaderValue {
                name: name.to_string(),
            })?;
        value.set_sensitive(true);
        self.headers.insert(parsed, value);
        Ok(self)
    }

    /// A bearer token, fixed for the process's life (from an environment variable, say:
    /// `source_name` names it in errors).
    pub fn bearer(mut self, source_name: &str, token: &str) -> Result<Self, CredentialsError> {
        let value = bearer_value(token).map_err(|reason| CredentialsError::Token {
            source_name: source_name.to_string(),
            reason,
        })?;
        self.bearer = Some(BearerSource::Fixed(value));
        Ok(self)
    }

    /// A bearer token read from `path` now (it must be there and hold a token) and again
    /// whenever the file changes, looked at no more than once per [`crate::FILE_RECHECK`]
    /// (Kubernetes swaps a mounted secret's files in place). If a later read fails, the
    /// last good token stays in use.
    pub fn bearer_file(mut self, path: &Path) -> Result<Self, CredentialsError> {
        let file = WatchedFile::open(path, |text| bearer_value(text).map_err(str::to_string))
            .map_err(CredentialsError::TokenFile)?;
        self.bearer = Some(BearerSource::File(file));
        Ok(self)
    }

    /// The credentials.
    pub fn build(self) -> Credentials {
        let bearer = match self.bearer {
            None => None,
            Some(BearerSource::Fixed(value)) => Some(Bearer::Fixed(value)),
            Some(BearerSource::File(file)) => Some(Bearer::File(file)),
        };
        Credentials(Arc::new(Inner {
            headers: self.headers,
            bearer,
        }))
    }
}

/// `Bearer <token>`, marked sensitive; the token must be non-empty, one line, no spaces.
fn bearer_value(token: &str) -> Result<HeaderValue, &'static str> {
    let token = token.trim();
    if token.is_empty() {
        return Err("the token is empty");
    }
    if token.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(
            "the token has white space or control characters (expected one token on one line)",
        );
    }
    let mut value = HeaderValue::from_str(&format!("Bearer {token}"))
        .map_err(|_| "the token has characters an HTTP header cannot carry")?;
    value.set_sensitive(true);
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn temp_file(name: &str, text: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("hale-credentials-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap_or_default();
        let path = dir.join("token");
        std::fs::write(&path, text).unwrap_or_default();
        path
    }

    fn authorization(c: &Credentials, now: Instant) -> String {
        match &c.0.bearer {
            Some(Bearer::File(f)) => f.get(now).to_str().unwrap_or_default().to_string(),
            _ => {
                let mut r = Request::new(());
                c.apply(&mut r);
                r.headers()
                    .get(AUTHORIZATION)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_string()
            }
        }
    }

    #[test]
    fn headers_and_a_fixed_token_are_added_and_never_printed() {
        let c = Credentials::builder()
            .header("X-Api-Key", "k-123")
            .and_then(|b| b.bearer("HALE_TOKEN", "t-456"))
            .map(CredentialsBuilder::build);
        let Ok(c) = c else {
            panic!("valid credentials refused: {c:?}");
        };
        let mut r = Request::new(());
        c.apply(&mut r);
        assert_eq!(r.headers()["x-api-key"], "k-123");
        assert_eq!(r.headers()[AUTHORIZATION], "Bearer t-456");
        assert!(r.headers()[AUTHORIZATION].is_sensitive());
        let printed = format!("{c:?} {}", c.describe());
        assert!(
            !printed.contains("k-123") && !printed.contains("t-456"),
            "{printed}"
        );
        assert!(printed.contains("x-api-key"), "{printed}");
    }

    #[test]
    fn reserved_and_malformed_headers_are_refused_by_name_without_the_value() {
        for (name, value) in [
            ("Mcp-Session-Id", "x"),
            ("Host", "x"),
            ("bad name", "x"),
            ("X-Ok", "line\nbreak-secret"),
        ] {
            let e = Credentials::builder().header(name, value).err();
            let message = e.map(|e| e.to_string()).unwrap_or_default();
            assert!(message.contains(name), "{name}: {message}");
            assert!(!message.contains("secret"), "{message}");
        }
        let e = Credentials::builder()
            .bearer("HALE_TOKEN", "two words")
            .err();
        assert!(e.is_some_and(|e| e.to_string().contains("HALE_TOKEN")));
    }

    #[test]
    fn a_token_file_must_hold_a_token_and_a_rotated_one_is_used_after_the_recheck() {
        let missing = std::env::temp_dir().join("hale-credentials-no-such-file");
        let e = Credentials::builder().bearer_file(&missing).err();
        assert!(e.is_some_and(|e| e.to_string().contains("hale-credentials-no-such-file")));
        let empty = temp_file("empty", "  \n");
        let e = Credentials::builder().bearer_file(&empty).err();
        assert!(e.is_some_and(|e| e.to_string().contains("empty")));

        let path = temp_file("rotate", "first\n");
        let Ok(b) = Credentials::builder().bearer_file(&path) else {
            panic!("a token file was refused");
        };
        let c = b.build();
        let t0 = Instant::now();
        assert_eq!(authorization(&c, t0), "Bearer first");
        // A different size, so the change shows even where mtimes are coarse.
        std::fs::write(&path, "second-token\n").unwrap_or_default();
        assert_eq!(
            authorization(&c, t0),
            "Bearer first",
            "looked again too soon"
        );
        assert_eq!(
            authorization(&c, t0 + crate::FILE_RECHECK),
            "Bearer second-token"
        );
        // A broken rotation keeps the last good token.
        std::fs::write(&path, "").unwrap_or_default();
        assert_eq!(
            authorization(&c, t0 + crate::FILE_RECHECK * 2),
            "Bearer second-token"
        );
        let _ = std::fs::remove_dir_all(path.parent().unwrap_or(&path));
    }
}
