//! End to end: the `hale vmcp` binary over three `hale-testkit serve` processes (both
//! transports), with a client session held open while one backend is killed and started
//! again; bad configurations; `hale status`.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns unwrap too

mod common;
use common::*;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use hale_mcp::{ClientOptions, McpClient, McpError};
use hale_testkit::process::{Announced, Reaped, spawn_announced};
use hale_testkit::{ServerConfig, TestServer};
use serde_json::json;

/// The `hale-testkit` binary next to `hale` (built here if this run did not build it).
fn testkit_bin() -> PathBuf {
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_hale")).with_file_name("hale-testkit");
    if !bin.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let built = Command::new(cargo)
            .args(["build", "-q", "-p", "hale-testkit", "--bin", "hale-testkit"])
            .status()
            .unwrap();
        assert!(built.success(), "building hale-testkit");
    }
    bin
}

/// `hale-testkit serve` as its own process; returns it and the URL it printed.
fn serve(args: &[&str]) -> (Reaped, String) {
    let started = spawn_announced(
        Command::new(testkit_bin())
            .arg("serve")
            .args(args)
            .stderr(Stdio::null()),
    )
    .unwrap();
    let url = started
        .first_line
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("hale-testkit printed {:?}", started.first_line))
        .to_string();
    (started.process, url)
}

fn port_of(url: &str) -> String {
    url.rsplit(':')
        .next()
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn tools_of_a_dead_backend_disappear_and_come_back_with_notifications() {
    // Three backend processes, both transports: killing one is a real crash.
    let (_weather, weather) = serve(&[]);
    let (search_process, search) = serve(&["--transport", "sse"]);
    let (_docs, docs) = serve(&["--stateless"]);
    let dir = std::env::temp_dir().join(format!("hale-vmcp-e2e-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("vmcp.yaml");
    std::fs::write(
        &file,
        format!(
            "name: e2e\nlisten: 127.0.0.1:0\nbackends:\n  - {{name: weather, url: \"{weather}\"}}\n  - {{name: search, url: \"{search}\", transport: sse}}\n  - {{name: docs, url: \"{docs}\"}}\noperational:\n  failureHandling: {{healthCheckInterval: 200ms, healthCheckTimeout: 150ms, unhealthyThreshold: 2}}\n"
        ),
    )
    .unwrap();
    let Announced {
        process: _hale,
        first_line,
        rest: mut lines,
    } = spawn_announced(
        Command::new(env!("CARGO_BIN_EXE_hale"))
            .args(["vmcp", "--config"])
            .arg(&file)
            .stderr(Stdio::null()),
    )
    .unwrap();
    let addr = first_line
        .strip_prefix("listening on http://")
        .unwrap()
        .to_string();
    let printed: Vec<String> = (0..3).map(|_| lines.next().unwrap().unwrap()).collect();
    assert!(
        printed[0].contains("/mcp")
            && printed[1].contains("/status")
            && printed[2].contains("/metrics"),
        "{printed:?}"
    );

    tokio::time::sleep(Duration::from_millis(500)).await;
    let client = McpClient::connect(&format!("http://{addr}/mcp"), ClientOptions::default())
        .await
        .unwrap();
    let tools = client.list_tools().await.unwrap();
    assert!(has(&tools, "weather_echo") && has(&tools, "search_echo") && has(&tools, "docs_echo"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut notes = client.notifications();

    drop(search_process); // killed
    let tools = tools_changed_until(&client, &mut notes, Duration::from_secs(10), |t| {
        !has(t, "search_echo")
    })
    .await;
    assert!(has(&tools, "weather_echo") && has(&tools, "docs_echo"));
    let err = client
        .call_tool("search_echo", json!({"text": "x"}))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, McpError::Rpc { message, .. } if message.contains("backend 'search' is unavailable")),
        "{err}"
    );

    // Started again on the same port: a new process, new sessions.
    let (_search_again, _) = serve(&["--transport", "sse", "--port", &port_of(&search)]);
    tools_changed_until(&client, &mut notes, Duration::from_secs(10), |t| {
        has(t, "search_echo")
    })
    .await;
    assert_eq!(
        client
            .call_tool("search_echo", json!({"text": "back"}))
            .await
            .unwrap()["content"][0]["text"],
        "back"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_bad_configuration_stops_start_up_with_status_2_and_one_message() {
    let dir = std::env::temp_dir().join(format!("hale-vmcp-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("vmcp.yaml");
    std::fs::write(
        &file,
        "backends: []\noperational:\n  failureHandling:\n    unhealthyThreshold: 0\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_hale"))
        .args(["vmcp", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("vmcp.yaml:4: operational.failureHandling.unhealthyThreshold: expected a whole number of at least 1"), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn hale_status_prints_the_backends_as_a_table_or_json_and_says_when_nothing_answers() {
    let weather = TestServer::start(ServerConfig::default()).await.unwrap();
    let started = spawn_announced(
        Command::new(env!("CARGO_BIN_EXE_hale"))
            .args([
                "vmcp",
                "--backend",
                &format!("weather={}", weather.url()),
                "--backend",
                "gone=http://127.0.0.1:9/mcp",
                "--listen",
                "127.0.0.1:0",
            ])
            .stderr(Stdio::null()),
    )
    .unwrap();
    let _hale = started.process;
    let addr = started
        .first_line
        .strip_prefix("listening on http://")
        .unwrap()
        .to_string();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let url = format!("http://{addr}");
    let hale_status = |extra: &[&str]| {
        let mut args = vec!["status", "--url", &url];
        args.extend_from_slice(extra);
        Command::new(env!("CARGO_BIN_EXE_hale"))
            .args(&args)
            .output()
            .unwrap()
    };

    let table = hale_status(&[]);
    assert!(table.status.success());
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(
        text.contains("BACKEND") && text.contains("HEALTH") && text.contains("CIRCUIT"),
        "{text}"
    );
    let weather_row = text.lines().find(|l| l.starts_with("weather")).unwrap();
    assert!(
        weather_row.contains("healthy") && weather_row.contains("closed"),
        "{weather_row}"
    );
    let gone_row = text.lines().find(|l| l.starts_with("gone")).unwrap();
    assert!(gone_row.contains("connection refused"), "{gone_row}");
    assert!(
        !text.contains('\x1b'),
        "no colour when stdout is not a terminal"
    );

    let json = hale_status(&["--json"]);
    let parsed: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(parsed["backends"][0]["name"], "weather");

    let nothing = Command::new(env!("CARGO_BIN_EXE_hale"))
        .args(["status", "--url", "http://127.0.0.1:9"])
        .output()
        .unwrap();
    assert_eq!(nothing.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&nothing.stderr).contains("nothing answered at http://127.0.0.1:9")
    );
    weather.shutdown();
}

#[tokio::test]
async fn backend_credentials_never_reach_clients_status_cli_or_logs() {
    let weather = TestServer::start(ServerConfig::default()).await.unwrap();
    let secret = "http://alice:hunter2@127.0.0.1:9/mcp?api_key=sekrit";
    let (mut hale, addr) = vmcp_with_log(
        &[
            &format!("weather={}", weather.url()),
            &format!("vault={secret}"),
        ],
        "debug",
    );
    let stderr = hale.0.stderr.take().unwrap();
    let log = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut { stderr }, &mut text);
        text
    });
    tokio::time::sleep(Duration::from_millis(600)).await;
    let url = format!("http://{addr}");
    let client = McpClient::connect(&format!("{url}/mcp"), ClientOptions::default())
        .await
        .unwrap();
    // A call to the failing backend's tools, and the status documents, name it redacted.
    let call = client.call_tool("vault_echo", json!({})).await;
    let status = get_text(&url, "/status").await;
    let health = get_text(&url, "/api/backends/health").await;
    let cli = Command::new(env!("CARGO_BIN_EXE_hale"))
        .args(["status", "--url", &url])
        .output()
        .unwrap();
    let cli = String::from_utf8_lossy(&cli.stdout).to_string();
    assert!(status.contains("vault"), "{status}");
    let status_code = hale.terminate(Duration::from_secs(15));
    assert_eq!(
        status_code.and_then(|s| s.code()),
        Some(0),
        "exited on SIGTERM"
    );
    let log = log.join().unwrap();
    for text in [&format!("{call:?}"), &status, &health, &cli, &log] {
        for secret in ["alice", "hunter2", "sekrit"] {
            assert!(!text.contains(secret), "{secret} leaked in: {text}");
        }
    }
    weather.shutdown();
}

#[tokio::test]
async fn sigterm_stops_the_vmcp_when_its_log_reader_went_away() {
    let weather = TestServer::start(ServerConfig::default()).await.unwrap();
    let (mut hale, _addr) = vmcp_with_log(&[&format!("weather={}", weather.url())], "trace");
    drop(hale.0.stderr.take()); // `hale vmcp … 2>&1 | head -1`: the reader is gone
    tokio::time::sleep(Duration::from_millis(500)).await;
    let status = tokio::task::spawn_blocking(move || hale.terminate(Duration::from_secs(15)))
        .await
        .unwrap();
    assert_eq!(status.and_then(|s| s.code()), Some(0), "exited on SIGTERM");
    weather.shutdown();
}

/// `hale vmcp` over `--backend` flags with `RUST_LOG=level` and its stderr piped: the
/// process and its address.
fn vmcp_with_log(backends: &[&str], level: &str) -> (Reaped, String) {
    let mut args = vec!["vmcp", "--listen", "127.0.0.1:0"];
    for b in backends {
        args.extend(["--backend", b]);
    }
    let started = spawn_announced(
        Command::new(env!("CARGO_BIN_EXE_hale"))
            .args(&args)
            .env("RUST_LOG", level)
            .stderr(Stdio::piped()),
    )
    .unwrap();
    let addr = started
        .first_line
        .strip_prefix("listening on http://")
        .unwrap()
        .to_string();
    (started.process, addr)
}

/// `GET path` on `base` (`http://addr`), the body as text.
async fn get_text(base: &str, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = base.strip_prefix("http://").unwrap();
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).await.unwrap();
    text
}

#[test]
fn a_non_loopback_listen_without_incoming_auth_exits_2_and_says_how_to_opt_in() {
    let out = Command::new(env!("CARGO_BIN_EXE_hale"))
        .args([
            "vmcp",
            "--listen",
            "0.0.0.0:0",
            "--backend",
            "kit=http://127.0.0.1:1/mcp",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("needs incomingAuth") && stderr.contains("--anonymous"),
        "{stderr}"
    );
}

#[tokio::test]
async fn the_log_names_callers_and_refusals_but_never_a_token() {
    let backend_token = "backend-secret-token-0123456789";
    let caller_token = "caller-secret-token-0123456789";
    let weather = TestServer::start(ServerConfig {
        require_token: Some(backend_token.into()),
        ..ServerConfig::default()
    })
    .await
    .unwrap();
    let dir = std::env::temp_dir().join(format!("hale-vmcp-auth-log-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("tokens"), format!("ci-bot {caller_token}\n")).unwrap();
    std::fs::write(dir.join("backend-token"), backend_token).unwrap();
    let file = dir.join("vmcp.yaml");
    std::fs::write(
        &file,
        format!(
            "listen: 127.0.0.1:0\nincomingAuth: {{type: static, tokensFile: \"{}\"}}\nbackends:\n  - name: weather\n    url: \"{}\"\n    auth: {{type: bearer, tokenFile: \"{}\"}}\n",
            dir.join("tokens").display(),
            weather.url(),
            dir.join("backend-token").display()
        ),
    )
    .unwrap();
    let started = spawn_announced(
        Command::new(env!("CARGO_BIN_EXE_hale"))
            .args(["vmcp", "--config"])
            .arg(&file)
            .env("RUST_LOG", "debug")
            .stderr(Stdio::piped()),
    )
    .unwrap();
    let mut hale = started.process;
    let addr = started
        .first_line
        .strip_prefix("listening on http://")
        .unwrap()
        .to_string();
    let stderr = hale.0.stderr.take().unwrap();
    let log = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut { stderr }, &mut text);
        text
    });
    let good = hale_mcp::Credentials::builder()
        .bearer("test", caller_token)
        .unwrap()
        .build();
    let client = McpClient::connect(
        &format!("http://{addr}/mcp"),
        ClientOptions {
            credentials: Some(good),
            ..ClientOptions::default()
        },
    )
    .await
    .unwrap();
    let mut answered = false;
    for _ in 0..50 {
        if client
            .call_tool("weather_echo", json!({"text": "hi"}))
            .await
            .is_ok()
        {
            answered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(answered, "a call with the backend's token never succeeded");
    let bad = hale_mcp::Credentials::builder()
        .bearer("test", "wrong-secret-token-0123456789")
        .unwrap()
        .build();
    let refused = McpClient::connect(
        &format!("http://{addr}/mcp"),
        ClientOptions {
            credentials: Some(bad),
            ..ClientOptions::default()
        },
    )
    .await;
    assert!(refused.is_err());
    // `hale status` needs the token too (statusAuth defaults to incomingAuth).
    let url = format!("http://{addr}");
    let without = Command::new(env!("CARGO_BIN_EXE_hale"))
        .args(["status", "--url", &url])
        .env_remove("HALE_TOKEN")
        .output()
        .unwrap();
    assert_eq!(without.status.code(), Some(1));
    let said = String::from_utf8_lossy(&without.stderr);
    assert!(
        said.contains("401") && said.contains("HALE_TOKEN"),
        "{said}"
    );
    let with = Command::new(env!("CARGO_BIN_EXE_hale"))
        .args(["status", "--url", &url])
        .env("HALE_TOKEN", caller_token)
        .output()
        .unwrap();
    assert!(
        with.status.success(),
        "{}",
        String::from_utf8_lossy(&with.stderr)
    );
    assert!(String::from_utf8_lossy(&with.stdout).contains("weather"));
    // The refusals are counted (the bad token's initialize, hale status without a token),
    // with no identity in the labels.
    let metrics = {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
        s.write_all(format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {caller_token}\r\nConnection: close\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).await.unwrap();
        text
    };
    let refused: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix(r#"toolhive_vmcp_auth_refusals_total{status="401"} "#))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0);
    assert!(refused >= 2.0, "refusals counted: {refused}\n{metrics}");
    assert!(!metrics.contains("ci-bot"), "an identity in a metric label");
    let status = hale.terminate(Duration::from_secs(15));
    assert_eq!(status.and_then(|s| s.code()), Some(0), "exited on SIGTERM");
    let log = log.join().unwrap();
    assert!(
        log.lines()
            .any(|l| l.contains("method=tools/call") && l.contains("sub=ci-bot")),
        "no request line naming the caller:\n{log}"
    );
    assert!(
        log.contains("invalid token (401)"),
        "no refusal line:\n{log}"
    );
    for secret in [backend_token, caller_token, "wrong-secret-token"] {
        assert!(!log.contains(secret), "{secret} leaked in the log:\n{log}");
    }
    weather.shutdown();
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn sighup_applies_the_changed_file_without_dropping_the_session() {
    let (_one, one) = serve(&[]);
    let (_two, two) = serve(&[]);
    let dir = std::env::temp_dir().join(format!("hale-vmcp-hup-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("vmcp.yaml");
    let head = "name: hup\nlisten: 127.0.0.1:0\noperational:\n  failureHandling: {healthCheckInterval: 200ms, healthCheckTimeout: 150ms}\nbackends:\n";
    let before = format!("{head}  - {{name: one, url: \"{one}\"}}\n");
    let after = format!("{before}  - {{name: two, url: \"{two}\"}}\n");
    // The same length and modification time as before: the file watch cannot tell the
    // files apart, so only the signal can apply the new one.
    let padding = after.len() - before.len() - 2;
    std::fs::write(&file, format!("{before}#{}\n", " ".repeat(padding))).unwrap();
    let written = std::fs::metadata(&file).unwrap().modified().unwrap();

    let Announced {
        process: hale,
        first_line,
        ..
    } = spawn_announced(
        Command::new(env!("CARGO_BIN_EXE_hale"))
            .args(["vmcp", "--config"])
            .arg(&file)
            .stderr(Stdio::null()),
    )
    .unwrap();
    let addr = first_line
        .strip_prefix("listening on http://")
        .unwrap()
        .to_string();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let client = McpClient::connect(&format!("http://{addr}/mcp"), ClientOptions::default())
        .await
        .unwrap();
    let tools = client.list_tools().await.unwrap();
    assert!(has(&tools, "one_echo") && !has(&tools, "two_echo"));
    let mut notes = client.notifications();

    std::fs::write(&file, &after).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&file)
        .unwrap()
        .set_modified(written)
        .unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(
        !has(&client.list_tools().await.unwrap(), "two_echo"),
        "applied before the signal: the file watch saw a change it should not"
    );

    let sent = Command::new("kill")
        .args(["-HUP", &hale.0.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let tools = tools_changed_until(&client, &mut notes, Duration::from_secs(10), |t| {
        has(t, "two_echo")
    })
    .await;
    assert!(has(&tools, "one_echo"));
    // The same client session goes on, on both backends.
    for tool in ["one_echo", "two_echo"] {
        let r = client
            .call_tool(tool, json!({"text": "after SIGHUP"}))
            .await
            .unwrap();
        assert_eq!(r["content"][0]["text"], "after SIGHUP");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
