//! Who may call (spec §12), end to end: `hale vmcp` with `incomingAuth` against a test
//! issuer's JWKS (or a tokens file), and backends that want a bearer token.

#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{get_json, wait_for};
use hale_mcp::{ClientOptions, Credentials, McpClient};
use hale_testkit::{ServerConfig, TestIssuer, TestServer};
use hale_vmcp::{Vmcp, VmcpConfig, VmcpError};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

const AUD: &str = "hale-test";

/// One HTTP exchange: status, headers (lower-cased names), body.
struct Answer {
    status: u16,
    head: String,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }
}

async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Answer {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if !headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("host")) {
        req.push_str(&format!("Host: {addr}\r\n"));
    }
    for (n, v) in headers {
        req.push_str(&format!("{n}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).await.unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).await.unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    Answer {
        status: head.split(' ').nth(1).unwrap().parse().unwrap(),
        head: head.to_string(),
        body: body.to_string(),
    }
}

const INITIALIZE: &str = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#;

async fn initialize_with(addr: SocketAddr, token: Option<&str>) -> Answer {
    let bearer = token.map(|t| format!("Bearer {t}"));
    let mut headers = vec![
        ("Content-Type", "application/json"),
        ("Accept", "application/json, text/event-stream"),
    ];
    if let Some(b) = &bearer {
        headers.push(("Authorization", b));
    }
    http(addr, "POST", "/mcp", &headers, INITIALIZE).await
}

async fn serve(yaml: &str) -> (SocketAddr, CancellationToken) {
    let config = VmcpConfig::from_yaml("test.yaml", yaml).unwrap();
    let vmcp = Vmcp::bind(config, None).await.unwrap();
    // Reached over loopback, whatever the listen address.
    let addr = SocketAddr::from(([127, 0, 0, 1], vmcp.local_addr().port()));
    let stop = CancellationToken::new();
    tokio::spawn(vmcp.run(stop.clone()));
    wait_for("/health", async || get_json(addr, "/health").await.0 == 200).await;
    (addr, stop)
}

async fn client(addr: SocketAddr, token: &str) -> Result<McpClient, hale_mcp::McpError> {
    let credentials = Credentials::builder()
        .bearer("test", token)
        .unwrap()
        .build();
    McpClient::connect(
        &format!("http://{addr}/mcp"),
        ClientOptions {
            request_timeout: Duration::from_secs(5),
            credentials: Some(credentials),
            ..ClientOptions::default()
        },
    )
    .await
}

fn oidc_yaml(issuer: &TestIssuer, backend: &TestServer) -> String {
    format!(
        r#"
listen: 127.0.0.1:0
incomingAuth:
  type: oidc
  issuer: "{}"
  audience: {AUD}
  requiredScopes: [mcp:call]
backends:
  - {{name: kit, url: "{}"}}
"#,
        issuer.issuer(),
        backend.url()
    )
}

/// A test issuer, a backend, and a vMCP over it that wants the issuer's tokens for
/// audience [`AUD`] with scope `mcp:call`.
async fn oidc_vmcp() -> (TestIssuer, TestServer, SocketAddr, CancellationToken) {
    let issuer = TestIssuer::start().await.unwrap();
    let backend = TestServer::start(ServerConfig::default()).await.unwrap();
    let (addr, stop) = serve(&oidc_yaml(&issuer, &backend)).await;
    (issuer, backend, addr, stop)
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[tokio::test]
async fn an_oidc_vmcp_serves_valid_tokens_and_refuses_every_bad_one_with_its_status() {
    let (issuer, _backend, addr, stop) = oidc_vmcp().await;

    // No token: 401 pointing at the RFC 9728 document, which resolves.
    let a = initialize_with(addr, None).await;
    assert_eq!(a.status, 401, "{}", a.body);
    let challenge = a.header("www-authenticate").unwrap();
    let metadata = format!("http://{addr}/.well-known/oauth-protected-resource/mcp");
    assert!(challenge.starts_with("Bearer "), "{challenge}");
    assert!(
        challenge.contains(&format!("resource_metadata=\"{metadata}\"")),
        "{challenge}"
    );
    let doc = http(
        addr,
        "GET",
        "/.well-known/oauth-protected-resource/mcp",
        &[],
        "",
    )
    .await;
    assert_eq!(doc.status, 200);
    assert_eq!(
        doc.json(),
        json!({
            "resource": format!("http://{addr}/mcp"),
            "authorization_servers": [issuer.issuer()],
            "scopes_supported": ["mcp:call"],
            "bearer_methods_supported": ["header"],
            "resource_name": "vmcp",
        })
    );
    assert_eq!(
        http(
            addr,
            "GET",
            "/.well-known/oauth-protected-resource",
            &[],
            ""
        )
        .await
        .status,
        200
    );

    // A valid token: lists and calls through hale's own client.
    let good = issuer.token("alice", AUD, &["mcp:call"]);
    let c = client(addr, &good).await.unwrap();
    assert!(!c.list_tools().await.unwrap().is_empty());
    let r = c
        .call_tool("kit_echo", json!({"text": "hi"}))
        .await
        .unwrap();
    assert_eq!(r["content"][0]["text"], "hi");

    // Missing scope: 403 insufficient_scope naming it.
    let a = initialize_with(addr, Some(&issuer.token("bob", AUD, &["mcp:read"]))).await;
    assert_eq!(a.status, 403, "{}", a.body);
    let challenge = a.header("www-authenticate").unwrap();
    assert!(
        challenge.contains("error=\"insufficient_scope\"")
            && challenge.contains("scope=\"mcp:call\""),
        "{challenge}"
    );

    // Every bad token: 401 invalid_token, the reason in the description.
    let base = json!({"iss": issuer.issuer(), "aud": AUD, "sub": "eve", "scope": "mcp:call", "exp": now() + 600});
    let with = |k: &str, v: Value| {
        let mut c = base.clone();
        c[k] = v;
        c
    };
    let none = {
        use base64::Engine as _;
        let b64 =
            |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
        format!(
            "{}.{}.",
            b64(&json!({"alg": "none", "kid": "a"})),
            b64(&base)
        )
    };
    let cases = [
        ("malformed", "not.a.jwt".to_string(), "malformed"),
        (
            "expired",
            TestIssuer::sign("a", &with("exp", json!(now() - 3600))),
            "expired",
        ),
        (
            "wrong audience",
            TestIssuer::sign("a", &with("aud", json!("someone-else"))),
            "audience",
        ),
        (
            "wrong issuer",
            TestIssuer::sign("a", &with("iss", json!("http://evil.example"))),
            "issuer",
        ),
        ("alg none", none, "algorithm none"),
        ("unknown kid", TestIssuer::sign("r", &base), "\"r\""),
        ("oversized", "x".repeat(17 * 1024), "16 KiB"),
    ];
    for (what, token, reason) in cases {
        let a = initialize_with(addr, Some(&token)).await;
        assert_eq!(a.status, 401, "{what}: {}", a.body);
        let challenge = a.header("www-authenticate").unwrap_or_default();
        assert!(
            challenge.contains("error=\"invalid_token\""),
            "{what}: {challenge}"
        );
        assert!(
            challenge.contains("resource_metadata="),
            "{what}: {challenge}"
        );
        let description = a.json()["error_description"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert!(description.contains(reason), "{what}: {description}");
    }

    // Health stays open; status follows incomingAuth (statusAuth not set).
    assert_eq!(get_json(addr, "/health").await.0, 200);
    assert_eq!(get_json(addr, "/readyz").await.0, 200);
    assert_eq!(get_json(addr, "/status").await.0, 401);
    let bearer = format!("Bearer {good}");
    let s = http(addr, "GET", "/status", &[("Authorization", &bearer)], "").await;
    assert_eq!(s.status, 200);
    assert_eq!(s.json()["incomingAuth"], "oidc");
    assert_eq!(s.json()["auth"]["mcp"]["keys"], 1, "{}", s.body);
    assert_eq!(s.json()["auth"]["mcp"]["issuer"], issuer.issuer());

    c.close().await;
    stop.cancel();
    issuer.shutdown();
}

#[tokio::test]
async fn a_session_is_bound_to_the_caller_who_opened_it() {
    let (issuer, _backend, addr, stop) = oidc_vmcp().await;
    let alice = issuer.token("alice", AUD, &["mcp:call"]);
    let mallory = issuer.token("mallory", AUD, &["mcp:call"]);
    let a = initialize_with(addr, Some(&alice)).await;
    let sid = a.header("mcp-session-id").unwrap();
    let list = r#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#;
    for (who, token, expected) in [("mallory", &mallory, 404), ("alice", &alice, 200)] {
        let bearer = format!("Bearer {token}");
        let a = http(
            addr,
            "POST",
            "/mcp",
            &[
                ("Authorization", &bearer),
                ("Mcp-Session-Id", &sid),
                ("Content-Type", "application/json"),
                ("Accept", "application/json, text/event-stream"),
            ],
            list,
        )
        .await;
        assert_eq!(a.status, expected, "{who}: {}", a.body);
    }
    stop.cancel();
    issuer.shutdown();
}

#[tokio::test]
async fn a_rotated_key_is_fetched_once_and_an_unknown_one_does_not_fetch_per_request() {
    let (issuer, _backend, addr, stop) = oidc_vmcp().await;
    let claims = json!({"iss": issuer.issuer(), "aud": AUD, "sub": "alice", "scope": "mcp:call", "exp": now() + 600});
    assert_eq!(
        initialize_with(addr, Some(&TestIssuer::sign("a", &claims)))
            .await
            .status,
        200
    );
    let fetched = issuer.jwks_fetches();
    assert_eq!(fetched, 1, "the keys were fetched at start, once");

    // The issuer starts signing with b: the first such token fetches the keys again.
    issuer.publish(&["a", "b"]);
    assert_eq!(
        initialize_with(addr, Some(&TestIssuer::sign("b", &claims)))
            .await
            .status,
        200
    );
    assert_eq!(issuer.jwks_fetches(), 2);

    // A key the issuer never published: 401s, with no fetch per request.
    for _ in 0..20 {
        assert_eq!(
            initialize_with(addr, Some(&TestIssuer::sign("r", &claims)))
                .await
                .status,
            401
        );
    }
    assert_eq!(issuer.jwks_fetches(), 2, "fetched within the 10 s limit");
    stop.cancel();
    issuer.shutdown();
}

#[tokio::test]
async fn an_issuer_unreachable_at_start_gives_503_until_its_keys_come() {
    // A free port with nothing on it yet.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let issuer_addr = SocketAddr::from(([127, 0, 0, 1], port));
    let backend = TestServer::start(ServerConfig::default()).await.unwrap();
    let yaml = format!(
        "listen: 127.0.0.1:0\nincomingAuth: {{type: oidc, issuer: \"http://{issuer_addr}\", audience: {AUD}, jwksUrl: \"http://{issuer_addr}/jwks\"}}\nbackends:\n  - {{name: kit, url: \"{}\"}}\noperational:\n  statusAuth: {{type: anonymous}}\n",
        backend.url()
    );
    let (addr, stop) = serve(&yaml).await;
    let claims = json!({"iss": format!("http://{issuer_addr}"), "aud": AUD, "sub": "alice", "exp": now() + 600});
    let token = TestIssuer::sign("a", &claims);
    let a = initialize_with(addr, Some(&token)).await;
    assert_eq!(a.status, 503, "{}", a.body);
    assert_eq!(a.header("retry-after").as_deref(), Some("5"));
    assert!(
        a.json()["error_description"]
            .as_str()
            .unwrap_or_default()
            .contains(&issuer_addr.to_string()),
        "{}",
        a.body
    );
    assert_eq!(
        get_json(addr, "/health").await.0,
        200,
        "health is not behind auth"
    );
    // statusAuth anonymous: /status opens without a token and says why tokens fail.
    let (code, status) = get_json(addr, "/status").await;
    assert_eq!(code, 200);
    assert!(
        status["auth"]["mcp"]["keysError"]
            .as_str()
            .is_some_and(|e| e.contains(&issuer_addr.to_string())),
        "{status}"
    );
    assert_eq!(status["auth"]["status"]["type"], "anonymous");

    let issuer = TestIssuer::start_on(issuer_addr).await.unwrap();
    wait_for("the keys after the issuer came up", async || {
        initialize_with(addr, Some(&token)).await.status == 200
    })
    .await;
    stop.cancel();
    issuer.shutdown();
}

fn temp_file(name: &str, text: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("hale-auth-test-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("secret");
    std::fs::write(&path, text).unwrap();
    path
}

#[tokio::test]
async fn static_tokens_admit_the_listed_callers_and_never_reach_a_backend() {
    let caller = "caller-token-0123456789abcdef";
    let tokens = temp_file("static", &format!("ci {caller}\n"));
    let backend = TestServer::start(ServerConfig::default()).await.unwrap();
    let yaml = format!(
        "listen: 127.0.0.1:0\nincomingAuth: {{type: static, tokensFile: \"{}\"}}\nbackends:\n  - {{name: kit, url: \"{}\"}}\n",
        tokens.display(),
        backend.url()
    );
    let (addr, stop) = serve(&yaml).await;
    assert_eq!(
        initialize_with(addr, Some("wrong-token-0123456789abcdef"))
            .await
            .status,
        401
    );
    assert_eq!(initialize_with(addr, None).await.status, 401);
    let c = client(addr, caller).await.unwrap();
    assert!(!c.list_tools().await.unwrap().is_empty());
    let r = c
        .call_tool("kit_echo", json!({"text": "hi"}))
        .await
        .unwrap();
    assert_eq!(r["content"][0]["text"], "hi");
    // The calls reached the backend, the caller's token did not (no passthrough).
    let seen = backend.stats();
    assert_eq!(seen.by_method.get("tools/call"), Some(&1));
    assert_eq!(
        seen.with_authorization, 0,
        "the caller's Authorization reached the backend"
    );
    c.close().await;
    stop.cancel();

    // A tokens file that is missing or lists nothing stops start-up, naming the key.
    let empty = temp_file("static-empty", "# none yet\n");
    for path in [
        empty.display().to_string(),
        "/nonexistent/hale-tokens".to_string(),
    ] {
        let yaml = format!(
            "incomingAuth: {{type: static, tokensFile: \"{path}\"}}\nbackends:\n  - {{name: kit, url: \"{}\"}}\n",
            backend.url()
        );
        let e = VmcpConfig::from_yaml("vmcp.yaml", &yaml)
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.contains("incomingAuth.tokensFile") && e.contains(&path),
            "{e}"
        );
    }
}

#[tokio::test]
async fn a_backend_token_from_a_file_is_sent_on_calls_and_probes_and_followed_when_rotated() {
    let token_file = temp_file("outgoing", "first-backend-token\n");
    let backend = TestServer::start(ServerConfig {
        require_token: Some("first-backend-token".into()),
        ..ServerConfig::default()
    })
    .await
    .unwrap();
    // The same backend once more, without credentials: unauthenticated, not unhealthy.
    let yaml = format!(
        r#"
listen: 127.0.0.1:0
backends:
  - name: with
    url: "{url}"
    headers: {{X-Tenant: blue}}
    auth: {{type: bearer, tokenFile: "{file}"}}
  - {{name: without, url: "{url}"}}
operational:
  failureHandling: {{healthCheckInterval: 1s, healthCheckTimeout: 500ms}}
"#,
        url = backend.url(),
        file = token_file.display()
    );
    let config = VmcpConfig::from_yaml("test.yaml", &yaml).unwrap();
    assert!(
        !format!("{config:?}").contains("first-backend-token"),
        "a token in Debug output"
    );
    let (addr, stop) = serve(&yaml).await;
    wait_for("both backends checked", async || {
        let s = get_json(addr, "/status").await.1;
        s["backends"][0]["health"] == "healthy" && s["backends"][1]["health"] == "unauthenticated"
    })
    .await;
    let status = get_json(addr, "/status").await.1;
    assert!(
        status["backends"][1]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("401/403")),
        "{status}"
    );
    assert!(status["backends"][0]["reason"].is_null(), "{status}");
    let text = status.to_string();
    assert!(
        !text.contains("first-backend-token") && !text.contains("blue"),
        "{text}"
    );
    assert_eq!(
        status["backends"][0]["credentials"]["headers"],
        json!(["x-tenant"])
    );

    let c = McpClient::connect(&format!("http://{addr}/mcp"), ClientOptions::default())
        .await
        .unwrap();
    let r = c
        .call_tool("with_echo", json!({"text": "hi"}))
        .await
        .unwrap();
    assert_eq!(r["content"][0]["text"], "hi");

    // The secret is rotated: the file changes, the backend wants the new token.
    std::fs::write(&token_file, "second-backend-token-rotated\n").unwrap();
    backend.require_token(Some("second-backend-token-rotated"));
    wait_for("a call with the rotated token", async || {
        c.call_tool("with_echo", json!({"text": "again"}))
            .await
            .is_ok()
    })
    .await;
    stop.cancel();
}

#[tokio::test]
async fn a_non_loopback_listen_needs_incoming_auth_and_checks_host_everywhere() {
    let backend = TestServer::start(ServerConfig::default()).await.unwrap();
    let bare = format!(
        "listen: \"0.0.0.0:0\"\nbackends:\n  - {{name: kit, url: \"{}\"}}\n",
        backend.url()
    );
    let e = Vmcp::bind(VmcpConfig::from_yaml("vmcp.yaml", &bare).unwrap(), None)
        .await
        .err()
        .unwrap();
    assert!(matches!(e, VmcpError::Unprotected { .. }));
    assert!(
        e.to_string().contains("incomingAuth: {type: anonymous}"),
        "{e}"
    );

    let tokens = temp_file("host", "ci caller-token-0123456789abcdef\n");
    let (addr, stop) = serve(&format!(
        "{bare}incomingAuth: {{type: static, tokensFile: \"{}\"}}\n",
        tokens.display()
    ))
    .await;
    let local = addr;
    for path in [
        "/mcp",
        "/health",
        "/status",
        "/.well-known/oauth-protected-resource",
    ] {
        let a = http(local, "GET", path, &[("Host", "evil.example")], "").await;
        assert_eq!(a.status, 403, "{path}: {}", a.body);
    }
    assert_eq!(http(local, "GET", "/health", &[], "").await.status, 200);
    stop.cancel();

    // Written explicitly, anonymous starts (with a warning).
    let (_, stop) = serve(&format!("{bare}incomingAuth: {{type: anonymous}}\n")).await;
    stop.cancel();
}

/// A 2026-07-28 POST of `body` (`method`, naming `name`) with `token` as the bearer.
async fn post_modern(
    addr: SocketAddr,
    token: &str,
    method: &str,
    name: Option<&str>,
    body: &str,
) -> Answer {
    let bearer = format!("Bearer {token}");
    let mut headers = vec![
        ("Authorization", bearer.as_str()),
        ("Content-Type", "application/json"),
        ("Accept", "application/json, text/event-stream"),
        ("MCP-Protocol-Version", "2026-07-28"),
        ("Mcp-Method", method),
    ];
    if let Some(name) = name {
        headers.push(("Mcp-Name", name));
    }
    http(addr, "POST", "/mcp", &headers, body).await
}

/// A 2026-07-28 `tools/call` of `test_elicitation` by the holder of `token`, with
/// `extra` params; the JSON-RPC answer.
async fn modern_elicitation(addr: SocketAddr, token: &str, extra: Value) -> Value {
    let mut params = json!({"name": "kit_test_elicitation", "arguments": {"message": "Name?"},
        "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
                  "io.modelcontextprotocol/clientInfo": {"name": "t", "version": "1"},
                  "io.modelcontextprotocol/clientCapabilities": {"elicitation": {}}}});
    if let (Some(p), Some(e)) = (params.as_object_mut(), extra.as_object()) {
        p.extend(e.clone());
    }
    let body =
        json!({"jsonrpc": "2.0", "id": 5, "method": "tools/call", "params": params}).to_string();
    let a = post_modern(
        addr,
        token,
        "tools/call",
        Some("kit_test_elicitation"),
        &body,
    )
    .await;
    let last = a
        .body
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("data: "))
        .unwrap_or(&a.body)
        .to_string();
    serde_json::from_str(&last).unwrap_or(Value::Null)
}

#[tokio::test]
async fn a_parked_input_required_call_goes_on_only_for_its_caller() {
    let (issuer, _backend, addr, stop) = oidc_vmcp().await;
    let alice = issuer.token("alice", AUD, &["mcp:call"]);
    let mallory = issuer.token("mallory", AUD, &["mcp:call"]);
    let bearer = format!("Bearer {alice}");
    wait_for("the catalog", async || {
        let s = http(addr, "GET", "/status", &[("Authorization", &bearer)], "").await;
        s.json()["backends"][0]["tools"].as_u64() > Some(0)
    })
    .await;
    let first = modern_elicitation(addr, &alice, json!({})).await;
    assert_eq!(first["result"]["resultType"], "input_required", "{first}");
    let key = first["result"]["inputRequests"]
        .as_object()
        .and_then(|m| m.keys().next().cloned())
        .unwrap();
    let state = first["result"]["requestState"].clone();
    let retry = json!({"requestState": state,
        "inputResponses": {key: {"action": "accept", "content": {"name": "Ada"}}}});
    let stolen = modern_elicitation(addr, &mallory, retry.clone()).await;
    assert_eq!(stolen["error"]["code"], -32602, "{stolen}");
    let done = modern_elicitation(addr, &alice, retry).await;
    assert_eq!(done["result"]["resultType"], "complete", "{done}");
    assert!(done.to_string().contains("Ada"), "{done}");
    stop.cancel();
    issuer.shutdown();
}

#[tokio::test]
async fn a_stream_ends_when_the_token_that_opened_it_expires() {
    let issuer = TestIssuer::start().await.unwrap();
    let backend = TestServer::start(ServerConfig::default()).await.unwrap();
    let yaml = oidc_yaml(&issuer, &backend).replace(
        "  requiredScopes: [mcp:call]\n",
        "  requiredScopes: [mcp:call]\n  clockSkew: 0s\n",
    );
    let (addr, stop) = serve(&yaml).await;
    let claims = json!({"iss": issuer.issuer(), "aud": AUD, "sub": "alice", "scope": "mcp:call", "exp": now() + 2});
    let token = TestIssuer::sign("a", &claims);
    let body = json!({"jsonrpc": "2.0", "id": "sub-1", "method": "subscriptions/listen",
        "params": {"notifications": {"toolsListChanged": true},
                   "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
                             "io.modelcontextprotocol/clientInfo": {"name": "t", "version": "1"},
                             "io.modelcontextprotocol/clientCapabilities": {}}}})
    .to_string();
    let started = std::time::Instant::now();
    // The exchange reads to the end of the stream: it returns when the vMCP ends it.
    let a = tokio::time::timeout(
        Duration::from_secs(15),
        post_modern(addr, &token, "subscriptions/listen", None, &body),
    )
    .await
    .expect("the listen stream outlived its token");
    assert_eq!(a.status, 200);
    assert!(
        a.body.contains("notifications/subscriptions/acknowledged"),
        "{}",
        a.body
    );
    assert!(
        a.body.contains("\"id\":\"sub-1\""),
        "no final result: {}",
        a.body
    );
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "ended before the token expired"
    );
    // The expired token is refused for anything new.
    assert_eq!(initialize_with(addr, Some(&token)).await.status, 401);
    stop.cancel();
    issuer.shutdown();
}

/// Reads one HTTP/1.1 response with a `Content-Length` body from `s`: status and body.
async fn read_response(s: &mut tokio::net::TcpStream) -> (u16, String) {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        if s.read(&mut byte).await.unwrap() == 0 {
            panic!(
                "the connection closed before a response: {}",
                String::from_utf8_lossy(&buf)
            );
        }
        buf.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&buf).to_string();
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    let mut body = vec![0u8; length];
    s.read_exact(&mut body).await.unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, String::from_utf8_lossy(&body).to_string())
}

#[tokio::test]
async fn a_refused_request_leaves_its_connection_usable_for_the_next() {
    let (issuer, _backend, addr, stop) = oidc_vmcp().await;
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    // A client without a token: 401, then the metadata document on the same connection,
    // as an OAuth client does next.
    // The headers first, the body a moment later (as a client may send them): the
    // refusal must not leave the body behind to be read as the next request.
    let post = format!(
        "POST /mcp HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\nContent-Length: {}\r\n\r\n",
        INITIALIZE.len()
    );
    s.write_all(post.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    s.write_all(INITIALIZE.as_bytes()).await.unwrap();
    assert_eq!(read_response(&mut s).await.0, 401);
    let get =
        format!("GET /.well-known/oauth-protected-resource/mcp HTTP/1.1\r\nHost: {addr}\r\n\r\n");
    s.write_all(get.as_bytes()).await.unwrap();
    let (status, body) = read_response(&mut s).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("authorization_servers"), "{body}");
    stop.cancel();
    issuer.shutdown();
}

/// The issue-27 path: a client reaches the vMCP as `http://localhost:PORT/mcp`, is told
/// that is the resource, gets a token for it (RFC 8707) — and is admitted, though the
/// configured audience is something else. A token for a URL whose `Host` merely passes
/// (another address) is still refused, naming what to configure.
#[tokio::test]
async fn the_resource_a_client_is_told_is_one_its_token_passes() {
    let (issuer, _backend, addr, stop) = oidc_vmcp().await;
    let port = addr.port();
    for host in [format!("localhost:{port}"), format!("127.0.0.1:{port}")] {
        let doc = http(
            addr,
            "GET",
            "/.well-known/oauth-protected-resource/mcp",
            &[("Host", &host)],
            "",
        )
        .await;
        let resource = format!("http://{host}/mcp");
        assert_eq!(doc.json()["resource"], resource.as_str());
        let token = issuer.token("alice", &resource, &["mcp:call"]);
        let bearer = format!("Bearer {token}");
        let a = http(
            addr,
            "POST",
            "/mcp",
            &[
                ("Host", &host),
                ("Authorization", &bearer),
                ("Content-Type", "application/json"),
                ("Accept", "application/json, text/event-stream"),
            ],
            INITIALIZE,
        )
        .await;
        assert_eq!(a.status, 200, "{host}: {}", a.body);
        // The same token through the other name: it was issued for one URL only.
        let other = if host.starts_with("localhost") {
            format!("127.0.0.1:{port}")
        } else {
            format!("localhost:{port}")
        };
        let a = http(
            addr,
            "POST",
            "/mcp",
            &[
                ("Host", &other),
                ("Authorization", &bearer),
                ("Content-Type", "application/json"),
                ("Accept", "application/json, text/event-stream"),
            ],
            INITIALIZE,
        )
        .await;
        assert_eq!(a.status, 401, "{other} with a token for {host}");
    }
    // A Host that passes the rebinding check (an IP literal) but is not this listener:
    // a token for that URL is another server's.
    let foreign = format!("10.9.9.9:{port}");
    let token = issuer.token("mallory", &format!("http://{foreign}/mcp"), &["mcp:call"]);
    let bearer = format!("Bearer {token}");
    let a = http(
        addr,
        "POST",
        "/mcp",
        &[
            ("Host", &foreign),
            ("Authorization", &bearer),
            ("Content-Type", "application/json"),
        ],
        INITIALIZE,
    )
    .await;
    assert_eq!(a.status, 401, "{}", a.body);
    assert!(a.body.contains("audience"), "{}", a.body);
    stop.cancel();
}

/// A browser page on an allowed origin (the MCP Inspector's) can preflight, read the
/// challenge and the metadata, and — with a token — see the session id; a page on
/// another origin is refused before anything else.
#[tokio::test]
async fn an_allowed_origin_gets_cors_on_preflights_refusals_metadata_and_answers() {
    let issuer = TestIssuer::start().await.unwrap();
    let backend = TestServer::start(ServerConfig::default()).await.unwrap();
    let yaml = oidc_yaml(&issuer, &backend).replace(
        "listen: 127.0.0.1:0\n",
        "listen: 127.0.0.1:0\nallowedOrigins: [\"https://inspector.example\"]\n",
    );
    let (addr, stop) = serve(&yaml).await;
    let origin = ("Origin", "https://inspector.example");
    for path in ["/mcp", "/.well-known/oauth-protected-resource/mcp"] {
        let pre = http(
            addr,
            "OPTIONS",
            path,
            &[
                origin,
                ("Access-Control-Request-Method", "POST"),
                (
                    "Access-Control-Request-Headers",
                    "authorization, content-type, mcp-protocol-version",
                ),
            ],
            "",
        )
        .await;
        assert_eq!(pre.status, 204, "{path}: {}", pre.body);
        assert_eq!(
            pre.header("access-control-allow-origin").as_deref(),
            Some("https://inspector.example")
        );
        let allowed = pre.header("access-control-allow-headers").unwrap();
        for h in [
            "Authorization",
            "Mcp-Session-Id",
            "MCP-Protocol-Version",
            "Last-Event-ID",
        ] {
            assert!(allowed.contains(h), "{h} in {allowed}");
        }
        assert!(pre.header("access-control-allow-credentials").is_none());
    }
    let refused = http(
        addr,
        "POST",
        "/mcp",
        &[origin, ("Content-Type", "application/json")],
        INITIALIZE,
    )
    .await;
    assert_eq!(refused.status, 401);
    assert_eq!(
        refused.header("access-control-allow-origin").as_deref(),
        Some("https://inspector.example")
    );
    assert!(
        refused
            .header("access-control-expose-headers")
            .unwrap()
            .contains("WWW-Authenticate")
    );
    let doc = http(
        addr,
        "GET",
        "/.well-known/oauth-protected-resource/mcp",
        &[origin],
        "",
    )
    .await;
    assert_eq!(doc.status, 200);
    assert!(doc.header("access-control-allow-origin").is_some());
    let token = format!("Bearer {}", issuer.token("alice", AUD, &["mcp:call"]));
    let ok = http(
        addr,
        "POST",
        "/mcp",
        &[
            origin,
            ("Authorization", &token),
            ("Content-Type", "application/json"),
            ("Accept", "application/json, text/event-stream"),
        ],
        INITIALIZE,
    )
    .await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert!(ok.header("mcp-session-id").is_some());
    assert!(
        ok.header("access-control-expose-headers")
            .unwrap()
            .contains("Mcp-Session-Id")
    );
    // Another origin: refused, preflight included, with no CORS to read it by.
    let evil = http(
        addr,
        "OPTIONS",
        "/mcp",
        &[
            ("Origin", "https://evil.example"),
            ("Access-Control-Request-Method", "POST"),
        ],
        "",
    )
    .await;
    assert_eq!(evil.status, 403);
    assert!(evil.header("access-control-allow-origin").is_none());
    stop.cancel();
}
