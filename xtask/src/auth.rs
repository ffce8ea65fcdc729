//! Who may call, with the Python SDK 2.x client (spec §12): `hale vmcp` with
//! `incomingAuth: oidc` against `hale-testkit issuer`, over a backend that wants its own
//! bearer token (given to the vMCP in a token file). With a valid token the client lists
//! and calls in every mode; without one it gets 401 and a challenge whose
//! `resource_metadata` resolves to the RFC 9728 document; without the required scope, 403;
//! and with only client credentials, the SDK's own OAuth support finds the issuer through
//! that document and gets its token (RFC 8707 `resource`) before calling. And outgoing:
//! a Python SDK server that wants a bearer token is reached with `auth.tokenFile`.

use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::thread;
use std::time::Duration;

use serde_json::Value;

use crate::servers::{Paths, Server, spawn, spawn_hale, testkit};
use crate::tally::{Tally, report_steps};

const BACKEND_TOKEN: &str = "interop-backend-token-0123456789";

/// Runs the checks; returns the failures, one line each.
pub(crate) fn run(p: &Paths<'_>, tally: &mut Tally) -> Result<Vec<String>, String> {
    println!(
        "\n== who may call: the Python SDK 2.x client with and without a bearer token (hale vmcp, oidc)"
    );
    let bin = p.bin.to_path_buf();
    let issuer = spawn(
        &|port| {
            let mut c = Command::new(bin.join("hale-testkit"));
            c.args(["issuer", "--port", &port.to_string()]);
            c
        },
        "",
    )?;
    let backend = spawn(
        &|port| {
            let mut c = testkit(&bin, port, "streamable-http");
            c.args(["--require-token", BACKEND_TOKEN]);
            c
        },
        "/mcp",
    )?;
    let token_file = p.dir.join("backend-token");
    fs::write(&token_file, BACKEND_TOKEN)
        .map_err(|e| format!("writing {}: {e}", token_file.display()))?;
    // The audience is the vMCP's own URL (RFC 8707: what a client asks its token for).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("finding a free port: {e}"))?;
    let audience = format!("http://127.0.0.1:{port}/mcp");
    let vmcp = vmcp_with(
        p,
        "vmcp-auth.yaml",
        format!(
            "listen: 127.0.0.1:{port}\nincomingAuth: {{type: oidc, issuer: \"{}\", audience: \"{audience}\", requiredScopes: [mcp:call]}}\nbackends:\n  - name: kit\n    url: \"{}\"\n    auth: {{type: bearer, tokenFile: \"{}\"}}\naggregation:\n  conflictResolution: priority\n  conflictResolutionConfig: {{priorityOrder: [kit]}}\n",
            issuer.url,
            backend.url,
            token_file.display()
        ),
    )?;
    thread::sleep(Duration::from_millis(800));

    let authority = issuer.url.trim_start_matches("http://").to_string();
    let good = mint(&authority, &audience, "mcp:call")?;
    let no_scope = mint(&authority, &audience, "mcp:read")?;
    let mut steps = Vec::new();
    for mode in ["auto", "2026-07-28", "legacy"] {
        let out = client(p, &vmcp.url, mode, &good)?;
        let passed = out["call"] == "with a token" && out["status"] == 200;
        steps.push((
            format!("valid token, mode {mode}: lists and calls echo"),
            passed,
            format!(
                "tools {} call {} error {}",
                out["tools"].as_array().map_or(0, Vec::len),
                out["call"],
                out["error"]
            ),
        ));
    }
    let out = client(p, &vmcp.url, "auto", "-")?;
    let metadata_ok = out["metadata"]["resource"] == vmcp.url.as_str()
        && out["metadata"]["authorization_servers"][0] == issuer.url.as_str();
    steps.push((
        "no token: 401, resource_metadata resolves to the RFC 9728 document".into(),
        out["status"] == 401 && out["call"].is_null() && metadata_ok,
        format!(
            "status {} challenge {} metadata {}",
            out["status"], out["challenge"], out["metadata"]
        ),
    ));
    let out = client(p, &vmcp.url, "auto", &no_scope)?;
    steps.push((
        "token without the required scope: 403 insufficient_scope".into(),
        out["status"] == 403
            && out["challenge"]
                .as_str()
                .is_some_and(|c| c.contains("insufficient_scope")),
        format!("status {} challenge {}", out["status"], out["challenge"]),
    ));
    // The SDK finds its own token: the 401's resource_metadata, the issuer's metadata,
    // the client credentials grant for this resource, then the calls.
    for mode in ["auto", "2026-07-28", "legacy"] {
        let output = Command::new(p.python)
            .arg(p.root.join("xtask/interop/python_oauth.py"))
            .args([
                vmcp.url.as_str(),
                issuer.url.as_str(),
                "hale-test-client",
                "hale-test-secret",
                "mcp:call",
                mode,
            ])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("running python_oauth.py: {e}"))?;
        let out: Value = serde_json::from_slice(&output.stdout).unwrap_or(Value::Null);
        steps.push((
            format!("OAuth discovery and client credentials by the SDK, mode {mode}: lists and calls echo"),
            out["call"] == "found its own token",
            format!("call {} error {}", out["call"], out["error"]),
        ));
    }
    let out = client(p, &vmcp.url, "auto", "not-a-token")?;
    steps.push((
        "malformed token: 401 invalid_token".into(),
        out["status"] == 401
            && out["challenge"]
                .as_str()
                .is_some_and(|c| c.contains("invalid_token")),
        format!("status {} challenge {}", out["status"], out["challenge"]),
    ));
    guarded_backend(p, &mut steps)?;
    let mut failures = Vec::new();
    report_steps("auth", steps, tally, &mut failures);
    Ok(failures)
}

const GUARDED_TOKEN: &str = "interop-guarded-token-0123456789";

/// A third-party backend that wants a token (the Python SDK server's own bearer
/// middleware): reachable with `auth.tokenFile`, `unauthenticated` without it.
fn guarded_backend(p: &Paths<'_>, steps: &mut Vec<(String, bool, String)>) -> Result<(), String> {
    let guarded = spawn(
        &|port| {
            let mut c = Command::new(p.python);
            c.arg(p.root.join("xtask/interop/python_guarded.py"))
                .args([port.to_string().as_str(), GUARDED_TOKEN]);
            c
        },
        "/mcp",
    )?;
    let token_file = p.dir.join("guarded-token");
    fs::write(&token_file, GUARDED_TOKEN)
        .map_err(|e| format!("writing {}: {e}", token_file.display()))?;
    let vmcp = vmcp_with(
        p,
        "vmcp-guarded.yaml",
        format!(
            "listen: 127.0.0.1:0\nbackends:\n  - name: with\n    url: \"{url}\"\n    auth: {{type: bearer, tokenFile: \"{}\"}}\n  - {{name: without, url: \"{url}\"}}\naggregation:\n  conflictResolution: priority\n  conflictResolutionConfig: {{priorityOrder: [with, without]}}\noperational:\n  failureHandling: {{healthCheckInterval: 500ms, healthCheckTimeout: 300ms}}\n",
            token_file.display(),
            url = guarded.url,
        ),
    )?;
    let base = vmcp
        .url
        .trim_end_matches("/mcp")
        .trim_start_matches("http://")
        .to_string();
    // Until both backends have been checked (10 s at most).
    let mut status = Value::Null;
    for _ in 0..50 {
        status = get_json(&base, "/status").unwrap_or(Value::Null);
        let checked = |i: usize| {
            status["backends"][i]["health"]
                .as_str()
                .is_some_and(|h| h != "unknown")
        };
        if checked(0) && checked(1) {
            break;
        }
        thread::sleep(Duration::from_millis(200));
    }
    let health = |i: usize| {
        status["backends"][i]["health"]
            .as_str()
            .unwrap_or("?")
            .to_string()
    };
    steps.push((
        "a Python SDK server wanting a token: healthy with auth.tokenFile, unauthenticated without"
            .into(),
        health(0) == "healthy" && health(1) == "unauthenticated",
        format!("with: {}, without: {}", health(0), health(1)),
    ));
    let out = client(p, &vmcp.url, "auto", "-")?;
    steps.push((
        "the Python SDK client calls echo on it through hale vmcp".into(),
        out["call"] == "with a token",
        format!("call {} error {}", out["call"], out["error"]),
    ));
    Ok(())
}

/// `hale vmcp` with configuration `yaml`, written to `file` under interop's directory.
fn vmcp_with(p: &Paths<'_>, file: &str, yaml: String) -> Result<Server, String> {
    let config = p.dir.join(file);
    fs::write(&config, yaml).map_err(|e| format!("writing {}: {e}", config.display()))?;
    spawn_hale(
        p.bin,
        &["vmcp", "--config", &config.display().to_string()],
        "mcp",
    )
}

/// `GET path` on `authority`, the body as JSON.
fn get_json(authority: &str, path: &str) -> Result<Value, String> {
    let mut s = TcpStream::connect(authority).map_err(|e| format!("{authority}: {e}"))?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n");
    s.write_all(request.as_bytes()).map_err(|e| e.to_string())?;
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, b)| b)
        .unwrap_or_default();
    serde_json::from_str(body).map_err(|e| format!("{path}: {e}"))
}

/// A token from the test issuer for `sub=python`, `aud`, with `scope`.
fn mint(authority: &str, aud: &str, scope: &str) -> Result<String, String> {
    let mut s = TcpStream::connect(authority).map_err(|e| format!("test issuer: {e}"))?;
    let request = format!(
        "GET /token?sub=python&aud={aud}&scope={scope} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n"
    );
    s.write_all(request.as_bytes())
        .map_err(|e| format!("test issuer: {e}"))?;
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    answer
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.trim().to_string())
        .filter(|t| t.split('.').count() == 3)
        .ok_or_else(|| format!("the test issuer gave no token: {answer}"))
}

/// Runs `python_auth.py` and parses its line.
fn client(p: &Paths<'_>, url: &str, mode: &str, token: &str) -> Result<Value, String> {
    let output = Command::new(p.python)
        .arg(p.root.join("xtask/interop/python_auth.py"))
        .args([url, mode, token])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("running python_auth.py: {e}"))?;
    serde_json::from_slice(&output.stdout).map_err(|_| {
        format!(
            "python_auth.py {mode} printed no JSON: {}",
            String::from_utf8_lossy(&output.stderr)
                .lines()
                .last()
                .unwrap_or_default()
        )
    })
}
