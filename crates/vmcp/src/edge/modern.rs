//! MCP 2026-07-28 on the client edge: no session, every request carries its version in
//! `_meta` and mirrors it in headers, which must agree with the body.

use http::{HeaderMap, StatusCode};
use serde_json::{Value, json};

use crate::message::RpcError;

/// The modern protocol version hale serves.
pub(crate) const VERSION: &str = "2026-07-28";
/// Legacy versions hale serves through `initialize`, newest first.
pub(crate) const LEGACY_VERSIONS: [&str; 4] =
    ["2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"];

pub(crate) const META_VERSION: &str = "io.modelcontextprotocol/protocolVersion";
pub(crate) const META_SUBSCRIPTION: &str = "io.modelcontextprotocol/subscriptionId";
const META_CAPABILITIES: &str = "io.modelcontextprotocol/clientCapabilities";
const META_SERVER_INFO: &str = "io.modelcontextprotocol/serverInfo";

/// Whether a request without a session speaks the modern era: it says so in a header or
/// in its `_meta`.
pub(crate) fn is_modern(headers: &HeaderMap, params: &Value) -> bool {
    header(headers, "mcp-protocol-version").is_some_and(|v| !LEGACY_VERSIONS.contains(&v))
        || params
            .get("_meta")
            .and_then(|m| m.get(META_VERSION))
            .is_some()
}

/// Checks a modern request's headers against its body (spec: Server Validation).
pub(crate) fn validate(
    headers: &HeaderMap,
    method: &str,
    params: &Value,
) -> Result<(), (StatusCode, RpcError)> {
    let mismatch = |what: String| {
        (
            StatusCode::BAD_REQUEST,
            RpcError::new(-32020, format!("header mismatch: {what}")),
        )
    };
    let invalid = |what: String| {
        (
            StatusCode::BAD_REQUEST,
            RpcError::new(-32602, format!("invalid params: {what}")),
        )
    };
    let Some(meta) = params.get("_meta").filter(|m| m.is_object()) else {
        return Err(invalid(
            "_meta is missing: every 2026-07-28 request carries it".into(),
        ));
    };
    let Some(in_body) = meta.get(META_VERSION).and_then(Value::as_str) else {
        return Err(invalid(format!("_meta[\"{META_VERSION}\"] is missing")));
    };
    if !meta.get(META_CAPABILITIES).is_some_and(Value::is_object) {
        return Err(invalid(format!(
            "_meta[\"{META_CAPABILITIES}\"] is missing"
        )));
    }
    let requested = match header(headers, "mcp-protocol-version") {
        Some(h) if h == in_body => h,
        Some(h) => {
            return Err(mismatch(format!(
                "MCP-Protocol-Version is {h:?} but _meta says {in_body:?}"
            )));
        }
        None => {
            return Err(mismatch(
                "the MCP-Protocol-Version header is missing".into(),
            ));
        }
    };
    if requested != VERSION {
        let mut supported = vec![VERSION];
        supported.extend(LEGACY_VERSIONS);
        return Err((
            StatusCode::BAD_REQUEST,
            RpcError::new(
                -32022,
                format!("unsupported protocol version {requested:?}"),
            )
            .with_data(json!({"supported": supported, "requested": requested})),
        ));
    }
    match header(headers, "mcp-method") {
        Some(m) if m == method => {}
        Some(m) => {
            return Err(mismatch(format!(
                "Mcp-Method is {m:?} but the body's method is {method:?}"
            )));
        }
        None => return Err(mismatch("the Mcp-Method header is missing".into())),
    }
    let named = match method {
        "tools/call" | "prompts/get" => params.get("name").and_then(Value::as_str),
        "resources/read" => params.get("uri").and_then(Value::as_str),
        _ => return Ok(()),
    };
    let in_header = header(headers, "mcp-name").map(decode);
    match (in_header, named) {
        (Some(Some(h)), Some(b)) if h == b => Ok(()),
        (None, _) => Err(mismatch("the Mcp-Name header is missing".into())),
        (Some(h), b) => Err(mismatch(format!(
            "Mcp-Name is {:?} but the body names {:?}",
            h.unwrap_or_default(),
            b.unwrap_or_default()
        ))),
    }
}

/// A header value as text.
fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
}

/// A header value, decoded from the `=?base64?…?=` form where it uses it.
fn decode(value: &str) -> Option<String> {
    match value
        .strip_prefix("=?base64?")
        .and_then(|v| v.strip_suffix("?="))
    {
        Some(encoded) => {
            use base64::Engine;
            // Padded or not, standard or URL-safe alphabet: whatever a client sent.
            let clean: String = encoded
                .chars()
                .filter(|&c| c != '=')
                .map(|c| match c {
                    '-' => '+',
                    '_' => '/',
                    c => c,
                })
                .collect();
            base64::engine::general_purpose::STANDARD_NO_PAD
                .decode(clean)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
        }
        None => Some(value.to_string()),
    }
}

/// The `server/discover` result: hale's own identity and capabilities over its backends.
pub(crate) fn discover(name: &str, instructions: Option<String>, ttl_ms: u64) -> Value {
    let mut supported = vec![VERSION];
    supported.extend(LEGACY_VERSIONS);
    let mut result = json!({
        "resultType": "complete",
        "supportedVersions": supported,
        "capabilities": {
            "tools": {"listChanged": true},
            "resources": {"listChanged": true, "subscribe": true},
            "prompts": {"listChanged": true},
        },
        "_meta": {META_SERVER_INFO: {"name": name, "version": env!("CARGO_PKG_VERSION")}},
        "ttlMs": ttl_ms,
        "cacheScope": "public",
    });
    if let Some(text) = instructions {
        result["instructions"] = Value::String(text);
    }
    result
}

/// What a `subscriptions/listen` stream carries: the subset of the client's filter hale
/// honours (every list change; resource updates for the URIs given).
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Filter {
    pub(crate) tools: bool,
    pub(crate) prompts: bool,
    pub(crate) resources: bool,
    pub(crate) resource_uris: Vec<String>,
}

impl Filter {
    pub(crate) fn from_params(params: &Value) -> Filter {
        let n = &params["notifications"];
        let yes = |k: &str| n.get(k).and_then(Value::as_bool).unwrap_or(false);
        Filter {
            tools: yes("toolsListChanged"),
            prompts: yes("promptsListChanged"),
            resources: yes("resourcesListChanged"),
            resource_uris: n
                .get("resourceSubscriptions")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|u| u.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default(),
        }
    }

    /// The `notifications` object of the acknowledgement.
    pub(crate) fn to_value(&self) -> Value {
        let mut v = serde_json::Map::new();
        if self.tools {
            v.insert("toolsListChanged".into(), Value::Bool(true));
        }
        if self.prompts {
            v.insert("promptsListChanged".into(), Value::Bool(true));
        }
        if self.resources {
            v.insert("resourcesListChanged".into(), Value::Bool(true));
        }
        if !self.resource_uris.is_empty() {
            v.insert("resourceSubscriptions".into(), json!(self.resource_uris));
        }
        Value::Object(v)
    }
}

/// Tags a notification's params with the subscription it belongs to.
pub(crate) fn tagged(params: Value, subscription: &Value) -> Value {
    let mut params = match params {
        Value::Object(m) => Value::Object(m),
        _ => json!({}),
    };
    match params.get_mut("_meta") {
        Some(Value::Object(meta)) => {
            meta.insert(META_SUBSCRIPTION.into(), subscription.clone());
        }
        _ => params["_meta"] = json!({META_SUBSCRIPTION: subscription}),
    }
    params
}

/// The capability profile of a 2026-07-28 request: what its `_meta` says the client can do.
pub(crate) fn profile(params: &Value) -> crate::upstream::Profile {
    let declared = params
        .get("_meta")
        .and_then(|m| m.get(META_CAPABILITIES))
        .unwrap_or(&Value::Null);
    crate::upstream::Profile::of(declared)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    fn meta(version: &str) -> Value {
        json!({"name": "echo", "_meta": {META_VERSION: version, META_CAPABILITIES: {}}})
    }

    #[test]
    fn headers_must_agree_with_the_body() {
        let ok = headers(&[
            ("mcp-protocol-version", VERSION),
            ("mcp-method", "tools/call"),
            ("mcp-name", "echo"),
        ]);
        assert!(validate(&ok, "tools/call", &meta(VERSION)).is_ok());
        let b64 = headers(&[
            ("mcp-protocol-version", VERSION),
            ("mcp-method", "tools/call"),
            ("mcp-name", "=?base64?ZWNobw==?="),
        ]);
        assert!(
            validate(&b64, "tools/call", &meta(VERSION)).is_ok(),
            "base64 form"
        );
        for (h, method, params) in [
            (
                headers(&[
                    ("mcp-protocol-version", VERSION),
                    ("mcp-method", "tools/list"),
                ]),
                "tools/call",
                meta(VERSION),
            ),
            (
                headers(&[
                    ("mcp-protocol-version", VERSION),
                    ("mcp-method", "tools/call"),
                    ("mcp-name", "other"),
                ]),
                "tools/call",
                meta(VERSION),
            ),
            (
                headers(&[
                    ("mcp-protocol-version", VERSION),
                    ("mcp-method", "tools/call"),
                ]),
                "tools/call",
                meta(VERSION),
            ),
            (
                headers(&[("mcp-method", "tools/list")]),
                "tools/list",
                meta(VERSION),
            ),
            (
                headers(&[
                    ("mcp-protocol-version", "2025-06-18"),
                    ("mcp-method", "tools/list"),
                ]),
                "tools/list",
                meta(VERSION),
            ),
        ] {
            let (status, e) = validate(&h, method, &params).unwrap_err();
            assert_eq!((status, e.code), (StatusCode::BAD_REQUEST, -32020), "{h:?}");
        }
    }

    #[test]
    fn missing_meta_is_invalid_params() {
        let h = headers(&[
            ("mcp-protocol-version", VERSION),
            ("mcp-method", "tools/list"),
        ]);
        for params in [
            json!({}),
            json!({"_meta": {META_CAPABILITIES: {}}}),
            json!({"_meta": {META_VERSION: VERSION}}),
        ] {
            let (status, e) = validate(&h, "tools/list", &params).unwrap_err();
            assert_eq!(
                (status, e.code),
                (StatusCode::BAD_REQUEST, -32602),
                "{params}"
            );
        }
    }

    #[test]
    fn an_unsupported_version_names_what_is_supported() {
        let h = headers(&[
            ("mcp-protocol-version", "2027-01-01"),
            ("mcp-method", "tools/list"),
        ]);
        let (status, e) = validate(&h, "tools/list", &meta("2027-01-01")).unwrap_err();
        assert_eq!((status, e.code), (StatusCode::BAD_REQUEST, -32022));
        let data = e.data.unwrap();
        assert_eq!(data["requested"], "2027-01-01");
        assert_eq!(data["supported"][0], VERSION);
    }

    #[test]
    fn the_acknowledged_filter_and_tags() {
        let f = Filter::from_params(
            &json!({"notifications": {"toolsListChanged": true, "resourceSubscriptions": ["a://1"]}}),
        );
        assert_eq!(
            f.to_value(),
            json!({"toolsListChanged": true, "resourceSubscriptions": ["a://1"]})
        );
        let t = tagged(json!({"uri": "a://1"}), &json!(7));
        assert_eq!(t["_meta"][META_SUBSCRIPTION], 7);
        assert_eq!(t["uri"], "a://1");
    }
}
