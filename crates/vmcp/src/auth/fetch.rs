//! `GET` a small JSON document over HTTP or HTTPS (an issuer's discovery document, its
//! JWKS): bounded in time and size, TLS verified against the Mozilla roots plus any CA
//! the operator names (`incomingAuth.caFile`).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

/// Discovery documents and key sets are a few KiB; a megabyte is plenty.
const MAX_DOCUMENT: usize = 1024 * 1024;
const TIMEOUT: Duration = Duration::from_secs(10);

/// An HTTP(S) client for documents.
#[derive(Clone)]
pub(crate) struct Fetcher {
    client: Client<HttpsConnector<HttpConnector>, Empty<Bytes>>,
}

impl std::fmt::Debug for Fetcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Fetcher")
    }
}

impl Fetcher {
    /// A client trusting the Mozilla roots and the certificates in `ca_file` (PEM).
    pub(crate) fn new(ca_file: Option<&Path>) -> Result<Self, String> {
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        if let Some(path) = ca_file {
            use rustls_pki_types::pem::PemObject as _;
            let certs = rustls_pki_types::CertificateDer::pem_file_iter(path)
                .map_err(|e| format!("{}: cannot read it: {e}", path.display()))?;
            let mut added = 0;
            for cert in certs {
                let cert =
                    cert.map_err(|e| format!("{}: not PEM certificates ({e})", path.display()))?;
                roots
                    .add(cert)
                    .map_err(|e| format!("{}: a certificate is unusable ({e})", path.display()))?;
                added += 1;
            }
            if added == 0 {
                return Err(format!("{}: holds no PEM certificate", path.display()));
            }
        }
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup failed: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(TIMEOUT));
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        Ok(Fetcher {
            client: Client::builder(TokioExecutor::new()).build(connector),
        })
    }

    /// The JSON document at `url`; the error says what went wrong, naming the URL.
    pub(crate) async fn json(&self, url: &str) -> Result<Value, String> {
        let uri: http::Uri = url.parse().map_err(|e| format!("{url}: not a URL ({e})"))?;
        let request = http::Request::get(uri)
            .header(http::header::ACCEPT, "application/json")
            .body(Empty::new())
            .map_err(|e| format!("{url}: {e}"))?;
        let fetch = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| format!("{url}: {}", hale_mcp::error_chain(&e)))?;
            let status = response.status();
            if !status.is_success() {
                return Err(format!("{url}: HTTP {status}"));
            }
            let body = Limited::new(response.into_body(), MAX_DOCUMENT)
                .collect()
                .await
                .map_err(|e| format!("{url}: reading the body failed or it exceeded 1 MiB ({e})"))?
                .to_bytes();
            serde_json::from_slice(&body).map_err(|e| format!("{url}: not JSON ({e})"))
        };
        tokio::time::timeout(TIMEOUT, fetch)
            .await
            .unwrap_or_else(|_| Err(format!("{url}: no answer within {TIMEOUT:?}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hale_testkit::TestIssuer;

    #[tokio::test]
    async fn an_https_issuer_is_trusted_through_ca_file_and_refused_without_it() {
        let issuer = TestIssuer::start_tls()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(issuer.jwks_url().starts_with("https://127.0.0.1:"));
        let dir = std::env::temp_dir().join(format!("hale-fetch-ca-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let ca = dir.join("ca.pem");
        let _ = std::fs::write(&ca, TestIssuer::TEST_CA_PEM);

        let trusting = Fetcher::new(Some(&ca)).unwrap_or_else(|e| panic!("{e}"));
        let jwks = trusting.json(&issuer.jwks_url()).await;
        assert!(
            jwks.as_ref().is_ok_and(|d| d["keys"][0]["kid"] == "a"),
            "{jwks:?}"
        );

        // The Mozilla roots alone do not know the test CA.
        let strict = Fetcher::new(None).unwrap_or_else(|e| panic!("{e}"));
        let refused = strict.json(&issuer.jwks_url()).await;
        let why = refused.err().unwrap_or_default();
        assert!(why.contains("certificate"), "{why}");

        // A caFile that holds no certificate is refused by name.
        let empty = dir.join("empty.pem");
        let _ = std::fs::write(&empty, "nothing here\n");
        let e = Fetcher::new(Some(&empty)).err().unwrap_or_default();
        assert!(
            e.contains("empty.pem") && e.contains("no PEM certificate"),
            "{e}"
        );
        issuer.shutdown();
        let _ = std::fs::remove_dir_all(&dir);
    }
}
