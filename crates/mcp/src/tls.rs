//! TLS to a server: which certificates to trust, which to present, which name to
//! expect. The CA bundle, client certificate and key are files read at start and read
//! again when they change (a rotated Kubernetes secret), the last good ones kept if a new
//! version cannot be used.
//!
//! ```
//! use hale_mcp::{Tls, TlsOptions};
//! // Mozilla's roots, nothing presented: what an `https://` URL gets by default.
//! let tls = Tls::new(&TlsOptions::default()).unwrap();
//! assert!(tls.describe().is_null());
//! // A file that is not there is an error naming it (and only it).
//! let e = Tls::new(&TlsOptions {
//!     ca_bundle: Some("/nonexistent/ca.pem".into()),
//!     ..TlsOptions::default()
//! })
//! .unwrap_err();
//! assert!(e.to_string().starts_with("caBundlePath: /nonexistent/ca.pem"), "{e}");
//! ```

use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock, PoisonError, RwLock};
use std::time::Instant;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{ResolvesClientCert, WebPkiServerVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::sign::CertifiedKey;
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};

use crate::watched_file::WatchedFile;

/// How to reach a server over TLS (a backend's `tls` keys, the proxy's `--target-*`
/// flags). The default trusts Mozilla's roots and presents no certificate.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsOptions {
    /// PEM CA certificates trusted besides Mozilla's roots (`caBundlePath`).
    pub ca_bundle: Option<PathBuf>,
    /// A PEM certificate chain presented to servers that ask (`clientCertPath`).
    pub client_cert: Option<PathBuf>,
    /// Its PEM private key (`clientKeyPath`).
    pub client_key: Option<PathBuf>,
    /// The name the server's certificate must carry (and the SNI sent), instead of the
    /// URL's host (`serverName`).
    pub server_name: Option<String>,
    /// Accept any certificate (`insecureSkipVerify`): for a test bench only.
    pub insecure_skip_verify: bool,
}

/// Why TLS settings cannot be used. Names the key and the file, never a key's content.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file cannot be read or holds nothing usable.
    #[error("{key}: {reason}")]
    File {
        /// `caBundlePath`, `clientCertPath` or `clientKeyPath`.
        key: &'static str,
        /// The file and what is wrong with it.
        reason: String,
    },
    /// Something else about the settings (a certificate without a key, a bad name).
    #[error("{key}: {reason}")]
    Setting {
        /// The key.
        key: &'static str,
        /// What is wrong.
        reason: String,
    },
}

impl TlsError {
    /// The key at fault (`caBundlePath`, `clientCertPath`, `clientKeyPath`,
    /// `serverName`), for a message in the caller's terms (a file's key, a flag).
    pub fn key(&self) -> &'static str {
        match self {
            TlsError::File { key, .. } | TlsError::Setting { key, .. } => key,
        }
    }

    /// What is wrong, without the key.
    pub fn reason(&self) -> &str {
        match self {
            TlsError::File { reason, .. } | TlsError::Setting { reason, .. } => reason,
        }
    }
}

/// Built TLS settings: cheap to clone, shared by every connection to one server.
#[derive(Clone)]
pub struct Tls {
    options: Arc<TlsOptions>,
    config: Arc<ClientConfig>,
}

impl fmt::Debug for Tls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tls")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl PartialEq for Tls {
    fn eq(&self, other: &Self) -> bool {
        self.options == other.options
    }
}

impl Default for Tls {
    fn default() -> Self {
        static DEFAULT: OnceLock<Tls> = OnceLock::new();
        DEFAULT
            .get_or_init(|| {
                #[allow(clippy::expect_used)] // no files, nothing that can fail
                Tls::new(&TlsOptions::default()).expect("default TLS settings")
            })
            .clone()
    }
}

fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| Arc::new(rustls::crypto::ring::default_provider()))
        .clone()
}

impl Tls {
    /// Reads the files `options` names and builds the settings.
    pub fn new(options: &TlsOptions) -> Result<Tls, TlsError> {
        if let Some(name) = &options.server_name {
            ServerName::try_from(name.clone()).map_err(|e| TlsError::Setting {
                key: "serverName",
                reason: format!("{name:?} is not a DNS name or IP address: {e}"),
            })?;
        }
        let ca = match (&options.ca_bundle, options.insecure_skip_verify) {
            (Some(path), false) => Some(WatchedFile::open(path, parse_verifier).map_err(
                |reason| TlsError::File {
                    key: "caBundlePath",
                    reason,
                },
            )?),
            _ => None,
        };
        let verifier: Arc<dyn ServerCertVerifier> = Arc::new(Verifier {
            default: parse_verifier("").map_err(|reason| TlsError::Setting {
                key: "caBundlePath",
                reason,
            })?,
            ca,
            insecure: options.insecure_skip_verify,
        });
        let builder = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Setting {
                key: "tls",
                reason: e.to_string(),
            })?
            .dangerous()
            .with_custom_certificate_verifier(verifier);
        let config = match (&options.client_cert, &options.client_key) {
            (None, None) => builder.with_no_client_auth(),
            (Some(cert), Some(key)) => {
                builder.with_client_cert_resolver(Arc::new(ClientCert::open(cert, key)?))
            }
            (Some(_), None) => {
                return Err(TlsError::Setting {
                    key: "clientKeyPath",
                    reason: "clientCertPath is set without its key: set clientKeyPath too".into(),
                });
            }
            (None, Some(_)) => {
                return Err(TlsError::Setting {
                    key: "clientCertPath",
                    reason: "clientKeyPath is set without its certificate: set clientCertPath too"
                        .into(),
                });
            }
        };
        if options.insecure_skip_verify {
            tracing::warn!(
                "tls.insecureSkipVerify: any certificate is accepted, so anyone on the path can read and change this traffic; never use it in production"
            );
        }
        Ok(Tls {
            options: Arc::new(options.clone()),
            config: Arc::new(config),
        })
    }

    /// The settings it was built from.
    pub fn options(&self) -> &TlsOptions {
        &self.options
    }

    /// The rustls configuration (for a connection made by hand, as the proxy does).
    pub fn client_config(&self) -> Arc<ClientConfig> {
        self.config.clone()
    }

    /// The name to verify and send as SNI for a server at `host`.
    pub fn server_name(&self, host: &str) -> Result<ServerName<'static>, String> {
        let name = self.options.server_name.as_deref().unwrap_or(host);
        let name = name
            .strip_prefix('[')
            .and_then(|n| n.strip_suffix(']'))
            .unwrap_or(name);
        ServerName::try_from(name.to_string()).map_err(|e| format!("{name:?}: {e}"))
    }

    /// What a failed connection means, if TLS is why: the reason an operator can act
    /// on (`None` for any other failure).
    pub fn explain(err: &(dyn std::error::Error + 'static)) -> Option<String> {
        explain(err)
    }

    /// What `/status` shows: the files and switches, `null` for the defaults.
    pub fn describe(&self) -> serde_json::Value {
        let o = &*self.options;
        if *o == TlsOptions::default() {
            return serde_json::Value::Null;
        }
        let path = |p: &Option<PathBuf>| p.as_ref().map(|p| p.display().to_string());
        serde_json::json!({
            "caBundlePath": path(&o.ca_bundle),
            "clientCertPath": path(&o.client_cert),
            // The key's path, never the key: configuration.md promises every file path.
            "clientKeyPath": path(&o.client_key),
            "serverName": o.server_name,
            "insecureSkipVerify": o.insecure_skip_verify,
        })
    }
}

/// Mozilla's roots plus the PEM certificates in `text` (none for the defaults).
fn parse_verifier(text: &str) -> Result<Arc<WebPkiServerVerifier>, String> {
    let mut roots = RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if !text.is_empty() {
        let mut added = 0;
        for cert in CertificateDer::pem_slice_iter(text.as_bytes()) {
            let cert = cert.map_err(|e| format!("not a PEM certificate bundle: {e}"))?;
            roots
                .add(cert)
                .map_err(|e| format!("a certificate in it cannot be a CA: {e}"))?;
            added += 1;
        }
        if added == 0 {
            return Err("holds no PEM certificate (-----BEGIN CERTIFICATE-----)".into());
        }
    }
    WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider())
        .build()
        .map_err(|e| e.to_string())
}

/// Checks servers against Mozilla's roots and the CA bundle as the file is now; with
/// `insecure` (`insecureSkipVerify`) any certificate for any name passes, though the
/// handshake's signatures are still checked (encrypted, not authenticated).
#[derive(Debug)]
struct Verifier {
    default: Arc<WebPkiServerVerifier>,
    ca: Option<WatchedFile<Arc<WebPkiServerVerifier>>>,
    insecure: bool,
}

impl Verifier {
    fn current(&self) -> Arc<WebPkiServerVerifier> {
        match &self.ca {
            Some(file) => file.get(Instant::now()),
            None => self.default.clone(),
        }
    }
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if self.insecure {
            return Ok(ServerCertVerified::assertion());
        }
        self.current()
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.default.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.default.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.default.supported_verify_schemes()
    }
}

type Chain = Arc<Vec<CertificateDer<'static>>>;
type Key = Arc<PrivateKeyDer<'static>>;

/// The client certificate and key as their files are now; a pair that does not match
/// (one file rotated, the other not yet) keeps the last good pair in use.
struct ClientCert {
    cert: WatchedFile<Chain>,
    key: WatchedFile<Key>,
    current: RwLock<(Chain, Key, Arc<CertifiedKey>)>,
}

impl fmt::Debug for ClientCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The key's file is named; its content never.
        f.debug_struct("ClientCert")
            .field("cert", &self.cert.path())
            .field("key", &self.key.path())
            .finish()
    }
}

impl ClientCert {
    fn open(cert: &std::path::Path, key: &std::path::Path) -> Result<Self, TlsError> {
        let cert = WatchedFile::open(cert, parse_chain).map_err(|reason| TlsError::File {
            key: "clientCertPath",
            reason,
        })?;
        let key = WatchedFile::open(key, parse_key).map_err(|reason| TlsError::File {
            key: "clientKeyPath",
            reason,
        })?;
        let (c, k) = (cert.get(Instant::now()), key.get(Instant::now()));
        let certified = certify(&c, &k).map_err(|reason| TlsError::Setting {
            key: "clientKeyPath",
            reason,
        })?;
        Ok(ClientCert {
            cert,
            key,
            current: RwLock::new((c, k, certified)),
        })
    }

    fn get(&self) -> Arc<CertifiedKey> {
        let (c, k) = (self.cert.get(Instant::now()), self.key.get(Instant::now()));
        {
            let now = self.current.read().unwrap_or_else(PoisonError::into_inner);
            if Arc::ptr_eq(&now.0, &c) && Arc::ptr_eq(&now.1, &k) {
                return now.2.clone();
            }
        }
        let mut now = self.current.write().unwrap_or_else(PoisonError::into_inner);
        match certify(&c, &k) {
            Ok(certified) => {
                tracing::info!(file = %self.cert.path().display(), "the client certificate changed: the new one is presented");
                *now = (c, k, certified);
            }
            Err(e) => {
                tracing::warn!(file = %self.cert.path().display(), error = %e, "the client certificate or key changed but they cannot be used together: the last good pair stays in use");
                // Not tried again until a file changes once more.
                now.0 = c;
                now.1 = k;
            }
        }
        now.2.clone()
    }
}

impl ResolvesClientCert for ClientCert {
    fn resolve(&self, _: &[&[u8]], _: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        Some(self.get())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

fn parse_chain(text: &str) -> Result<Chain, String> {
    let chain: Vec<_> = CertificateDer::pem_slice_iter(text.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| format!("not a PEM certificate chain: {e}"))?;
    if chain.is_empty() {
        return Err("holds no PEM certificate (-----BEGIN CERTIFICATE-----)".into());
    }
    Ok(Arc::new(chain))
}

fn parse_key(text: &str) -> Result<Key, String> {
    PrivateKeyDer::from_pem_slice(text.as_bytes())
        .map(Arc::new)
        .map_err(|e| format!("holds no usable PEM private key: {e}"))
}

fn certify(chain: &Chain, key: &Key) -> Result<Arc<CertifiedKey>, String> {
    CertifiedKey::from_der(chain.to_vec(), key.clone_key(), &provider())
        .map(Arc::new)
        .map_err(|e| format!("the key does not go with the certificate: {e}"))
}

/// What a TLS failure means for an operator, if `err` (or a cause of it) is one.
pub(crate) fn explain(err: &(dyn std::error::Error + 'static)) -> Option<String> {
    find(err, 0).map(reason)
}

/// The TLS error in `err`'s causes. An `io::Error` is looked inside (its `source()`
/// skips the error it wraps, and a connector may wrap one `io::Error` in another).
fn find<'e>(err: &'e (dyn std::error::Error + 'static), depth: u8) -> Option<&'e rustls::Error> {
    if depth > 16 {
        return None;
    }
    if let Some(tls) = err.downcast_ref::<rustls::Error>() {
        return Some(tls);
    }
    if let Some(inner) = err
        .downcast_ref::<std::io::Error>()
        .and_then(|io| io.get_ref())
        && let Some(tls) = find(inner, depth + 1)
    {
        return Some(tls);
    }
    find(err.source()?, depth + 1)
}

fn reason(e: &rustls::Error) -> String {
    use rustls::AlertDescription as A;
    match e {
        rustls::Error::InvalidCertificate(c) => match c {
            CertificateError::UnknownIssuer => "TLS: the server's certificate is signed by an unknown issuer: add its CA certificate to tls.caBundlePath (hale proxy: --target-ca-bundle)".into(),
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => format!("TLS: the server's certificate is not valid for the name asked for ({c}): check the URL's host, or set tls.serverName (hale proxy: --target-server-name) to a name the certificate carries"),
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => format!("TLS: the server's certificate has expired ({c}): renew it on the server"),
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => format!("TLS: the server's certificate is not valid yet ({c}): check the clocks"),
            CertificateError::Revoked => "TLS: the server's certificate is revoked".into(),
            other => format!("TLS: the server's certificate is refused: {other}"),
        },
        rustls::Error::AlertReceived(A::CertificateRequired) => "TLS: the server requires a client certificate: set tls.clientCertPath and tls.clientKeyPath (hale proxy: --target-client-cert and --target-client-key)".into(),
        rustls::Error::AlertReceived(a @ (A::BadCertificate | A::UnknownCA | A::CertificateUnknown | A::AccessDenied | A::DecryptError)) => format!("TLS: the server refused the client certificate ({a:?}): check tls.clientCertPath against the CA the server trusts"),
        rustls::Error::AlertReceived(A::HandshakeFailure) => "TLS: the server ended the handshake (handshake_failure): it may require a client certificate (tls.clientCertPath) or share no cipher suite or version with hale".into(),
        rustls::Error::InvalidMessage(_) | rustls::Error::InappropriateMessage { .. } => format!("TLS: the server does not speak TLS here ({e}): is the URL's scheme right (http:// or https://)?"),
        other => format!("TLS: the handshake failed: {other}"),
    }
}
