//! Credentials never leave hale in a message: every URL that an error, a log line or a
//! status document shows goes through [`redact_url`] first.

/// Removes credentials from a URL: user information, and the values of query parameters
/// that look like secrets.
pub fn redact_url(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let (authority, path) = match rest.find(['/', '?']) {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let authority = match authority.rsplit_once('@') {
        Some((_, host)) => format!("***@{host}"),
        None => authority.to_string(),
    };
    let path = match path.split_once('?') {
        Some((p, query)) => {
            let query: Vec<String> = query
                .split('&')
                .map(|kv| match kv.split_once('=') {
                    Some((k, _)) if is_secret(k) => format!("{k}=***"),
                    _ => kv.to_string(),
                })
                .collect();
            format!("{p}?{}", query.join("&"))
        }
        None => path.to_string(),
    };
    let prefix = if scheme.is_empty() {
        String::new()
    } else {
        format!("{scheme}://")
    };
    format!("{prefix}{authority}{path}")
}

fn is_secret(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    [
        "token",
        "key",
        "secret",
        "password",
        "passwd",
        "auth",
        "signature",
        "sig",
    ]
    .iter()
    .any(|s| k.contains(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction_keeps_what_is_not_a_secret() {
        assert_eq!(
            redact_url("http://127.0.0.1:8080/mcp"),
            "http://127.0.0.1:8080/mcp"
        );
        assert_eq!(
            redact_url("http://a:b@h/sse?api_key=1&q=2"),
            "http://***@h/sse?api_key=***&q=2"
        );
        assert_eq!(redact_url("http://h?password=x"), "http://h?password=***");
    }
}
