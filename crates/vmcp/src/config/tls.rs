//! A backend's `tls` keys: how an `https://` backend is reached.

use serde::Deserialize;
use serde_saphyr::Spanned;

use super::check::{Checker, ConfigFileError};

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct RawTls {
    ca_bundle_path: Option<Spanned<String>>,
    client_cert_path: Option<Spanned<String>>,
    client_key_path: Option<Spanned<String>>,
    server_name: Option<Spanned<String>>,
    insecure_skip_verify: Option<Spanned<bool>>,
}

/// Checks `backends[i].tls` (at `key`) for a backend at `url`, reading the files it
/// names. `None`: the defaults (Mozilla's roots, no client certificate).
pub(crate) fn tls(
    c: &Checker<'_>,
    key: &str,
    url: &str,
    raw: Option<Spanned<RawTls>>,
) -> Result<Option<hale_mcp::Tls>, ConfigFileError> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    let line = raw.referenced.line();
    if !url.trim().starts_with("https://") {
        return c.error(
            &format!("{key}.tls"),
            Some(line),
            "tls applies to https:// URLs, and this backend's url is not one: write https:// or remove tls",
        );
    }
    let raw = raw.value;
    let path = |p: &Option<Spanned<String>>| p.as_ref().map(|p| p.value.trim().into());
    let options = hale_mcp::TlsOptions {
        ca_bundle: path(&raw.ca_bundle_path),
        client_cert: path(&raw.client_cert_path),
        client_key: path(&raw.client_key_path),
        server_name: raw.server_name.as_ref().map(|s| s.value.trim().to_string()),
        insecure_skip_verify: raw.insecure_skip_verify.as_ref().is_some_and(|b| b.value),
    };
    hale_mcp::Tls::new(&options).map(Some).or_else(|e| {
        let (sub, reason) = (e.key(), e.reason().to_string());
        // The line of the key at fault, where it was written.
        let at = match sub {
            "caBundlePath" => raw.ca_bundle_path.as_ref(),
            "clientCertPath" => raw.client_cert_path.as_ref(),
            "clientKeyPath" => raw.client_key_path.as_ref(),
            "serverName" => raw.server_name.as_ref(),
            _ => None,
        }
        .map_or(line, |s| s.referenced.line());
        c.error(&format!("{key}.tls.{sub}"), Some(at), reason)
    })
}
