//! CORS for browser-based MCP clients, as a pure decision: which headers answer a
//! preflight, and which go on every other response, for an `Origin` that
//! [`HostPolicy`](crate::HostPolicy) already allowed (others are refused before this).
//!
//! The allowed origin is echoed, never `*`, with `Vary: Origin`; no
//! `Access-Control-Allow-Credentials` (MCP clients send their token in
//! `Authorization`, not in cookies). A preflight allows the headers MCP's transports use
//! and the ones the browser says it will send (the origin is one the operator trusts).
//!
//! ```
//! use hale_core::cors;
//!
//! let pre = cors::preflight("http://localhost:6274", Some("authorization, mcp-protocol-version"));
//! assert!(pre.contains(&("access-control-allow-origin", "http://localhost:6274".to_string())));
//! let every = cors::response("http://localhost:6274");
//! assert!(every.iter().any(|(n, v)| *n == "access-control-expose-headers" && v.contains("Mcp-Session-Id")));
//! ```

/// Methods the MCP transports use.
pub const ALLOW_METHODS: &str = "GET, POST, DELETE, OPTIONS";

/// Request headers the MCP transports (and OAuth, and trace propagation) use.
pub const ALLOW_HEADERS: &[&str] = &[
    "Authorization",
    "Content-Type",
    "Accept",
    "Mcp-Session-Id",
    "MCP-Protocol-Version",
    "Last-Event-ID",
    "Mcp-Method",
    "Mcp-Name",
    "traceparent",
    "tracestate",
    "baggage",
];

/// Response headers a page's script may read: the session id, the negotiated version,
/// the challenge that starts the OAuth flow, and when to come back.
pub const EXPOSE_HEADERS: &str =
    "Mcp-Session-Id, MCP-Protocol-Version, WWW-Authenticate, Retry-After";

/// How long a browser may reuse a preflight's answer (seconds; Chromium caps it at 2 h).
pub const MAX_AGE: &str = "7200";

/// The headers answering a preflight (`OPTIONS` with `Access-Control-Request-Method`)
/// from `origin`, which asked for `requested` headers (`Access-Control-Request-Headers`).
pub fn preflight(origin: &str, requested: Option<&str>) -> Vec<(&'static str, String)> {
    let mut headers: Vec<String> = ALLOW_HEADERS.iter().map(|h| (*h).to_string()).collect();
    for asked in requested.unwrap_or_default().split(',') {
        let asked = asked.trim();
        let token = !asked.is_empty()
            && asked.len() <= 64
            && asked
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if token && !headers.iter().any(|h| h.eq_ignore_ascii_case(asked)) {
            headers.push(asked.to_string());
        }
    }
    vec![
        ("access-control-allow-origin", origin.to_string()),
        ("access-control-allow-methods", ALLOW_METHODS.to_string()),
        ("access-control-allow-headers", headers.join(", ")),
        ("access-control-max-age", MAX_AGE.to_string()),
        ("vary", "Origin".to_string()),
    ]
}

/// The headers every other response to `origin` carries.
pub fn response(origin: &str) -> Vec<(&'static str, String)> {
    vec![
        ("access-control-allow-origin", origin.to_string()),
        ("access-control-expose-headers", EXPOSE_HEADERS.to_string()),
        ("vary", "Origin".to_string()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get<'a>(headers: &'a [(&'static str, String)], name: &str) -> Option<&'a str> {
        headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn a_preflight_echoes_the_origin_and_allows_what_mcp_and_the_page_send() {
        let h = preflight(
            "http://localhost:6274",
            Some("Authorization, X-Custom-Thing, bad header, mcp-session-id"),
        );
        assert_eq!(
            get(&h, "access-control-allow-origin"),
            Some("http://localhost:6274")
        );
        let allowed = get(&h, "access-control-allow-headers").unwrap_or_default();
        for name in [
            "Authorization",
            "Mcp-Session-Id",
            "MCP-Protocol-Version",
            "Last-Event-ID",
            "X-Custom-Thing",
        ] {
            assert!(allowed.contains(name), "{name} in {allowed}");
        }
        assert!(!allowed.contains("bad header"), "{allowed}");
        assert_eq!(
            allowed.matches("Mcp-Session-Id").count() + allowed.matches("mcp-session-id").count(),
            1
        );
        assert_eq!(get(&h, "access-control-allow-credentials"), None);
        assert!(h.iter().all(|(_, v)| v != "*"), "never *");
    }

    #[test]
    fn every_response_exposes_the_session_id_and_the_challenge() {
        let h = response("https://app.example.com");
        assert_eq!(
            get(&h, "access-control-allow-origin"),
            Some("https://app.example.com")
        );
        let exposed = get(&h, "access-control-expose-headers").unwrap_or_default();
        assert!(exposed.contains("Mcp-Session-Id") && exposed.contains("WWW-Authenticate"));
        assert_eq!(get(&h, "vary"), Some("Origin"));
    }
}
