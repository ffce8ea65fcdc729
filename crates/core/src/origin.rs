//! DNS-rebinding protection as a pure decision: is a request's `Host` one this listener
//! answers to, and is its `Origin` (if a browser sent one) allowed to call it?
//!
//! A rebinding attack reaches a server under a name the attacker controls, so the rule is
//! about names: an IP literal in `Host` can never be a rebound name and always passes;
//! `localhost` passes; any other name must be listed. `Origin` is absent for every
//! non-browser client and then passes; a browser's origin passes when it is the listener
//! itself (same origin), a loopback page while listening on loopback, or listed.
//!
//! ```
//! use hale_core::HostPolicy;
//!
//! let policy = HostPolicy::new(true, &[], &[]);
//! assert!(policy.check(Some("127.0.0.1:4483"), None).is_ok());
//! assert!(policy.check(Some("localhost:4483"), Some("http://localhost:6274")).is_ok());
//! let refused = policy.check(Some("evil.example"), None).unwrap_err();
//! assert_eq!(refused.to_string(), "Host 'evil.example' is not allowed (add it to allowedHosts)");
//! ```

use std::fmt;
use std::net::IpAddr;

/// Which `Host` and `Origin` values a listener accepts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostPolicy {
    /// Lower-case host names without a port; `*` accepts any.
    hosts: Vec<String>,
    /// Lower-case origins (`scheme://host[:port]`); `*` accepts any.
    origins: Vec<String>,
    /// Whether the listener is on a loopback address (loopback origins pass by default).
    loopback: bool,
}

/// Why a request was refused: say it in the 403 and the log line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The `Host` header names a host this listener does not answer to.
    Host(String),
    /// The `Origin` header names a page that may not call this listener.
    Origin(String),
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Host(h) => write!(f, "Host '{h}' is not allowed (add it to allowedHosts)"),
            Refusal::Origin(o) => {
                write!(f, "Origin '{o}' is not allowed (add it to allowedOrigins)")
            }
        }
    }
}

impl std::error::Error for Refusal {}

impl HostPolicy {
    /// A policy for a listener (`loopback`: it listens on a loopback address) with the
    /// operator's extra hosts and origins.
    pub fn new(loopback: bool, hosts: &[String], origins: &[String]) -> Self {
        let clean = |v: &[String]| -> Vec<String> {
            v.iter()
                .map(|s| s.trim().trim_end_matches('/').to_ascii_lowercase())
                .filter(|s| !s.is_empty())
                .collect()
        };
        HostPolicy {
            hosts: clean(hosts)
                .into_iter()
                .map(|h| strip_port(&h).to_string())
                .collect(),
            origins: clean(origins),
            loopback,
        }
    }

    /// Judges one request by its `Host` and `Origin` header values.
    pub fn check(&self, host: Option<&str>, origin: Option<&str>) -> Result<(), Refusal> {
        if let Some(host) = host
            && !self.host_allowed(host)
        {
            return Err(Refusal::Host(host.to_string()));
        }
        if let Some(origin) = origin
            && !self.origin_allowed(origin, host)
        {
            return Err(Refusal::Origin(origin.to_string()));
        }
        Ok(())
    }

    /// True if `host` (a request's `Host`, already [checked](Self::check)) certainly
    /// names this listener, reached at `local` (the connection's local address): the
    /// local address itself, `localhost` at the local port on a loopback listener, or a
    /// name listed in `allowedHosts` (not `*`, which accepts names it does not claim).
    ///
    /// A URL built from such a `Host` is this server's own, so a token issued for it
    /// (RFC 8707) is a token for this server; a `Host` that merely passes (another IP
    /// literal: a port mapping, a NAT) proves nothing.
    ///
    /// ```
    /// use hale_core::HostPolicy;
    ///
    /// let local = "127.0.0.1:4483".parse().unwrap();
    /// let policy = HostPolicy::new(true, &[], &[]);
    /// assert!(policy.names_self("localhost:4483", local));
    /// assert!(policy.names_self("127.0.0.1:4483", local));
    /// assert!(!policy.names_self("localhost:8080", local));
    /// assert!(!policy.names_self("10.0.0.7:4483", local));
    /// ```
    pub fn names_self(&self, host: &str, local: std::net::SocketAddr) -> bool {
        let host = host.trim().to_ascii_lowercase();
        let name = strip_port(&host);
        let port = match host.rsplit_once(':') {
            Some((_, p)) if p.bytes().all(|b| b.is_ascii_digit()) && name != host => {
                p.parse::<u16>().ok()
            }
            _ => None,
        };
        if self.hosts.iter().any(|h| h != "*" && *h == name) {
            return true;
        }
        let at_local_port = port == Some(local.port());
        if let Ok(ip) = name.parse::<IpAddr>() {
            return at_local_port && ip == local.ip();
        }
        at_local_port && name == "localhost" && self.loopback && local.ip().is_loopback()
    }

    fn host_allowed(&self, host: &str) -> bool {
        let name = strip_port(host.trim()).to_ascii_lowercase();
        is_ip_literal(&name)
            || name == "localhost"
            || self.hosts.iter().any(|h| h == "*" || *h == name)
    }

    fn origin_allowed(&self, origin: &str, host: Option<&str>) -> bool {
        let origin = origin.trim().trim_end_matches('/').to_ascii_lowercase();
        if self.origins.iter().any(|o| o == "*" || *o == origin) {
            return true;
        }
        let Some((_, authority)) = origin.split_once("://") else {
            return false; // `null` (sandboxed pages, files) and other opaque origins
        };
        // Same origin: the page was served by this listener under an accepted Host.
        if host.is_some_and(|h| h.trim().eq_ignore_ascii_case(authority)) {
            return true;
        }
        let name = strip_port(authority);
        self.loopback
            && (name == "localhost" || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback()))
    }
}

/// `host`, `host:port`, `[v6]` or `[v6]:port` → the host part (brackets removed).
fn strip_port(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match host.rsplit_once(':') {
        // One colon: a port. More: a bare IPv6 address.
        Some((name, port)) if !name.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => {
            name
        }
        _ => host,
    }
}

fn is_ip_literal(name: &str) -> bool {
    name.parse::<IpAddr>().is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn ip_literals_and_localhost_pass_names_must_be_listed() {
        let p = HostPolicy::new(false, &names(&["mcp.example.com"]), &[]);
        for ok in [
            "127.0.0.1:4483",
            "10.1.2.3",
            "[::1]:80",
            "::1",
            "localhost:1",
            "LOCALHOST",
            "mcp.example.com:443",
            "MCP.example.com",
        ] {
            assert!(p.check(Some(ok), None).is_ok(), "{ok}");
        }
        for bad in [
            "evil.example",
            "evil.example:4483",
            "localhost.evil.example",
            "127.0.0.1.nip.io",
        ] {
            assert_eq!(p.check(Some(bad), None), Err(Refusal::Host(bad.into())));
        }
        assert!(p.check(None, None).is_ok(), "HTTP/1.0 without Host");
        assert!(
            HostPolicy::new(false, &names(&["*"]), &[])
                .check(Some("evil.example"), None)
                .is_ok()
        );
    }

    #[test]
    fn only_the_local_address_localhost_on_loopback_or_a_listed_name_names_self() {
        let local: std::net::SocketAddr =
            "127.0.0.1:4483".parse().unwrap_or_else(|e| panic!("{e}"));
        let loopback = HostPolicy::new(true, &names(&["mcp.example.com", "*"]), &[]);
        for yes in [
            "127.0.0.1:4483",
            "localhost:4483",
            "LOCALHOST:4483",
            "mcp.example.com",
            "mcp.example.com:443",
        ] {
            assert!(loopback.names_self(yes, local), "{yes}");
        }
        for no in [
            "127.0.0.1:80",
            "127.0.0.2:4483",
            "localhost",
            "localhost:8080",
            "evil.example",
            "[::1]:4483",
        ] {
            assert!(!loopback.names_self(no, local), "{no}");
        }
        let v6: std::net::SocketAddr = "[::1]:4483".parse().unwrap_or_else(|e| panic!("{e}"));
        assert!(loopback.names_self("[::1]:4483", v6));
        assert!(loopback.names_self("localhost:4483", v6));
        let exposed = HostPolicy::new(false, &[], &[]);
        let public: std::net::SocketAddr =
            "10.0.0.7:4483".parse().unwrap_or_else(|e| panic!("{e}"));
        assert!(exposed.names_self("10.0.0.7:4483", public));
        assert!(
            !exposed.names_self("localhost:4483", public),
            "localhost is not this host's name when the listener is not on loopback"
        );
    }

    #[test]
    fn origins_pass_when_absent_same_origin_loopback_on_loopback_or_listed() {
        let on_loopback = HostPolicy::new(true, &[], &[]);
        let exposed = HostPolicy::new(false, &[], &names(&["https://app.example.com/"]));
        let host = Some("127.0.0.1:4483");
        assert!(on_loopback.check(host, None).is_ok());
        assert!(
            on_loopback
                .check(host, Some("http://localhost:6274"))
                .is_ok()
        );
        assert!(
            on_loopback
                .check(host, Some("http://127.0.0.1:3000"))
                .is_ok()
        );
        assert!(
            on_loopback
                .check(host, Some("http://evil.example"))
                .is_err()
        );
        assert!(on_loopback.check(host, Some("null")).is_err());
        assert!(
            exposed.check(host, Some("http://localhost:6274")).is_err(),
            "not on loopback"
        );
        assert!(exposed.check(host, Some("https://app.example.com")).is_ok());
        assert!(
            exposed.check(host, Some("http://127.0.0.1:4483")).is_ok(),
            "same origin"
        );
        assert_eq!(
            exposed.check(host, Some("http://evil.example")),
            Err(Refusal::Origin("http://evil.example".into()))
        );
    }
}
